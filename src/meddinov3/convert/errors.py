"""The one error type of dataset conversion; its message names the file or folder at fault."""

from meddinov3.errors import InputError


class ConversionError(InputError, ValueError):
    """A release folder or file that does not look like the release it claims to be."""
