"""MV-DUSt3R's optional sine-cosine position code (``sincos_pos_embed``, off in the release)."""

from __future__ import annotations

import math

import pytest
import torch

from vist3a.recon import random_tiny_mvdust3r
from vist3a.recon.mvdust3r import sincos_positions
from vist3a.stitching.adapters import adapter_for_model, layer_name
from vist3a.stitching.decoder import StitchedDecoder


def test_code_halves_encode_row_then_column():
    code = sincos_positions((3, 5), 8, torch.device("cpu"), torch.float64)[0].view(3, 5, 8)
    rows, cols = code[..., :4], code[..., 4:]
    assert torch.equal(rows, rows[:, :1].expand_as(rows))  # the row half is the same along a row
    assert torch.equal(cols, cols[:1].expand_as(cols))  # the column half is the same down a column
    # frequencies 1 and 1/100 (dim 8: two per coordinate), sines then cosines
    r, c = 2, 3
    expected_col = torch.tensor([math.sin(c), math.sin(c / 100), math.cos(c), math.cos(c / 100)], dtype=torch.float64)
    torch.testing.assert_close(cols[r, c], expected_col)
    with pytest.raises(ValueError, match="divisible by 4"):
        sincos_positions((2, 2), 6, torch.device("cpu"), torch.float32)


def test_the_code_tells_tokens_of_a_uniform_image_apart():
    """With RoPE alone attention sees only offsets, so a uniform image gives every token the same state; the code
    makes the encoder's output depend on where a token is (what the reference view's pointmap needs)."""
    images = torch.zeros(1, 2, 3, 32, 48)
    for sincos in (False, True):
        model = random_tiny_mvdust3r("mvdust3r", seed=3, sincos_pos_embed=sincos)
        with torch.no_grad():
            tokens = model.encode(images).tokens[0, 0]  # [6, C]
        spread = (tokens - tokens.mean(0)).abs().max()
        assert bool(spread > 1e-3) is sincos, (sincos, float(spread))


def test_stitched_model_keeps_the_code():
    """A decoder cut after the patch embedding (where the encoder's code is added) reproduces the forward from the
    uncut model's tokens: the decoder's code is re-added in the tail."""
    model = random_tiny_mvdust3r("mvdust3r", seed=1, sincos_pos_embed=True)
    adapter = adapter_for_model(model)
    frames = torch.rand(1, 3, 3, 32, 48)
    tokens = adapter.candidate_features(model, frames, [layer_name(1)])[layer_name(1)].flatten(0, 1)
    decoder = StitchedDecoder.from_recon(model, layer_name(1), "conv3d_k1x1x1_o32_s1x1x1_p0x0x0")
    with torch.no_grad():
        stitched = adapter.run_tail(decoder.recon, tokens, 0, (2, 3), 3, frames)
        original = adapter.forward_original(model, frames)
    torch.testing.assert_close(stitched.points, original.points, rtol=1e-5, atol=1e-5)
