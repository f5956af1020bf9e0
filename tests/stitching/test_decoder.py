"""StitchedDecoder: identity path against the original model, cutting, any frame count, save/load, LoRA merge."""

from __future__ import annotations

import pytest
import torch
from stitch_helpers import perturbed_tiny_anysplat, random_frames

from vist3a.stitching.decoder import StitchedDecoder, resize_frames
from vist3a.stitching.lora import LoraSettings

SPEC = "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"  # o32 = the tiny AnySplat's embed_dim


@pytest.fixture(scope="module")
def model():
    return perturbed_tiny_anysplat(seed=3)


def patch_projection(model, frames: torch.Tensor) -> torch.Tensor:
    """The DINO patch projection of ImageNet-normalised frames: ``[B·V, Hp·Wp, C]`` (what enc_blocks_0 replaces)."""
    agg = model.aggregator
    images = (frames - agg.image_mean) / agg.image_std
    return agg.patch_embed.patch_embed(images.flatten(0, 1))


def assert_same_outputs(out, ref, atol: float = 1e-5) -> None:
    for name in ("depth", "depth_conf", "gaussian_raw", "gaussian_conf", "points"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=atol, rtol=1e-5, msg=name)
    torch.testing.assert_close(out.cameras.pose_enc, ref.cameras.pose_enc, atol=atol, rtol=1e-5)
    for key, value in ref.gaussians_official.items():
        torch.testing.assert_close(out.gaussians_official[key], value, atol=atol, rtol=1e-4, msg=key)


@pytest.mark.parametrize("hw, swap", [((42, 42), True), ((28, 42), False)])
@torch.no_grad()
def test_identity_path_reproduces_the_original_model(model, hw, swap):
    """Stitched at enc_blocks_0 with tokens = the exact patch projection, the tail equals the original forward."""
    from vist3a.stitching.adapters import AnySplatAdapter

    frames = random_frames(1, 5, *hw, seed=1)
    reference = model(frames, voxelize=False)
    adapter = AnySplatAdapter(pos_embed_hw_swap=swap)
    grid = adapter.token_grid(model, hw)
    tokens = patch_projection(model, frames)
    out = adapter.run_tail(model, tokens, 0, grid, 5, frames, voxelize=False)
    assert_same_outputs(out, reference)
    # the same through a cut copy inside a StitchedDecoder (patch projection deleted)
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_0", SPEC, pos_embed_hw_swap=swap)
    assert not hasattr(decoder.adapter.dino(decoder.recon), "patch_embed")
    out = decoder.adapter.run_tail(decoder.recon, tokens, 0, grid, 5, frames, voxelize=False)
    assert_same_outputs(out, reference)


@torch.no_grad()
def test_release_pos_embed_swap_matters_only_for_non_square_grids(model):
    from vist3a.stitching.adapters import AnySplatAdapter

    frames = random_frames(1, 5, 28, 42, seed=2)
    tokens = patch_projection(model, frames)
    grid = (2, 3)
    swapped = AnySplatAdapter(pos_embed_hw_swap=True).run_tail(model, tokens, 0, grid, 5, frames, voxelize=False)
    plain = AnySplatAdapter(pos_embed_hw_swap=False).run_tail(model, tokens, 0, grid, 5, frames, voxelize=False)
    assert (swapped.depth - plain.depth).abs().max() > 1e-4


@pytest.mark.parametrize("k", [1, 2, 3])
@torch.no_grad()
def test_cut_model_equals_skipping_blocks_of_the_whole_model(model, k):
    """Deleting blocks 1..k and renumbering the rest runs the same weights as skipping them in the whole model."""
    decoder = StitchedDecoder.from_recon(model, f"enc_blocks_{k}", SPEC)
    dino = decoder.adapter.dino(decoder.recon)
    assert len(dino.blocks) == 3 - k
    frames = random_frames(1, 5, 42, 42, seed=4)
    tokens = torch.randn(5, 9, 32, generator=torch.Generator().manual_seed(k))
    cut = decoder.adapter.run_tail(decoder.recon, tokens, 0, (3, 3), 5, frames, voxelize=False)
    whole = decoder.adapter.run_tail(model, tokens, k, (3, 3), 5, frames, voxelize=False)
    assert_same_outputs(cut, whole, atol=1e-6)


def test_from_recon_copies_and_leaves_the_source_untouched(model):
    before = {k: v.clone() for k, v in model.state_dict().items()}
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_2", SPEC, lora=LoraSettings(2, 4.0))
    with torch.no_grad():
        for p in decoder.parameters():
            p.add_(1.0)
    after = model.state_dict()
    assert set(before) == set(after) and all(torch.equal(before[k], after[k]) for k in before)
    assert len(model.aggregator.patch_embed.blocks) == 3
    assert decoder.layer == "enc_blocks_2" and decoder.config.lora_rank == 2


@pytest.mark.parametrize("latent_frames", [1, 2, 3])
@torch.no_grad()
def test_forward_any_4n_plus_1_frames(model, latent_frames):
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_1", SPEC).eval()
    views = (latent_frames - 1) * 4 + 1
    latents = torch.randn(2, 16, latent_frames, 3, 3)
    frames = random_frames(2, views, 64, 64, seed=latent_frames)  # resized to 42 x 42 inside
    out = decoder(latents, frames, voxelize=False)
    assert out.depth.shape == (2, views, 42, 42)
    assert out.cameras.w2c.shape == (2, views, 3, 4)
    assert all(g.means.shape[0] == views * 42 * 42 for g in out.gaussians)
    assert torch.isfinite(out.gaussian_raw).all()


def test_frames_must_match_the_latent_frame_count(model):
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_1", SPEC)
    with pytest.raises(ValueError, match=r"T_lat=2"):
        decoder(torch.randn(1, 16, 2, 3, 3), random_frames(1, 4, 42, 42))
    with pytest.raises(ValueError, match="RGB frames"):
        decoder(torch.randn(1, 16, 2, 3, 3), None)


def test_spec_must_output_the_token_width(model):
    with pytest.raises(ValueError, match="o32"):
        StitchedDecoder.from_recon(model, "enc_blocks_1", "conv3d_k3x3x3_o16_s1x1x1_p1x1x1")
    with pytest.raises(ValueError, match="enc_blocks_"):
        StitchedDecoder.from_recon(model, "block_1", SPEC)
    with pytest.raises(ValueError, match="out of range"):
        StitchedDecoder.from_recon(model, "enc_blocks_4", SPEC)


@torch.no_grad()
def test_save_load_round_trip_and_lora_merge(model, tmp_path):
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_1", SPEC, latent_hw=(3, 3), lora=LoraSettings(2, 4.0))
    generator = torch.Generator().manual_seed(7)
    for name, param in decoder.named_parameters():
        if "lora_B" in name:  # fresh LoRA is a no-op (B = 0): make it count
            param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    decoder.eval()
    latents, frames = torch.randn(1, 16, 2, 3, 3), random_frames(1, 5, 42, 42, seed=9)
    reference = decoder(latents, frames, voxelize=False)

    decoder.save_pretrained(tmp_path / "dec")
    loaded = StitchedDecoder.from_pretrained(tmp_path / "dec").eval()
    assert loaded.config.lora_rank == 2 and loaded.layer == "enc_blocks_1"
    assert_same_outputs(loaded(latents, frames, voxelize=False), reference, atol=1e-6)

    loaded.merge_lora()
    assert loaded.config.lora_rank == 0
    assert not any("lora_" in k or "base_layer" in k for k in loaded.state_dict())
    assert_same_outputs(loaded(latents, frames, voxelize=False), reference, atol=1e-4)
    loaded.save_pretrained(tmp_path / "merged")
    merged = StitchedDecoder.from_pretrained(tmp_path / "merged").eval()
    assert_same_outputs(merged(latents, frames, voxelize=False), reference, atol=1e-4)


def test_resize_frames_is_pixel_area_aligned():
    frames = random_frames(1, 2, 8, 8)
    assert resize_frames(frames, (8, 8)) is frames
    assert resize_frames(frames, (5, 5)).shape == (1, 2, 3, 5, 5)
    # align_corners=False (the release's inference resize): halving samples between pixel pairs, i.e. it
    # equals 2x2 average pooling
    half = resize_frames(frames, (4, 4))
    pooled = torch.nn.functional.avg_pool2d(frames.flatten(0, 1), 2).reshape(1, 2, 3, 4, 4)
    torch.testing.assert_close(half, pooled)
