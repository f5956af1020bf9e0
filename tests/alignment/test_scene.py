"""The real decoding chain (tiny random VAE + stitched AnySplat + torch renderer): shapes, cameras, gradients."""

from __future__ import annotations

import pytest
import torch

from vist3a.alignment.scene import StitchedSceneDecoder


@pytest.fixture(scope="module")
def chain():
    from vist3a.recon import random_tiny_model
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.tiny import build_tiny_generator

    gen = build_tiny_generator(seed=0)
    stitched = StitchedDecoder.from_recon(
        random_tiny_model("anysplat", seed=0), "enc_blocks_1", "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"
    )
    return gen, stitched


@pytest.mark.slow
def test_decode_render_shapes_cameras_and_gradients(chain):
    gen, stitched = chain
    raw = torch.randn(1, 16, 2, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
    native = StitchedSceneDecoder(gen.decode, stitched, backend="torch", checkpoint_vae=False)
    half = StitchedSceneDecoder(gen.decode, stitched, render_size=56, backend="torch", checkpoint_vae=True)
    with torch.no_grad():
        ref = native.decode(raw)
        direct = stitched(raw, gen.decode(raw))
    assert ref.frames.shape == (1, 5, 3, 112, 112)  # 8x8 tokens of patch 14
    torch.testing.assert_close(ref.K, direct.cameras.K)
    scene = half.decode(raw)
    assert scene.frames.shape == (1, 5, 3, 56, 56)
    # pixel centres at integer coordinates: f' = f / 2, c' = (c + 0.5) / 2 - 0.5
    torch.testing.assert_close(scene.K[..., 0, 0], ref.K[..., 0, 0] / 2)
    torch.testing.assert_close(scene.K[..., :2, 2], (ref.K[..., :2, 2] + 0.5) / 2 - 0.5)
    renders = half.render(scene, [1, 3])
    assert renders.shape == (1, 2, 3, 56, 56) and bool(((renders >= 0) & (renders <= 1)).all())
    (renders.mean() + scene.frames.mean()).backward()
    assert raw.grad is not None and raw.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in stitched.parameters())
    with pytest.raises(ValueError, match="at least one frame"):
        half.render(scene, [])
