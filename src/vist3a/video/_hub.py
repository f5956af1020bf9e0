"""Resolve a Hugging Face repo id or a local folder to a local folder, with user-facing errors.

Every loader in ``vist3a.video`` goes through :func:`resolve_pretrained_dir`, so an offline machine without
the weights gets one clear :class:`~vist3a.errors.UserInputError` naming the repo id and the fix, instead of a
stack trace from deep inside huggingface_hub.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from vist3a.errors import UserInputError


def _offline_env() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def resolve_pretrained_dir(
    repo_or_dir: str | os.PathLike,
    *,
    allow_patterns: Sequence[str] | None = None,
    revision: str | None = None,
    local_files_only: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
    what: str = "weights",
) -> Path:
    """Return a local folder for ``repo_or_dir``: the folder itself if it exists, else a Hub snapshot.

    ``local_files_only=None`` follows ``HF_HUB_OFFLINE``. ``allow_patterns`` limits the download to the files
    needed (e.g. ``["vae/*", "transformer/*"]``). Raises :class:`UserInputError` when the folder is missing or
    the repo can be neither found in the cache nor downloaded.
    """
    path = Path(repo_or_dir).expanduser()
    if path.is_dir():
        return path
    name = str(repo_or_dir)
    is_path = isinstance(repo_or_dir, os.PathLike) or name.startswith((".", "/", "~")) or name.count("/") > 1
    if is_path:  # a Path object or a path-like string, not an "org/name" repo id
        raise UserInputError(f"{what}: folder '{name}' does not exist; pass an existing folder or a Hub repo id")
    offline = _offline_env() if local_files_only is None else local_files_only
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    try:
        local = snapshot_download(
            name,
            revision=revision,
            cache_dir=cache_dir,
            local_files_only=offline,
            allow_patterns=list(allow_patterns) if allow_patterns is not None else None,
        )
    except HFValidationError as exc:
        raise UserInputError(f"{what}: '{name}' is neither an existing folder nor a valid Hub repo id") from exc
    except RepositoryNotFoundError as exc:
        raise UserInputError(
            f"{what}: Hub repo '{name}' was not found (check the id, or log in with `hf auth login` if it is "
            "private or gated)"
        ) from exc
    except LocalEntryNotFoundError as exc:
        how = "downloads are off (HF_HUB_OFFLINE=1 / local_files_only)" if offline else "the Hub could not be reached"
        raise UserInputError(
            f"{what}: '{name}' is not in the local Hugging Face cache and {how}; download it first with "
            f"`hf download {name}` on a machine with internet (then copy the cache), or pass a local folder"
        ) from exc
    except OSError as exc:  # network failures surface as OSError subclasses in several hub versions
        raise UserInputError(f"{what}: could not fetch '{name}' from the Hub ({exc}); pass a local folder") from exc
    return Path(local)
