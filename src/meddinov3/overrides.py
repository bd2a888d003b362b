"""`key=value` overrides on the command line, read the same way by every command that takes them
(`train --backbone-set`, `pretrain section.key=value`).

Values are YAML (`-3` an int, `true` a bool, `[1, 2]` a list, `"1e-6"` a quoted string), with one
change: YAML 1.1, which PyYAML speaks, reads `1e-6` as a string because its floats need a dot;
scientific notation is how learning rates and epsilons are written, so a number in that form is a
float here, as in YAML 1.2. Quoting keeps any value a string.
"""

from __future__ import annotations

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
