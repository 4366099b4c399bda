"""The one error type that means "what the user gave us is wrong".

The CLI prints such an error as a single line and exits with status 2; every other
exception is a bug in denselab and keeps its traceback.
"""


class BadInput(ValueError):
    """A problem with a file, an option or a value that the user supplied.

    The message names the file or value and, where possible, says what to do.
    """
