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


def offline_hint(local_files_only: bool | None) -> str:
    """How to get missing Hub weights, for the reason they are missing: ``--offline``/``local_files_only``, the
    ``HF_HUB_OFFLINE`` variable (named only when it is set), or a Hub that could not be reached."""
    import os

    if local_files_only:
        return "or run without --offline (local_files_only) on a machine with internet"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return f"or unset HF_HUB_OFFLINE (it is {os.environ['HF_HUB_OFFLINE']!r} here)"
    return "or check this machine's connection to the Hugging Face Hub"
