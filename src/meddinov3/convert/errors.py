"""The one error type of dataset conversion; its message names the file or folder at fault."""


class ConversionError(ValueError):
    """A release folder or file that does not look like the release it claims to be."""
