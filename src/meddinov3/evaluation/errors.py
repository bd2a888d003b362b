"""The one error type of a folder evaluation: its message names the case and the file."""

from meddinov3.errors import InputError


class EvaluationError(InputError):
    """A case cannot be scored (missing, unreadable, mismatched or unexpected input)."""
