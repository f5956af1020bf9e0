"""Stitching VGGT goes the way of AnySplat: ``VGGT.encode`` / ``VGGT.decode``, the cut model's tail, the
``StitchedDecoder`` (no RGB frames needed), layer search and fine-tuning."""

from __future__ import annotations

import pytest
import torch
from stitch_helpers import perturbed_tiny_model, random_frames

from vist3a.recon import VGGT
from vist3a.stitching.decoder import StitchedDecoder
from vist3a.stitching.lora import LoraSettings

SPEC = "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"  # o32 = the tiny VGGT's embed_dim
DINO_DEPTH = 3
VIEWS, SIZE = 3, 42  # 3 x 3 patch grid


@pytest.fixture(scope="module")
def vggt() -> VGGT:
    return perturbed_tiny_model("vggt", seed=5, dino_depth=DINO_DEPTH)


def dino_states(model: VGGT, frames: torch.Tensor) -> list[torch.Tensor]:
    """The uncut model's DINO trunk state ``[B·V, 1 + R + P, C]`` before block 1 (index 0) and after every block
    ``k`` (index k), from its own forward."""
    agg = model.aggregator
    dino = agg.patch_embed
    images = ((frames - agg.image_mean) / agg.image_std).flatten(0, 1)
    p = agg.config.patch_size
    first = dino.prepare_tokens(dino.patch_embed(images), (frames.shape[-2] // p, frames.shape[-1] // p))
    _, block_outputs = dino(images, return_block_outputs=True)
    return [first, *block_outputs]


def assert_same_vggt_outputs(out, ref, atol: float = 0.0) -> None:
    for name in ("depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name), atol=atol, rtol=0, msg=name)
    for name in ("pose_enc", "w2c", "K"):
        torch.testing.assert_close(getattr(out.cameras, name), getattr(ref.cameras, name), atol=atol, rtol=0,
                                   msg=name)


@torch.no_grad()
def test_encode_then_decode_is_the_forward(vggt):
    frames = random_frames(1, VIEWS, SIZE, SIZE, seed=1)
    assert_same_vggt_outputs(vggt.decode(vggt.encode(frames), frames), vggt(frames))


@pytest.mark.parametrize("k", range(DINO_DEPTH + 1))
@torch.no_grad()
def test_cut_at_layer_k_and_tail_on_the_true_layer_k_state_is_the_uncut_forward(vggt, k):
    """Cut after DINO block k (patch projection and blocks 1..k deleted, the rest renumbered), the tail run on the
    uncut model's own state after block k gives exactly the uncut forward.

    (``run_tail`` on stitched tokens re-prefixes CLS and registers and adds the positional embedding again, as the
    release's stitched forward does, so on prefix-dropped block-k features it is the identity only at k = 0:
    ``test_adapters.test_vggt_adapter_identity_path``.)"""
    frames = random_frames(1, VIEWS, SIZE, SIZE, seed=2)
    reference = vggt(frames)
    decoder = StitchedDecoder.from_recon(vggt, f"enc_blocks_{k}", SPEC)
    dino = decoder.adapter.dino(decoder.recon)
    assert not hasattr(dino, "patch_embed") and len(dino.blocks) == DINO_DEPTH - k
    state = dino_states(vggt, frames)[k]
    out = decoder.adapter.run_tail_from_trunk(decoder.recon, state, 0, (3, 3), VIEWS, None)
    assert_same_vggt_outputs(out, reference)
    # the whole model with blocks 1..k skipped runs the same weights
    whole = decoder.adapter.run_tail_from_trunk(vggt, state, k, (3, 3), VIEWS, frames)
    assert_same_vggt_outputs(whole, reference)


@torch.no_grad()
def test_stitched_vggt_decoder_needs_no_frames_and_round_trips(vggt, tmp_path):
    decoder = StitchedDecoder.from_recon(vggt, "enc_blocks_1", SPEC, lora=LoraSettings(2, 4.0))
    generator = torch.Generator().manual_seed(7)
    for name, param in decoder.named_parameters():
        if "lora_B" in name:  # fresh LoRA is a no-op (B = 0): make it count
            param.copy_(0.1 * torch.randn(param.shape, generator=generator))
    decoder.eval()
    latents = torch.randn(1, 16, 2, 3, 3, generator=generator)
    out = decoder(latents)
    assert out.depth.shape == (1, 5, SIZE, SIZE) and out.world_points.shape == (1, 5, SIZE, SIZE, 3)
    assert out.cameras.w2c.shape == (1, 5, 3, 4) and torch.isfinite(out.world_points).all()
    # VGGT's heads read only the frames' size: passing frames changes nothing
    assert_same_vggt_outputs(decoder(latents, random_frames(1, 5, 64, 64, seed=3)), out)
    targets = decoder.adapter.distill_targets(out)
    assert {t.target for t in decoder.adapter.loss_terms().values()} <= set(targets)

    decoder.save_pretrained(tmp_path / "dec")
    loaded = StitchedDecoder.from_pretrained(tmp_path / "dec").eval()
    assert loaded.config.recon_type == "vggt" and isinstance(loaded.recon, VGGT)
    assert_same_vggt_outputs(loaded(latents), out, atol=1e-6)
    loaded.merge_lora()
    assert_same_vggt_outputs(loaded(latents), out, atol=1e-4)


def test_layer_search_and_fine_tuning_run_on_vggt(tiny_models, tiny_clips, tmp_path):
    from vist3a.stitching.adapters import adapter_for_model
    from vist3a.stitching.search import SearchConfig, run_layer_search
    from vist3a.stitching.train import StitchTrainConfig, build_student, train_stitched

    teacher = perturbed_tiny_model("vggt", seed=6, dino_depth=2)
    search = SearchConfig(spec=tiny_models.spec, num_clips=3, num_frames=5, vae_size=16, recon_size=28,
                          holdout_fraction=0.0)
    report = run_layer_search(tiny_clips, tiny_models.vae, teacher, adapter_for_model(teacher), tmp_path / "search",
                              search, progress=False)
    assert set(report.layers) == {"enc_blocks_1", "enc_blocks_2"}
    config = StitchTrainConfig(max_steps=2, lr=1e-3, warmup_steps=0, batch_size=1, view_choices=(5,), vae_size=16,
                               recon_size=28, lora_rank=2, lora_alpha=4.0, checkpoint_every=2,
                               gradient_checkpointing=False)
    student = build_student(teacher, tmp_path / "search", config)
    result = train_stitched(student, teacher, tiny_models.vae, tiny_clips, tmp_path / "run", config, device="cpu",
                            progress=False)
    assert result.step == 2 and all(torch.isfinite(torch.tensor(r["loss"])) for r in result.history)
    final = StitchedDecoder.from_pretrained(tmp_path / "run" / "final")
    assert final.config.recon_type == "vggt" and final.layer == report.best_layer
