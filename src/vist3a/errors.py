"""User-facing errors.

Anything raised as :class:`UserInputError` is printed by the CLI as one line and exits non-zero, with no
traceback: it means "the input is wrong, here is how to fix it". It subclasses ``ValueError`` so that
library users can catch it the usual way.
"""


class UserInputError(ValueError):
    """Bad input from the user (a path, a file, an argument); the message names the problem and the fix."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived: the command stops, keeps every earlier output and leaves no partial one.

    A ``KeyboardInterrupt`` so that code which already cleans up on Ctrl-C does the same on SIGTERM.
    """

    def __init__(self, message: str = "interrupted", signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name

