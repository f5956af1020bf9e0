"""The exported float16 MiniLM gives the same token states as the package's float32 weights."""

from __future__ import annotations

import json

import pytest
import torch


@pytest.mark.slow
def test_export_round_trip(tmp_path):
    from vist3a.nano.text_encoder import CHECKSUMS_NAME, export_text_encoder
    from vist3a.nano.weights import file_sha256
    from vist3a.video.text import HFTextEncoder, load_minilm_text_encoder

    out = export_text_encoder(tmp_path / "minilm", max_length=24)
    sums = json.loads((out / CHECKSUMS_NAME).read_text())
    assert sums and all(file_sha256(out / name) == digest for name, digest in sums.items())
    prompts = ["a red cube left of a blue sphere", "The camera orbits around a green torus."]
    reference = load_minilm_text_encoder(max_length=24, device="cpu")
    exported = HFTextEncoder.from_pretrained(out, dtype=torch.float32, device="cpu")
    assert exported.max_length == 24 and exported.hidden_size == reference.hidden_size
    (a, mask_a), (b, mask_b) = reference.encode(prompts), exported.encode(prompts)
    assert torch.equal(mask_a, mask_b)
    cos = torch.nn.functional.cosine_similarity(a[mask_a.bool()], b[mask_b.bool()], dim=-1)
    assert float(cos.min()) > 0.999
