"""VGGT pieces against the official intermediates of ``oracles/vggt_tiny`` (localises parity failures)."""

from __future__ import annotations

import pytest
import torch
from recon_oracles import assert_oracle_close, oracle_case, oracle_vggt

from vist3a.cameras import pose_encoding_to_w2c_K, w2c_K_to_pose_encoding


@pytest.fixture
def case(oracle_dir):
    folder = oracle_dir / "vggt_tiny"
    if not folder.is_dir():
        pytest.skip("vggt_tiny oracle missing")
    return oracle_case(folder)


@pytest.fixture
def model(case):
    return oracle_vggt(case.folder)


def test_dino_patch_tokens(case, model):
    images = case.load("inputs")["images"]
    inter = case.load("intermediates")
    with torch.no_grad():
        tokens = model.aggregator.embed(images)
    assert_oracle_close(tokens, inter["dino.x_norm_patchtokens"], "dino.x_norm_patchtokens")


def test_aggregated_tokens_every_layer(case, model):
    images = case.load("inputs")["images"]
    inter = case.load("intermediates")
    with torch.no_grad():
        agg = model.aggregator(images)
    depth = model.aggregator.config.depth
    assert agg.layer_ids == list(range(depth))
    assert agg.num_prefix_tokens == 1 + model.aggregator.config.num_register_tokens
    for i, tokens in enumerate(agg.tokens):
        assert_oracle_close(tokens, inter[f"aggregated_tokens.{i}"], f"aggregated_tokens.{i}")


def test_heads_on_official_tokens(case, model):
    """Heads fed with the *official* aggregator tokens, so head errors do not hide behind trunk errors."""
    inputs, inter, ref = case.load("inputs"), case.load("intermediates"), case.load("outputs")
    images = inputs["images"]
    tokens = [inter[f"aggregated_tokens.{i}"] for i in range(model.aggregator.config.depth)]
    prefix = model.aggregator.num_prefix_tokens
    with torch.no_grad():
        poses = model.camera_head(tokens[-1])
        depth, depth_conf = model.depth_head(tokens, images, prefix)
        points, points_conf = model.point_head(tokens, images, prefix)
        fmaps = model.track_head.feature_extractor(tokens, images, prefix)
    assert_oracle_close(torch.stack(poses), inter["camera_head.pose_enc_list"], "pose_enc_list")
    assert_oracle_close(depth, ref["depth"], "depth")
    assert_oracle_close(depth_conf, ref["depth_conf"], "depth_conf")
    assert_oracle_close(points, ref["world_points"], "world_points")
    assert_oracle_close(points_conf, ref["world_points_conf"], "world_points_conf")
    assert_oracle_close(fmaps, inter["track_head.feature_maps"], "track_head.feature_maps")


def test_decoded_cameras_follow_pose_encoding(case, model):
    images = case.load("inputs")["images"]
    with torch.no_grad():
        out = model(images)
    height, width = images.shape[-2:]
    cams = out.cameras
    w2c, K = pose_encoding_to_w2c_K(cams.pose_enc, (height, width))
    torch.testing.assert_close(cams.w2c, w2c)
    torch.testing.assert_close(cams.K, K)
    # rotation is orthonormal and the encoding round-trips (quaternion up to norm and sign)
    rot = cams.w2c[..., :3]
    torch.testing.assert_close(rot @ rot.transpose(-1, -2), torch.eye(3).expand_as(rot), atol=1e-5, rtol=0)
    enc = w2c_K_to_pose_encoding(cams.w2c, cams.K, (height, width))
    torch.testing.assert_close(enc[..., 7:], cams.pose_enc[..., 7:], atol=1e-5, rtol=1e-5)
    c2w = cams.c2w
    torch.testing.assert_close(
        c2w[..., :3, :] @ torch.cat((cams.w2c, c2w[..., 3:, :]), -2),
        torch.eye(4)[:3].expand_as(c2w[..., :3, :]),
        atol=1e-5,
        rtol=0,
    )


def test_track_outputs(case, model):
    inputs, ref = case.load("inputs"), case.load("outputs_track")
    with torch.no_grad():
        out = model(inputs["images"], query_points=inputs["query_points"])
    tracks = out.tracks
    # README tolerance of the track head
    for name, x in (("track", tracks.tracks), ("track_list", torch.stack(tracks.tracks_list))):
        assert (x - ref[name]).abs().max() <= 1e-2 * ref[name].abs().max(), name
    for name, x in (("vis", tracks.visibility), ("conf", tracks.confidence)):
        assert (x - ref[name]).abs().max() <= 2e-2, name
    # frame 0 is pinned to the queries
    torch.testing.assert_close(tracks.tracks[:, 0], inputs["query_points"])


def test_dense_heads_do_not_depend_on_frame_chunking(case, model):
    inputs, inter = case.load("inputs"), case.load("intermediates")
    tokens = [inter[f"aggregated_tokens.{i}"] for i in range(model.aggregator.config.depth)]
    prefix = model.aggregator.num_prefix_tokens
    with torch.no_grad():
        full, _ = model.point_head(tokens, inputs["images"], prefix, frames_chunk_size=None)
        chunked, _ = model.point_head(tokens, inputs["images"], prefix, frames_chunk_size=1)
    # chunking changes conv batch sizes (and so float rounding) only
    assert_oracle_close(chunked, full, "world_points")
