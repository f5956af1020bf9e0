"""The camera losses, metrics and probes of the recon stage (issue 15): analytic cases and round trips."""

from __future__ import annotations

import math

import pytest
import torch

import vist3a.nano.train_recon as tr
from vist3a.cameras import quat_to_rotmat, rotmat_to_quat, w2c_K_to_pose_encoding


def _axis_angle(axis: torch.Tensor, angle: float) -> torch.Tensor:
    axis = axis / axis.norm()
    k = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    return torch.eye(3) + math.sin(angle) * k + (1 - math.cos(angle)) * (k @ k)


@pytest.mark.parametrize("degrees", [0.5, 30.0, 90.0, 150.0, 179.0])
def test_geodesic_angle_is_the_rotation_angle(degrees):
    torch.manual_seed(0)
    base = _axis_angle(torch.randn(3), 0.7)
    other = base @ _axis_angle(torch.randn(3), math.radians(degrees))
    assert math.degrees(float(tr.geodesic_angle(base, other))) == pytest.approx(degrees, abs=1e-3)


def test_geodesic_camera_loss_ignores_the_quaternion_sign_and_keeps_gradients_near_180():
    rot = torch.stack([_axis_angle(torch.tensor([0.0, 1.0, 0.0]), math.radians(a)) for a in (0.0, 60.0, 179.5)])
    w2c = torch.cat((rot, torch.zeros(3, 3, 1)), -1)[None]  # [1, 3, 3, 4]
    K = torch.tensor([[50.0, 0, 55.5], [0, 50.0, 55.5], [0, 0, 1]]).expand(1, 3, 3, 3)
    target = w2c_K_to_pose_encoding(w2c, K, (112, 112))
    flipped = target.clone()
    flipped[..., 3:7] = -flipped[..., 3:7]
    loss_same, _ = tr.geodesic_camera_loss([target], target, 0.6)
    loss_flip, _ = tr.geodesic_camera_loss([flipped], target, 0.6)
    assert float(loss_same) == pytest.approx(0.0, abs=1e-4) and float(loss_flip) == pytest.approx(0.0, abs=1e-4)
    # the old L1 on the encoding punishes the same rotation written with the other sign
    assert float(tr.camera_loss([flipped], target, 0.6)) > 0.1
    # identity predicted everywhere: finite, non-zero rotation gradients, also for the view at 179.5 degrees
    pred = target.clone()
    pred[..., 3:7] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    pred.requires_grad_(True)
    loss, terms = tr.geodesic_camera_loss([pred], target, 0.6)
    loss.backward()
    grad = pred.grad[0, :, 3:7]
    assert torch.isfinite(grad).all() and float(grad[2].norm()) > 1e-3
    assert terms["cam_rot_deg"] == pytest.approx((60.0 + 179.5) / 3, abs=0.5)


def test_camera_errors_on_exact_and_frozen_cameras():
    angles = [0.0, 20.0, 40.0, 60.0]
    rot = torch.stack([_axis_angle(torch.tensor([0.0, 1.0, 0.0]), math.radians(a)) for a in angles])
    centres = torch.stack([torch.tensor([math.sin(math.radians(a)), 0.0, 1 - math.cos(math.radians(a))])
                           for a in angles])
    w2c = torch.eye(4).repeat(4, 1, 1)
    w2c[:, :3, :3] = rot
    w2c[:, :3, 3] = -(rot @ centres[..., None])[..., 0]
    exact = tr.camera_errors(w2c[None], w2c[None])
    assert float(exact["rotation_deg"].abs().max()) < 1e-2 and float(exact["translation_dir_deg"].max()) < 0.1
    assert float(exact["span_gt_deg"]) == pytest.approx(60.0, abs=1e-2)
    frozen = torch.eye(4).repeat(4, 1, 1)  # a sheet: every camera the first one
    errors = tr.camera_errors(frozen[None], w2c[None])
    assert errors["rotation_deg"][0].tolist() == pytest.approx(angles[1:], abs=1e-2)
    assert float(errors["span_pred_deg"]) == pytest.approx(0.0, abs=1e-3)
    # the truth moves, the prediction does not: 90 degrees (no direction is as wrong as a perpendicular one)
    assert errors["translation_dir_deg"][0].tolist() == pytest.approx([90.0] * 3, abs=1e-3)


def test_mirroring_reverses_the_turn_and_canonicalise_makes_every_clip_turn_one_way(tiny_caches):
    from vist3a.data.cache import mirror_batch

    batch = tiny_caches[0].batch(range(len(tiny_caches[0])))
    yaw = tr.signed_yaw(batch.w2c)
    assert torch.allclose(tr.signed_yaw(mirror_batch(batch).w2c), -yaw, atol=1e-5)
    canonical = tr.canonicalise_direction(batch)
    assert bool((tr.signed_yaw(canonical.w2c) >= -1e-6).all())
    keep = yaw >= 0
    assert torch.equal(canonical.frames[keep], batch.frames[keep])


def test_canonical_cache_mirrors_the_clockwise_clips_in_storage_form(tiny_caches):
    from vist3a.data.cache import mirror_batch

    cache = tiny_caches[0]
    batch = cache.batch(range(len(cache)))
    flip = tr.signed_yaw(batch.w2c) < 0
    assert bool(flip.any()) and not bool(flip.all())  # both directions present, or the test proves nothing
    canon = tr.canonical_cache(cache, chunk=3)  # chunks smaller than the cache: order must survive
    assert canon.frames.dtype == torch.uint8 and len(canon) == len(cache)
    assert canon.captions == cache.captions
    mirrored = mirror_batch(batch)
    for i in range(len(cache)):
        src = mirrored if flip[i] else batch
        assert torch.equal(canon.frames[i], (src.frames[i] * 255).round().to(torch.uint8))
        assert torch.allclose(canon.w2c[i], src.w2c[i])
    assert bool((tr.signed_yaw(canon.w2c) >= -1e-6).all())


def test_curriculum_limit_grows_to_full_orbits():
    assert tr.curriculum_limit_deg(0.0, 0.3, 60.0) == 60.0
    assert tr.curriculum_limit_deg(0.15, 0.3, 60.0) == pytest.approx(210.0)
    assert tr.curriculum_limit_deg(0.5, 0.3, 60.0) == 360.0
    assert tr.curriculum_limit_deg(0.0, 0.0, 60.0) == 360.0


def test_clip_rotation_spans_match_the_path():
    angles = torch.tensor([0.0, 10.0, 35.0])
    rot = torch.stack([_axis_angle(torch.tensor([0.0, 1.0, 0.0]), math.radians(float(a))) for a in angles])
    w2c = torch.eye(4).repeat(1, 3, 1, 1)
    w2c[0, :, :3, :3] = rot
    assert float(tr.clip_rotation_spans(w2c)[0]) == pytest.approx(35.0, abs=1e-3)


def test_camera_head_patch_pool_starts_as_vggt_and_then_reads_the_patches(tiny_anysplat_config):
    from vist3a.recon import AnySplat

    torch.manual_seed(0)
    plain = AnySplat(**tiny_anysplat_config).eval()
    cfg = tr.ReconTrainConfig(model=tiny_anysplat_config, camera_patch_pool=4)
    pooled = AnySplat(**cfg.model).eval()
    result = pooled.load_state_dict(plain.state_dict(), strict=False)
    assert result.missing_keys and all(k.startswith("camera_head.patch_pool") for k in result.missing_keys)
    images = torch.rand(1, 3, 3, 28, 28)
    with torch.no_grad():
        assert torch.allclose(plain(images).cameras.pose_enc, pooled(images).cameras.pose_enc, atol=1e-6)
        torch.nn.init.normal_(pooled.camera_head.patch_pool_out.weight, std=0.5)
        assert not torch.allclose(plain(images).cameras.pose_enc, pooled(images).cameras.pose_enc, atol=1e-4)


def test_rotmat_quaternion_round_trip_sign_is_canonical():
    rot = _axis_angle(torch.tensor([0.3, 1.0, -0.2]), math.radians(200.0))
    quat = rotmat_to_quat(rot)
    assert float(quat[0]) >= 0 and torch.allclose(quat_to_rotmat(quat), rot, atol=1e-5)
    assert torch.allclose(quat_to_rotmat(-quat), rot, atol=1e-5)
