"""Options and checks shared by every command: one spelling, one rule, one message.

Every check here runs before any model loads and raises :class:`~vist3a.errors.UserInputError` naming the
option, the rule and what arrived; ``cli.main`` turns it into ``error: ...`` and exit code 2. Nothing here
imports torch at module level, so ``vist3a --help`` stays fast.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import typer

from vist3a.errors import UserInputError

#: Seeds go to ``torch.Generator.manual_seed`` (64 bits); prompt i of a file uses SEED + i.
MAX_SEED = 2**63 - 1

DEVICE_HELP = "cpu, cuda, cuda:N or auto (auto: cuda if available)."


# ---------------------------------------------------------------------------------------------- option factories
def device_option(default: str = "auto") -> Any:
    return typer.Option(default, "--device", help=DEVICE_HELP)


def preset_option(default: str = "nano", help: str | None = None) -> Any:
    return typer.Option(
        default, "--preset",
        help=help or "nano (embedded, CPU) | tiny-random | vist3a-1.3b | vist3a-14b | a preset .json | a folder.",
    )


def prompts_file_option(required: bool = False, help: str = "Text file with one prompt per line.") -> Any:
    return typer.Option(
        ... if required else None, "--prompts-file", "--prompts", help=help, show_default=False,
    )


def out_option(help: str, required: bool = True) -> Any:
    return typer.Option(... if required else None, "--out", "-o", help=help, show_default=False)


def overwrite_option(what: str = "Replace an existing output that vist3a did not write.") -> Any:
    return typer.Option(False, "--overwrite", help=what)


# ---------------------------------------------------------------------------------------------- value checks
def check_choice(value: str | None, choices: Iterable[str], option: str) -> str | None:
    """``value`` if it is one of ``choices`` (``None`` passes: the default applies)."""
    choices = tuple(choices)
    if value is not None and value not in choices:
        raise UserInputError(f"{option} must be one of {', '.join(choices)}, got {value!r}")
    return value


def check_finite(value: float | None, option: str, minimum: float | None = None) -> float | None:
    """A finite number (not nan/inf), at least ``minimum`` when given."""
    if value is None:
        return None
    if not math.isfinite(value):
        raise UserInputError(f"{option} must be a finite number, got {value}")
    if minimum is not None and value < minimum:
        raise UserInputError(f"{option} must be >= {minimum:g}, got {value:g}")
    return value


def check_int_range(value: int | None, option: str, minimum: int | None = None, maximum: int | None = None
                    ) -> int | None:
    if value is None:
        return None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        low = "" if minimum is None else f">= {minimum}"
        high = "" if maximum is None else f"<= {maximum}"
        raise UserInputError(f"{option} must be {' and '.join(b for b in (low, high) if b)}, got {value}")
    return value


def check_seed(seed: int, count: int = 1, option: str = "--seed") -> int:
    """A seed that ``torch.Generator.manual_seed`` takes for every one of ``count`` consecutive uses."""
    return check_int_range(seed, option, 0, MAX_SEED - (count - 1))


def check_frames(num_frames: int | None, option: str = "--num-frames", temporal: int = 4,
                 round_up: bool = False, round_hint: bool = False) -> int | None:
    """Frame counts of the form ``temporal * k + 1`` (the Wan VAE keeps the first frame and packs the rest)."""
    if num_frames is None:
        return None
    if num_frames < 1:
        raise UserInputError(f"{option} must be >= 1 (of the form {temporal}k+1), got {num_frames}")
    if (num_frames - 1) % temporal and not round_up:
        low = (num_frames - 1) // temporal * temporal + 1
        hint = "; --round-frames rounds it up" if round_hint else ""
        raise UserInputError(
            f"{option} must be of the form {temporal}k+1 (e.g. {low} or {low + temporal}), got {num_frames}{hint}"
        )
    return num_frames


def check_size(value: int | None, option: str, multiple: int = 16) -> int | None:
    if value is None:
        return None
    if value < multiple or value % multiple:
        raise UserInputError(f"{option} must be a positive multiple of {multiple}, got {value}")
    return value


def parse_device(text: str | None, option: str = "--device"):
    """``cpu``, ``cuda``, ``cuda:N``, ``mps`` or ``auto``/``None`` (CUDA when available) -> ``torch.device``."""
    import torch

    if text is None or text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise UserInputError(f"{option} must be cpu, cuda, cuda:N or auto, got {text!r}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise UserInputError(f"{option} {text}: no CUDA device is available here; use {option} cpu")
        if device.index is not None and device.index >= count:
            raise UserInputError(f"{option} {text}: this machine has {count} CUDA device(s), cuda:0 to "
                                 f"cuda:{count - 1}")
    elif device.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise UserInputError(f"{option} mps: no Apple GPU is available here; use {option} cpu")
    elif device.type != "cpu":
        raise UserInputError(f"{option} must be cpu, cuda, cuda:N or auto, got {text!r}")
    return device


def read_prompts_file(path: Path, option: str = "--prompts-file") -> list[str]:
    """Prompts one per line; blank lines and lines starting with '#' are skipped."""
    if not path.is_file():
        what = "is a folder, not a text file" if path.is_dir() else "does not exist"
        raise UserInputError(f"{option} '{path}' {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise UserInputError(f"{option} '{path}' is not UTF-8 text (one prompt per line)") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise UserInputError(f"{option} '{path}' contains no prompts (one per line; '#' starts a comment)")
    return prompts


# ---------------------------------------------------------------------------------------------- output checks
def check_writable(path: Path, option: str = "--out") -> None:
    """Fail now, not after the work, when ``path`` cannot be created: probe its nearest existing ancestor."""
    ancestor = Path(os.path.abspath(path))
    while not ancestor.exists():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if path.exists() and not path.is_dir():
        ancestor = ancestor.parent  # a file being replaced: its folder must take the new entry
    if not ancestor.is_dir():
        raise UserInputError(f"{option} '{path}': '{ancestor}' is a file, so nothing can be created below it")
    try:
        probe = tempfile.mkdtemp(prefix=".vist3a-probe-", dir=ancestor)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserInputError(f"{option} '{path}' cannot be written ({reason} in '{ancestor}'); choose another "
                             f"{option}") from None
    os.rmdir(probe)


def is_vist3a_output(path: Path, markers: Sequence[str]) -> bool:
    """``path`` is a folder that vist3a wrote: it holds an entry matching one of ``markers`` (glob patterns such
    as ``meta.json`` or ``checkpoint-*``)."""
    return path.is_dir() and any(next(path.glob(m), None) is not None for m in markers)


def _check_not_precious(path: Path, option: str) -> None:
    """``--overwrite`` never deletes the home folder, a filesystem root, or the current folder or one above it."""
    resolved = path.resolve()
    home = Path.home().resolve()
    if resolved == home or resolved == Path(resolved.anchor) or Path.cwd().resolve().is_relative_to(resolved):
        raise UserInputError(f"{option} '{path}' with --overwrite would delete the home folder, a root or the "
                             "current folder: choose a new output folder")


def check_output_target(path: Path, overwrite: bool, markers: Sequence[str] = ("meta.json",),
                        option: str = "--out") -> None:
    """An output folder that will be replaced as a whole: refuse to replace a user's file or folder.

    Allowed: a missing path, an empty folder, a folder vist3a wrote (holding a ``markers`` file), or anything
    with ``--overwrite``. The target must also be writable (checked now, not after the work).
    """
    if overwrite and path.exists():
        _check_not_precious(path, option)
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            if any(path.iterdir()) and not is_vist3a_output(path, markers) and not overwrite:
                raise UserInputError(
                    f"{option} '{path}' is a folder with files vist3a did not write (no {markers[0]}); choose "
                    f"another {option} or pass --overwrite to replace it"
                )
        elif not overwrite:
            raise UserInputError(
                f"{option} '{path}' is an existing file, not an output folder; choose another {option} or pass "
                "--overwrite to replace it"
            )
    check_writable(path, option)


def check_run_dir(out: Path, resume: Path | None, overwrite: bool, markers: Sequence[str],
                  option: str = "--out", resumable: bool = True) -> None:
    """A training run folder: a fresh run needs an empty or missing one; continuing needs ``--resume``.

    A non-empty folder is refused unless ``resume`` lies inside it (continuing that run) or ``overwrite`` is
    given and the folder is a vist3a run (holds one of ``markers``); :func:`clear_run_dir` then empties it.
    """
    if overwrite and resume is not None:
        raise UserInputError("--overwrite starts a run afresh and --resume continues one: give only one of them")
    if out.exists() and not out.is_dir():
        raise UserInputError(f"{option} '{out}' is a file; a run needs a folder")
    if overwrite and out.exists():
        _check_not_precious(out, option)
    # Under accelerate launch / torchrun only rank 0 judges the folder: the others may look after it started writing.
    if out.is_dir() and any(out.iterdir()) and int(os.environ.get("RANK", "0")) == 0:
        inside = resume is not None and Path(os.path.abspath(resume)).parent == Path(os.path.abspath(out))
        if not inside and not overwrite:
            held = ", ".join(sorted(p.name for p in out.iterdir() if not p.name.startswith("."))[:4]) or "files"
            hint = f"continue it with --resume {out}/checkpoint-<step>, " if resume is None and resumable else ""
            raise UserInputError(
                f"{option} '{out}' already holds another run ({held}); {hint}start afresh with --overwrite "
                f"(deletes it) or choose another {option}"
            )
        if overwrite and not is_vist3a_output(out, markers):
            raise UserInputError(
                f"{option} '{out}' holds files vist3a did not write (no {' or '.join(markers)}); --overwrite only "
                f"replaces a vist3a run folder: choose another {option}"
            )
    check_writable(out, option)


def clear_run_dir(out: Path) -> None:
    """Empty a run folder (``--overwrite``, after :func:`check_run_dir` and every other check passed; rank 0
    only, under accelerate launch / torchrun)."""
    if out.is_dir() and int(os.environ.get("RANK", "0")) == 0:
        for entry in out.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
