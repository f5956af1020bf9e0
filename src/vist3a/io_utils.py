"""Atomic file writes, interruption and output locks: output is either complete or absent, never half-written.

Temporaries live beside their target and carry vist3a's own mark, the host and the writing process id
(``.<name>.vist3a-<host>-<pid>-<random>.tmp``), so a later write to the same target can tell a stale one (its
process is gone: killed by SIGKILL, power loss) from one in progress, and remove it. Nothing else is ever
deleted by that clean-up.

The CLI sets :data:`INTERRUPTED` on SIGINT/SIGTERM; a write that has not been moved into place by then is
dropped instead (also in a background writer thread), so an interrupted command keeps the old output.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from vist3a.errors import Interrupted, UserInputError

logger = logging.getLogger(__name__)

#: Set by the CLI's SIGINT/SIGTERM handler: writes not yet in place are abandoned.
INTERRUPTED = threading.Event()

_MARK = "vist3a"
# The host is part of the mark: on a shared filesystem only this machine can tell whether one of its pids runs.
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
_CURRENT = re.compile(rf"\..+\.{_MARK}-{_HOST}-(\d+)-\w+\.tmp.*")  # .<name>.vist3a-<host>-<pid>-<rnd>.tmp[<sfx>]
_LEGACY = re.compile(r"\w{8}\.tmp.*")  # <random>.tmp[<suffix>] after .<name>. (before the pid was recorded)
# Temporaries of earlier versions had no process id (``.<name>.<random>.tmp``); they count as stale after a day.
_LEGACY_STALE_S = 24 * 3600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def clean_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove temporaries of ``path`` left by dead vist3a processes; returns what was removed.

    Only names of vist3a's own making are touched: ``.<any name>.vist3a-<host>-<pid>-*.tmp*`` in ``path``'s
    folder made on this host by a process that no longer runs (so a killed run's ``.checkpoint-12.*.tmp`` goes
    with the next checkpoint), and ``.<name>.<8 random chars>.tmp*`` of ``path`` itself (older versions) not
    modified for a day. A ``.<name>.old`` that a dead process parked while swapping is moved back when
    ``path`` is missing, else removed.
    """
    path = Path(path)
    if not path.parent.is_dir():
        return []
    removed = []
    prefixes = (f".{path.name}.", f".{path.stem}.")
    for entry in path.parent.iterdir():
        if not entry.name.startswith("."):
            continue
        if (match := _CURRENT.fullmatch(entry.name)) is not None:  # any target: the pid tells whether it is stale
            stale = not _pid_alive(int(match.group(1)))
        elif any(entry.name.startswith(p) and _LEGACY.fullmatch(entry.name[len(p):]) for p in prefixes):
            stale = time.time() - entry.lstat().st_mtime > _LEGACY_STALE_S
        else:
            continue
        if stale:
            _remove(entry)
            removed.append(entry)
    old = path.with_name(f".{path.name}.old")
    pid = _old_owner(old)
    if pid is not None and not _pid_alive(pid) and (old.exists() or old.is_symlink()):
        if path.exists() or path.is_symlink():
            _remove(old)
        else:
            os.replace(old, path)
            logger.warning("restored %s from an interrupted replacement", path)
        old.with_name(old.name + ".pid").unlink(missing_ok=True)
        removed.append(old)
    if removed:
        logger.info("removed stale temporaries: %s", ", ".join(p.name for p in removed))
    return removed


def _old_owner(old: Path) -> int | None:
    """The pid recorded beside a ``.<name>.old`` by the process swapping it (``None``: unknown, or another host's)."""
    marker = old.with_name(old.name + ".pid")
    try:
        host, _, pid = marker.read_text().partition(":")
        return int(pid) if host == _HOST else None
    except (OSError, ValueError):
        return None


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back from this thread for the block (delivered when it ends)."""
    if not hasattr(signal, "pthread_sigmask"):  # Windows: no signal masks
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


#: Read end of the CLI's signal wake-up pipe (:func:`signal.set_wakeup_fd`) and the signal numbers to look for.
#: Python runs signal handlers in the main thread only, and only between bytecodes, so a background writer could
#: otherwise commit its output in the moment between a signal's arrival and the handler setting
#: :data:`INTERRUPTED`; the C-level handler writes the signal number to this pipe at once, from any thread.
_SIGNAL_PIPE: tuple[int, frozenset[int]] | None = None
_SIGNAL_SEEN = threading.Event()
#: Per-process serial numbers of :func:`atomic_path`'s temporaries.
_TEMP_IDS = itertools.count()


def watch_signal_pipe(fd: int | None, signums: frozenset[int] = frozenset()) -> None:
    """Let :func:`check_not_interrupted` read ``fd`` (non-blocking) for ``signums`` (``None``: stop watching)."""
    global _SIGNAL_PIPE
    _SIGNAL_PIPE = None if fd is None else (fd, frozenset(signums))
    _SIGNAL_SEEN.clear()


def _signal_arrived() -> bool:
    """Whether a watched signal has reached the process, its Python handler run or not."""
    if INTERRUPTED.is_set() or _SIGNAL_SEEN.is_set():
        return True
    watched = _SIGNAL_PIPE
    if watched is None:
        return False
    fd, signums = watched
    try:
        data = os.read(fd, 256)
    except OSError:  # nothing written (EAGAIN) or the pipe is gone
        return False
    if any(byte in signums for byte in data):
        _SIGNAL_SEEN.set()
    return _SIGNAL_SEEN.is_set()


def check_not_interrupted() -> None:
    """Raise :class:`Interrupted` once the CLI has received SIGINT/SIGTERM (call before committing output)."""
    if _signal_arrived():
        raise Interrupted("interrupted before the output was moved into place")


def _temporary_name(path: Path, stem: str, suffix: str) -> Path:
    """``.<stem>.vist3a-<host>-<pid>-<serial><random>.tmp<suffix>`` beside ``path``, unique without creating it.

    Why not ``mkstemp``: its name arrives only when the file exists, so a Ctrl-C / SIGTERM landing between the two
    left a temporary that no ``except`` could name; with the name known first, the cleanup always can.
    """
    unique = f"{next(_TEMP_IDS)}{secrets.token_hex(4)}"
    return path.parent / f".{stem}.{_MARK}-{_HOST}-{os.getpid()}-{unique}.tmp{suffix}"


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file keeps ``path``'s suffix so that libraries choosing a format by extension
    (imageio, matplotlib) still work. On any exception (Ctrl-C included) the temporary is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp_path = _temporary_name(path, path.stem, path.suffix)
    try:
        os.close(os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the usual output permissions
        yield tmp_path
        check_not_interrupted()
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; move it onto ``path`` only if the block succeeds.

    An existing ``path`` (folder or file) is replaced as a whole, so a reader never sees a mix of old and new
    files. The old one is parked as ``.<name>.old`` for the two renames of the swap; should the process die
    between them, the next write to ``path`` (or :func:`clean_stale_temporaries`) moves it back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(path)
    tmp = _temporary_name(path, path.name, "")  # known before it exists (see atomic_path)
    try:
        tmp.mkdir(0o777)  # the usual folder permissions
        yield tmp
        with _signals_deferred():  # the swap is not cut in half by Ctrl-C / SIGTERM (they act right after it)
            check_not_interrupted()
            if path.exists() or path.is_symlink():
                old = path.with_name(f".{path.name}.old")
                marker = old.with_name(old.name + ".pid")
                marker.write_text(f"{_HOST}:{os.getpid()}")
                os.replace(path, old)
                os.replace(tmp, path)
                _remove(old)
                marker.unlink(missing_ok=True)
            else:
                os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextlib.contextmanager
def output_lock(path: str | os.PathLike, what: str = "--out") -> Iterator[Path]:
    """Hold an exclusive lock on output ``path`` for the block; a second holder fails at once.

    The lock is ``flock`` on ``.<name>.vist3a.lock`` beside ``path`` (released by the kernel if the process
    dies; the file is removed on exit). Raises :class:`UserInputError` when another process holds it.
    """
    import fcntl  # POSIX; imported here so that the rest of this module also loads on Windows

    path = Path(path)
    lock = path.with_name(f".{path.name}.{_MARK}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise UserInputError(
                    f"{what} '{path}' is being written by another vist3a process (lock {lock}); wait for it to "
                    "finish or choose another output"
                ) from None
            raise
        # The holder before us may have removed the file after we opened it: then lock the new one.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)
