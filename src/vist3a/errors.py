"""User-facing errors.

Anything raised as :class:`UserInputError` is printed by the CLI as one line and exits non-zero, with no
traceback: it means "the input is wrong, here is how to fix it". It subclasses ``ValueError`` so that
library users can catch it the usual way.
"""


class UserInputError(ValueError):
    """Bad input from the user (a path, a file, an argument); the message names the problem and the fix."""
