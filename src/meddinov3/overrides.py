"""`key=value` overrides on the command line, read the same way by every command that takes them
(`train --backbone-set`, `pretrain section.key=value`), and applied to configuration dataclasses.

Values are YAML (`-3` an int, `true` a bool, `[1, 2]` a list, `"1e-6"` a quoted string), with one
change: YAML 1.1, which PyYAML speaks, reads `1e-6` as a string because its floats need a dot;
scientific notation is how learning rates and epsilons are written, so a number in that form is a
float here, as in YAML 1.2. Quoting keeps any value a string.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import yaml


class _OverrideLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 exponent floats (`1e-6`, `5E3`, `.5e-3`)."""


_OverrideLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """One override value; an empty value is None."""
    if not text.strip():
        return None
    try:
        return yaml.load(text, Loader=_OverrideLoader)
    except yaml.YAMLError as error:
        raise ValueError(f"cannot read the value {text!r}: {' '.join(str(error).split())}") from None


def parse_assignment(text: str) -> tuple[str, Any]:
    """`key=value` -> (key, value); the value may itself contain '='."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ValueError(f"expected key=value, got {text!r}")
    return key.strip(), parse_value(value)


def coerce(value: Any, default: Any, where: str) -> Any:
    """YAML gives lists for tuples and ints for floats; bring values to the dataclass's types."""
    if isinstance(default, tuple):
        if not isinstance(value, (list, tuple)) or len(value) != len(default):
            raise ValueError(f"{where}: expected a list of {len(default)} numbers, got {value!r}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{where}: expected true/false, got {value!r}")
        return value
    if isinstance(default, float) and isinstance(value, int):
        return float(value)
    if isinstance(default, int) and not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def apply_values(section: Any, values: dict[str, Any], where: str) -> None:
    """Set nested `values` (a mapping of the dataclass `section`'s fields) on it, each brought to its
    field's type; an unknown key or a wrong type is a ValueError naming `where` and the key."""
    known = {f.name for f in dataclasses.fields(section)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r} (known: {sorted(known)})")
        current = getattr(section, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ValueError(f"{where}.{key}: expected a mapping, got {value!r}")
            apply_values(current, value, f"{where}.{key}")
        else:
            setattr(section, key, coerce(value, current, f"{where}.{key}"))


def nested(path: list[str], value: Any) -> dict[str, Any]:
    """["optim", "lr"], 1e-4 -> {"optim": {"lr": 1e-4}}."""
    tree: Any = value
    for part in reversed(path):
        tree = {part: tree}
    return tree
