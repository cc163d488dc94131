"""The one exception type that the CLI turns into a one-line message and a non-zero exit."""


class GsbenchError(Exception):
    """A problem with the user's input (a file, a key, a shape) that the user can fix.

    The message is a single line that names the offending thing; the CLI prints it as
    ``error: <message>`` and exits with status 2. Anything else is a bug and keeps its traceback.
    """
