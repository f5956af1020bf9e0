"""MultiViewClip validation, collation, frame-count rule, and resize/crop keeping intrinsics consistent."""

from __future__ import annotations

import pytest
import torch

from vist3a.data import (
    ClipBatch,
    MultiViewClip,
    check_num_frames,
    collate_clips,
    crop_resize_intrinsics,
    resize_and_crop,
    valid_depth,
)
from vist3a.world import render_clip, sample_camera_path, sample_scene


def _clip(T=5, H=6, W=8, cameras=True, depth=True) -> MultiViewClip:
    K = torch.tensor([[10.0, 0, (W - 1) / 2], [0, 10.0, (H - 1) / 2], [0, 0, 1]]).repeat(T, 1, 1)
    return MultiViewClip(
        frames=torch.rand(T, 3, H, W),
        w2c=torch.eye(4).repeat(T, 1, 1) if cameras else None,
        K=K if cameras else None,
        depth=torch.rand(T, H, W) + 1 if depth else None,
        caption="a red cube",
    )


@pytest.mark.parametrize("n", [1, 5, 9, 13, 17, 21, 81])
def test_check_num_frames_accepts_4n_plus_1(n):
    assert check_num_frames(n) == n


@pytest.mark.parametrize("n", [0, -3, 2, 4, 8, 12, 14, 20, True, 13.0, "13"])
def test_check_num_frames_rejects_others_with_a_clear_message(n):
    with pytest.raises(ValueError, match=r"`num_frames` must be 4n\+1 frames .* got"):
        check_num_frames(n)


def test_clip_validates_shapes():
    with pytest.raises(ValueError, match=r"`frames` must be \[T, 3, H, W\]"):
        MultiViewClip(frames=torch.rand(5, 4, 6, 6))
    with pytest.raises(ValueError, match="together"):
        MultiViewClip(frames=torch.rand(5, 3, 6, 6), w2c=torch.eye(4).repeat(5, 1, 1))
    with pytest.raises(ValueError, match="`K` must be"):
        MultiViewClip(frames=torch.rand(5, 3, 6, 6), w2c=torch.eye(4).repeat(5, 1, 1), K=torch.eye(3).repeat(4, 1, 1))
    with pytest.raises(ValueError, match="`depth` must be"):
        MultiViewClip(frames=torch.rand(5, 3, 6, 6), depth=torch.rand(5, 6, 7))
    with pytest.raises(ValueError, match="float"):
        MultiViewClip(frames=torch.zeros(5, 3, 6, 6, dtype=torch.uint8))
    clip = MultiViewClip(frames=torch.rand(5, 3, 6, 6))  # no cameras is allowed
    assert not clip.has_cameras and clip.num_frames == 5


def test_collate_stacks_and_rejects_mismatches():
    clips = [_clip(), _clip()]
    batch = collate_clips(clips)
    assert isinstance(batch, ClipBatch)
    assert batch.frames.shape == (2, 5, 3, 6, 8) and batch.w2c.shape == (2, 5, 4, 4)
    assert batch.K.shape == (2, 5, 3, 3) and batch.depth.shape == (2, 5, 6, 8)
    assert torch.equal(batch.frames[1], clips[1].frames) and batch.captions == ["a red cube"] * 2
    nocam = collate_clips([_clip(cameras=False, depth=False)] * 3)
    assert nocam.w2c is None and nocam.K is None and nocam.depth is None
    with pytest.raises(ValueError, match="clip 1 has"):
        collate_clips([_clip(T=5), _clip(T=9)])
    with pytest.raises(ValueError, match="clip 1 differs"):
        collate_clips([_clip(), _clip(cameras=False)])
    with pytest.raises(ValueError, match="empty"):
        collate_clips([])


def test_select_and_valid_depth():
    clip = _clip(T=9)
    clip.depth[0, 0, 0] = float("inf")
    clip.depth[0, 0, 1] = 0.0
    sub = clip.select([0, 4, 8])
    assert sub.num_frames == 3 and torch.equal(sub.frames[1], clip.frames[4]) and torch.equal(sub.K[2], clip.K[8])
    mask = valid_depth(sub.depth)
    assert not mask[0, 0, 0] and not mask[0, 0, 1] and mask[0, 1, 1]


def _project(points: torch.Tensor, w2c: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    cam = points @ w2c[:3, :3].T + w2c[:3, 3]
    return torch.stack((K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2], K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]), -1)


@pytest.mark.parametrize(("H", "W", "size"), [(48, 64, 32), (64, 40, 24), (30, 30, 45)])
def test_resize_keeps_projections_at_the_same_relative_position(H, W, size):
    w2c, K = sample_camera_path("orbit", 1, 0, height=H, width=W)
    clip = MultiViewClip(frames=torch.rand(1, 3, H, W), w2c=w2c.float(), K=K.float())
    out = resize_and_crop(clip, size)
    assert out.frames.shape == (1, 3, size, size)
    assert torch.equal(out.w2c, clip.w2c)
    points = torch.randn(50, 3, dtype=torch.float64) * 0.5 + torch.tensor([0.0, 0.5, 0.0], dtype=torch.float64)
    uv = _project(points, w2c[0], K[0])
    uv_new = _project(points, w2c[0], out.K[0].double())
    # the crop keeps the central square: (u - x0 + 0.5) / side == (u' + 0.5) / size, pixel edges aligned
    side = min(H, W)
    x0, y0 = (W - side) // 2, (H - side) // 2
    rel_old = torch.stack(((uv[:, 0] - x0 + 0.5) / side, (uv[:, 1] - y0 + 0.5) / side), -1)
    rel_new = (uv_new + 0.5) / size
    assert torch.allclose(rel_old, rel_new, atol=1e-5)
    assert out.meta["crop_resize"] == [x0, y0, side, size]


def test_resized_render_matches_rendering_with_the_new_intrinsics():
    # rendering at 3x the size and resizing must equal rendering at the target size with the resized K: the
    # target pixel centres coincide with source pixel centres (odd factor), so nearest-resized depth is exact
    scene = sample_scene(11)
    w2c, K = sample_camera_path("arc", 2, 11, height=48, width=60, target=scene.centre, scene_radius=scene.radius)
    big = render_clip(scene, w2c, K, 48, 60)
    clip = resize_and_crop(MultiViewClip(big.frames, w2c.float(), K.float(), big.depth), 16)
    direct = render_clip(scene, w2c, clip.K, 16, 16, ssaa=3)
    finite = torch.isfinite(direct.depth)
    assert torch.equal(finite, torch.isfinite(clip.depth))
    assert torch.allclose(clip.depth[finite], direct.depth[finite], rtol=1e-4, atol=1e-4)
    assert (clip.frames - direct.frames).abs().mean() < 0.03


def test_crop_resize_intrinsics_formula():
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 80.0, 30.0], [0.0, 0.0, 1.0]])
    # upsampling 2x without crop: pixel 0 covers new pixels 0 and 1, its centre maps to new 0.5
    out = crop_resize_intrinsics(K, (0, 0), (2.0, 2.0))
    assert torch.allclose(out, torch.tensor([[200.0, 0.0, 100.5], [0.0, 160.0, 60.5], [0.0, 0.0, 1.0]]))
    out = crop_resize_intrinsics(K, (10, 5), (1.0, 1.0))
    assert out[0, 2] == 40.0 and out[1, 2] == 25.0


def test_resize_rejects_bad_size():
    with pytest.raises(ValueError, match="`size`"):
        resize_and_crop(_clip(), 0)
