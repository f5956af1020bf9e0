"""SIGINT and SIGTERM handled alike: stop, keep the old output, say so, exit 128 + signal number.

Ctrl-C, ``timeout``, ``docker stop`` and Slurm all end a command the same way. The first signal sets
:data:`vist3a.io_utils.INTERRUPTED` (so no write is moved into place afterwards, also in background writer
threads) and raises :class:`~vist3a.errors.Interrupted` in the main thread, where the usual clean-up of
temporaries runs. A second signal exits at once; the temporaries it leaves carry the dead process id and are
removed by the next write to the same output.
"""

from __future__ import annotations

import os
import signal

from vist3a.errors import Interrupted
from vist3a.io_utils import INTERRUPTED

HANDLED = (signal.SIGINT, signal.SIGTERM)

#: Name of the first signal received by this process (``None``: none yet).
received: str | None = None


def _handler(signum: int, frame) -> None:
    global received
    name = signal.Signals(signum).name
    if INTERRUPTED.is_set():
        os.write(2, f"\n{name} again: stopping at once\n".encode())
        os._exit(128 + signum)
    received = name
    INTERRUPTED.set()
    raise Interrupted(signal_name=name)


def install() -> None:
    """Route SIGINT and SIGTERM to the handler (main thread only; a no-op elsewhere)."""
    import threading

    global received
    received = None
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in HANDLED:
        signal.signal(sig, _handler)
    _watch_wakeup_pipe()


_PIPE: tuple[int, int] | None = None


def _watch_wakeup_pipe() -> None:
    """Have the C-level signal handler write to a pipe that background writers read before they commit (see
    :func:`vist3a.io_utils.check_not_interrupted`): they then never move output into place after a signal, even
    before the main thread has run :func:`_handler`."""
    global _PIPE
    from vist3a.io_utils import watch_signal_pipe

    if _PIPE is None:
        read_fd, write_fd = os.pipe()
        os.set_blocking(read_fd, False)
        os.set_blocking(write_fd, False)
        _PIPE = (read_fd, write_fd)
    try:
        signal.set_wakeup_fd(_PIPE[1], warn_on_full_buffer=False)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return
    while True:  # forget what an earlier in-process run left there
        try:
            if not os.read(_PIPE[0], 256):
                break
        except OSError:
            break
    watch_signal_pipe(_PIPE[0], frozenset(int(sig) for sig in HANDLED))


def exit_code() -> int:
    """128 + the signal number, as a shell reports a process ended by that signal (Ctrl-C alone: 130)."""
    return 128 + int(getattr(signal, received or "SIGINT"))


def message() -> str:
    name = received or "SIGINT"
    return f"interrupted ({name}): stopped; unfinished outputs were discarded and earlier ones kept"
