"""AnySplat pieces against the official intermediates of ``oracles/anysplat_tiny``."""

from __future__ import annotations

import pytest
import torch
from recon_oracles import assert_oracle_close, oracle_anysplat, oracle_case

from vist3a.recon.aggregator import IMAGENET_MEAN, IMAGENET_STD
from vist3a.recon.anysplat import PAD_FEATURE, PAD_POINT


@pytest.fixture
def case(oracle_dir):
    folder = oracle_dir / "anysplat_tiny"
    if not folder.is_dir():
        pytest.skip("anysplat_tiny oracle missing")
    return oracle_case(folder)


@pytest.fixture
def model(case):
    return oracle_anysplat(case.folder)


def _normalised(model, images):
    agg = model.aggregator
    return ((images - agg.image_mean) / agg.image_std).flatten(0, 1)


def test_dino_block_outputs(case, model):
    images = case.load("inputs")["images"]
    inter = case.load("intermediates")
    with torch.no_grad():
        patch_tokens, blocks = model.aggregator.patch_embed(_normalised(model, images), return_block_outputs=True)
    assert len(blocks) == model.aggregator.config.patch_embed.depth
    for i, out in enumerate(blocks):
        assert_oracle_close(out, inter[f"dino.block_out.{i}"], f"dino.block_out.{i}")
    assert_oracle_close(patch_tokens, inter["dino.x_norm_patchtokens"], "dino.x_norm_patchtokens")


def test_normalisation_constants_are_bf16_rounded(case, model):
    """The official model casts its aggregator (buffers included) to bf16: the ImageNet constants it uses are
    bf16-rounded. With exact float32 constants the DINO output leaves the oracle tolerance."""
    torch.testing.assert_close(model.aggregator.image_mean.flatten(), torch.tensor(IMAGENET_MEAN).bfloat16().float())
    torch.testing.assert_close(model.aggregator.image_std.flatten(), torch.tensor(IMAGENET_STD).bfloat16().float())
    images = case.load("inputs")["images"]
    exact = (images - torch.tensor(IMAGENET_MEAN).view(1, 1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 1, 3, 1, 1)
    with torch.no_grad():
        tokens = model.aggregator.patch_embed(exact.flatten(0, 1))
    with pytest.raises(AssertionError):
        assert_oracle_close(tokens, case.load("intermediates")["dino.x_norm_patchtokens"])


def test_aggregated_tokens_and_decoded_cameras(case, model):
    images = case.load("inputs")["images"]
    inter, ref = case.load("intermediates"), case.load("outputs")
    with torch.no_grad():
        out = model(images, return_aggregator=True)
    assert out.aggregator.layer_ids == list(model.config.intermediate_layer_idx)
    for i, tokens in enumerate(out.aggregator.tokens):
        assert_oracle_close(tokens, inter[f"aggregated_tokens.{i}"], f"aggregated_tokens.{i}")
    cams = out.cameras
    assert_oracle_close(torch.stack(cams.pose_enc_list), ref["pred_pose_enc_list"], "pred_pose_enc_list")
    assert_oracle_close(cams.w2c, inter["pose.extrinsic_w2c_3x4"], "w2c")
    assert_oracle_close(cams.K, inter["pose.intrinsic_pixels"], "K")
    assert_oracle_close(cams.c2w, ref["pred_context_pose.extrinsic"], "c2w")
    assert_oracle_close(cams.normalized_K(tuple(images.shape[-2:])), ref["pred_context_pose.intrinsic"], "K_norm")
    assert_oracle_close(out.points, inter["pts_all"], "pts_all")
    assert_oracle_close(out.depth[..., None], ref["depth_dict.depth"], "depth")


def test_gaussians_from_official_pixels(case, model):
    """The voxel fusion + adapter stage alone, on the official per-pixel inputs."""
    inter, extra, ref = case.load("intermediates"), case.load("outputs_extra"), case.load("outputs")
    valid = torch.ones_like(extra["conf"], dtype=torch.bool)
    official, counts = model.gaussians_from_pixels(inter["pts_all"], extra["anchor_feats"], extra["conf"], valid)
    assert counts == [inter["voxel.0.out_pts"].shape[0]]
    assert_oracle_close(official["means"][0], inter["voxel.0.out_pts"], "voxel.0.out_pts")
    for key, value in official.items():
        assert_oracle_close(value, ref[f"gaussians.{key}"], f"gaussians.{key}")


def test_gaussians_container_conventions(case, model):
    images = case.load("inputs")["images"]
    with torch.no_grad():
        out = model(images)
    g, off = out.gaussians[0], {k: v[0] for k, v in out.gaussians_official.items()}
    assert len(g) == out.num_gaussians[0] == off["means"].shape[0]
    torch.testing.assert_close(g.quats, off["rotations"][:, [3, 0, 1, 2]])  # xyzw -> wxyz
    torch.testing.assert_close(g.sh, off["harmonics"].transpose(1, 2))  # [N, 3, K] -> [N, K, 3]
    assert g.sh_degree == model.config.sh_degree
    assert bool(((g.opacities >= 0) & (g.opacities <= 1)).all())
    assert out.voxelize_ratio == pytest.approx(len(g) / images[0].numel() * 3)


def test_batch_of_two_matches_single_scenes_and_pads_like_the_official_code(case, model):
    images = case.load("inputs")["images"]
    other = images.flip(1)  # the same frames in reverse order: another scene for the model
    with torch.no_grad():
        single = [model(images), model(other)]
        both = model(torch.cat((images, other)))
    longest = max(both.num_gaussians)
    assert both.num_gaussians == [s.num_gaussians[0] for s in single]
    for b, s in enumerate(single):
        n = s.num_gaussians[0]
        assert_oracle_close(both.gaussians[b].means, s.gaussians[0].means, "means")
        assert_oracle_close(both.cameras.w2c[b], s.cameras.w2c[0], "w2c")
        pad = {k: v[b, n:] for k, v in both.gaussians_official.items()}
        assert pad["means"].shape[0] == longest - n
        if longest > n:  # official padding: points -1e4, features -1e10 -> opacity 0, scale 0
            assert bool((pad["means"] == PAD_POINT).all())
            assert bool((pad["opacities"] == 0).all()) and bool((pad["scales"] == 0).all())
            assert bool((pad["harmonics"][..., 0] == PAD_FEATURE).all())
    assert longest > min(both.num_gaussians), "the test needs scenes of different sizes"
