"""The one error type of a folder evaluation: its message names the case and the file."""


class EvaluationError(Exception):
    """A case cannot be scored (missing, unreadable, mismatched or unexpected input)."""
