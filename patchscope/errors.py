"""The one exception type that the command line turns into a one-line message and exit status 2."""


class PatchscopeError(Exception):
    """A problem with the user's input (file, shape, name, option): shown as one line, no traceback."""
