"""The base of every failure a user causes with a path, a file or a value."""


class InputError(Exception):
    """Bad input the user can fix (a missing or corrupt file, an unusable folder, a wrong value).

    The message names the file, case or option and the problem; every `meddinov3` command
    reports it as one `error:` line, never as a traceback."""
