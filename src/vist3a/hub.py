"""The one way vist3a turns a Hugging Face repo id or a local folder into local files.

One offline rule (:func:`is_offline`: an explicit ``local_files_only`` wins, otherwise ``HF_HUB_OFFLINE``) and
one error style: every failure is a :class:`~vist3a.errors.UserInputError` naming the repo and the fix, and
:func:`require` checks several repos first so that a missing set is reported in *one* message. One piece of
advice for the reason downloads did not happen (:func:`offline_hint`): ``--offline`` (``local_files_only``), the
``HF_HUB_OFFLINE`` variable (named only when it is set), or a Hub that could not be reached.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from vist3a.errors import UserInputError

_TRUE = ("1", "true", "yes", "on")


def offline_env() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no downloads."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def is_offline(local_files_only: bool | None) -> bool:
    """The offline rule: an explicit ``local_files_only`` wins; ``None`` follows ``HF_HUB_OFFLINE``."""
    return offline_env() if local_files_only is None else bool(local_files_only)


def offline_hint(local_files_only: bool | None) -> str:
    """The advice for weights that were not downloaded, for the reason they were not (``"or ..."``)."""
    env = f"HF_HUB_OFFLINE (it is {os.environ.get('HF_HUB_OFFLINE')!r} here)"
    if local_files_only:
        also = f" and unset {env}" if offline_env() else ""
        return f"or run without --offline (local_files_only){also} on a machine with internet"
    if local_files_only is None and offline_env():
        return f"or unset {env}"
    return "or check this machine's connection to the Hugging Face Hub"


def _fix(repo: str, local_files_only: bool | None) -> str:
    return (f"download it with `hf download {repo}` on a machine with internet (then copy the cache) or pass a "
            f"folder, {offline_hint(local_files_only)}")


def looks_like_path(source: str | os.PathLike) -> bool:
    """A ``Path``, or a string that cannot be an ``owner/name`` repo id (``./x``, ``/x``, ``~/x``, ``a/b/c``)."""
    text = str(source)
    return isinstance(source, os.PathLike) or text.startswith((".", "/", "~")) or text.count("/") > 1


def resolve_dir(
    repo_or_dir: str | os.PathLike,
    *,
    allow_patterns: Sequence[str] | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "weights",
) -> Path:
    """A local folder for ``repo_or_dir``: the folder itself when it exists, else a (cached) Hub snapshot.

    ``allow_patterns`` limits the download to the files needed (e.g. ``["vae/*"]``).
    """
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    name = str(repo_or_dir)
    if looks_like_path(repo_or_dir):
        raise UserInputError(f"{what}: folder '{name}' does not exist; pass an existing folder or a Hub repo id")
    offline = is_offline(local_files_only)
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        local = snapshot_download(
            name, revision=revision, cache_dir=cache_dir, local_files_only=offline,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
        )
    except HFValidationError:
        raise UserInputError(f"{what}: '{name}' is neither an existing folder nor a valid Hub repo id") from None
    except RepositoryNotFoundError:
        raise UserInputError(
            f"{what}: Hub repo '{name}' was not found (check the id, or `hf auth login` if it is private or gated)"
        ) from None
    except LocalEntryNotFoundError:
        how = "downloads are off" if offline else "the Hub could not be reached"
        raise UserInputError(
            f"{what}: '{name}' is not in the local Hugging Face cache and {how}; {_fix(name, local_files_only)}"
        ) from None
    except OSError as exc:  # network failures surface as OSError subclasses in several hub versions
        raise UserInputError(f"{what}: could not fetch '{name}' from the Hub ({exc}); pass a local folder") from None
    return Path(local)


def resolve_file(
    repo_or_dir: str | os.PathLike,
    filename: str,
    *,
    local_files_only: bool | None = None,
    revision: str | None = None,
    cache_dir: str | os.PathLike | None = None,
    missing_ok: bool = False,
    what: str = "weights",
) -> Path | None:
    """``filename`` inside a local folder or a Hub repo; ``None`` when the repo lacks it and ``missing_ok``."""
    folder = Path(repo_or_dir).expanduser()
    if folder.is_dir() or looks_like_path(repo_or_dir):
        path = folder / filename
        if path.is_file():
            return path
        if missing_ok and folder.is_dir():
            return None
        raise UserInputError(f"{what}: '{path}' does not exist")
    name = str(repo_or_dir)
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HFValidationError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    offline = is_offline(local_files_only)
    try:
        return Path(hf_hub_download(name, filename, revision=revision, cache_dir=cache_dir,
                                    local_files_only=offline))
    except EntryNotFoundError:
        if missing_ok:
            return None
        raise UserInputError(f"{what}: Hub repo '{name}' has no file '{filename}'") from None
    except HFValidationError:
        raise UserInputError(f"{what}: '{name}' is neither an existing folder nor a valid Hub repo id") from None
    except RepositoryNotFoundError:
        raise UserInputError(f"{what}: Hub repo '{name}' does not exist (or needs `hf auth login`)") from None
    except LocalEntryNotFoundError:
        how = "downloads are off" if offline else "the Hub could not be reached"
        raise UserInputError(
            f"{what}: '{filename}' of '{name}' is not in the local Hugging Face cache and {how}; "
            f"{_fix(name, local_files_only)}"
        ) from None
    except OSError as exc:
        raise UserInputError(f"{what}: could not fetch '{filename}' from '{name}' ({exc}); pass a folder") from None


def require(
    needed: Iterable[tuple[str, Sequence[str] | None]], *, local_files_only: bool | None = None, what: str = "weights"
) -> dict[str, Path]:
    """Resolve every ``(repo_or_dir, allow_patterns)`` first; one :class:`UserInputError` names all missing repos.

    Returns ``{repo_or_dir: local folder}`` (the last patterns win for a repo listed twice: callers list a repo
    with all the patterns they need).
    """
    resolved: dict[str, Path] = {}
    missing: list[str] = []
    for repo, patterns in needed:
        try:
            resolved[repo] = resolve_dir(repo, allow_patterns=patterns, local_files_only=local_files_only, what=what)
        except UserInputError:
            missing.append(repo)
    if missing:
        names = ", ".join(dict.fromkeys(missing))
        advice = ("on a machine with internet (`hf download <repo>`) and copy the Hugging Face cache, or pass "
                  f"folders, {offline_hint(local_files_only)}")
        raise UserInputError(f"{what} needs weights that are not available here: {names}. Download them {advice}")
    return resolved
