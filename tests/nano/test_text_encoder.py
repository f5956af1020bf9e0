"""The exported float16 MiniLM gives the same token states as the package's float32 weights."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.video.text import HFTextEncoder


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


@pytest.mark.slow
def test_compact_export_covers_world_texts_and_expands_exactly(tmp_path):
    """Sampled captions (both splits, camera phrases, settings), templated prompts and R-precision prompts only use
    kept token ids, and the expanded folder encodes them exactly as the full export does."""
    import random

    from vist3a.evaluation.prompts import heldout_compositions, r_precision_prompts
    from vist3a.nano.text_encoder import compact_text_encoder, expand_text_encoder, export_text_encoder
    from vist3a.video.templates import apply_template
    from vist3a.world.captions import CAMERA_PHRASES, caption_for_scene
    from vist3a.world.scene import sample_scene

    full = export_text_encoder(tmp_path / "full", max_length=64)
    expanded = expand_text_encoder(compact_text_encoder(full, tmp_path / "compact"), tmp_path / "expanded")
    reference = HFTextEncoder.from_pretrained(full, dtype=torch.float32, device="cpu")
    restored = HFTextEncoder.from_pretrained(expanded, dtype=torch.float32, device="cpu")
    rng, kinds = random.Random(0), sorted(CAMERA_PHRASES)
    texts = []
    for split in ("train", "heldout"):
        for _ in range(300):
            caption = caption_for_scene(sample_scene(rng, split=split), rng, camera_kind=rng.choice(kinds))
            texts += [caption, apply_template(caption, "orbit")]
    for truth in heldout_compositions(5):
        texts += r_precision_prompts(truth, rng=rng)
    zero_rows = (restored.model.get_input_embeddings().weight == 0).all(-1)
    for text in texts:
        ids = restored.tokenizer(text)["input_ids"]
        assert not zero_rows[ids].any(), text
    (a, _), (b, _) = reference.encode(texts[:16]), restored.encode(texts[:16])
    torch.testing.assert_close(a, b, atol=0, rtol=0)
