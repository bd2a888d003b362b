"""The error of a backbone checkpoint that cannot be used: raised by the readers
(`checkpoints.py`) and by the Hub look-up (`hub.py`) alike, so neither imports the other for it."""

from meddinov3.errors import InputError


class CheckpointError(InputError, ValueError):
    """A checkpoint that cannot be read as a backbone; the message names the file and the problem."""
