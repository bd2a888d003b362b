"""One `key=value` parser for every command that takes overrides: the same text gives the same
value in `train --backbone-set` and in `pretrain section.key=value`."""

from __future__ import annotations

import pytest
import typer

from meddinov3.nnunet.commands import _parse_overrides
from meddinov3.overrides import parse_assignment, parse_value
from meddinov3.pretrain.config import load_config, parse_override

CASES = [
    ("1e-6", 1e-6),  # YAML 1.1 alone reads this as the string '1e-6'
    ("2.5E-4", 2.5e-4),
    ("-1.5e+3", -1500.0),
    (".5e-3", 5e-4),
    ("-3", -3),
    ("48", 48),
    ("0.1", 0.1),
    ("true", True),
    ("false", False),
    ("[1, 2]", [1, 2]),
    ("[1e-6, 2]", [1e-6, 2]),
    ('"1e-6"', "1e-6"),  # quoting keeps a string
    ("'a b'", "a b"),
    ("swiglu", "swiglu"),
    ("/data/ct3m", "/data/ct3m"),
    ("", None),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] or "empty" for c in CASES])
def test_every_command_reads_a_value_the_same_way(text, expected):
    assert parse_value(text) == expected and type(parse_value(text)) is type(expected)
    train_value = _parse_overrides([f"layer_norm_eps={text}"])["layer_norm_eps"]
    pretrain_path, pretrain_value = parse_override(f"optim.lr={text}")
    assert pretrain_path == ["optim", "lr"]
    for value in (train_value, pretrain_value):
        assert value == expected and type(value) is type(expected)


def test_values_may_contain_equals_signs():
    assert parse_assignment("data.corpus=/a=b") == ("data.corpus", "/a=b")


@pytest.mark.parametrize("text", ["no_equals", "=3", " =3"])
def test_malformed_assignments_are_refused_by_both_parsers(text):
    with pytest.raises(ValueError, match="key=value"):
        parse_assignment(text)
    with pytest.raises(typer.BadParameter, match="key=value"):
        _parse_overrides([text])
    with pytest.raises(ValueError, match="key=value"):
        parse_override(text)


def test_unreadable_value_names_it():
    with pytest.raises(ValueError, match=r"\[1, 2"):
        parse_value("[1, 2")


def test_pretrain_config_receives_a_float_learning_rate():
    config = load_config("tiny", ["optim.lr=1e-6"])
    assert config.optim.lr == 1e-6 and isinstance(config.optim.lr, float)
