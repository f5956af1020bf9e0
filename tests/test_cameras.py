import json
import math

import pytest
import torch

from vist3a.cameras import (
    interpolate_poses,
    intrinsics_from_fov,
    invert_rigid,
    load_cameras_json,
    look_at_w2c,
    orbit_trajectory,
    pose_encoding_to_w2c_K,
    quat_to_rotmat,
    rotmat_to_quat,
    save_cameras_json,
    slerp,
    w2c_K_to_pose_encoding,
)
from vist3a.errors import UserInputError


def _random_rotations(n: int) -> torch.Tensor:
    q = torch.randn(n, 4, dtype=torch.float64)
    return quat_to_rotmat(q)


def test_quaternion_round_trip_and_orthonormality():
    q = torch.randn(200, 4, dtype=torch.float64)
    q = q / q.norm(dim=-1, keepdim=True)
    q = torch.where(q[:, :1] < 0, -q, q)
    rot = quat_to_rotmat(q)
    eye = torch.eye(3, dtype=torch.float64).expand(200, 3, 3)
    assert torch.allclose(rot @ rot.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(rot), torch.ones(200, dtype=torch.float64))
    assert torch.allclose(rotmat_to_quat(rot), q, atol=1e-12)


def test_quaternion_conventions_agree():
    q_wxyz = torch.randn(10, 4, dtype=torch.float64)
    q_xyzw = q_wxyz[:, [1, 2, 3, 0]]
    assert torch.allclose(quat_to_rotmat(q_wxyz), quat_to_rotmat(q_xyzw, scalar_first=False))
    # 90 degrees about z maps x to y
    s = 0.5**0.5
    rot = quat_to_rotmat(torch.tensor([s, 0.0, 0.0, s], dtype=torch.float64))
    x, y = torch.eye(3, dtype=torch.float64)[:2]
    assert torch.allclose(rot @ x, y)


def test_pose_encoding_round_trip():
    rot = _random_rotations(20)
    w2c = torch.cat((rot, torch.randn(20, 3, 1, dtype=torch.float64)), -1)
    K = torch.tensor([[50.0, 0, 35], [0, 60, 28], [0, 0, 1]], dtype=torch.float64).expand(20, 3, 3)
    enc = w2c_K_to_pose_encoding(w2c, K, (56, 70))
    w2c2, K2 = pose_encoding_to_w2c_K(enc, (56, 70))
    assert torch.allclose(w2c2, w2c, atol=1e-10)
    assert torch.allclose(K2, K, atol=1e-10)


def test_invert_rigid_is_inverse():
    rot = _random_rotations(5)
    w2c = torch.cat((rot, torch.randn(5, 3, 1, dtype=torch.float64)), -1)
    c2w = invert_rigid(w2c)
    pts = torch.randn(5, 3, dtype=torch.float64)
    cam = (w2c[:, :, :3] @ pts[..., None] + w2c[:, :, 3:])[..., 0]
    back = (c2w[:, :, :3] @ cam[..., None] + c2w[:, :, 3:])[..., 0]
    assert torch.allclose(back, pts, atol=1e-12)


# ----------------------------------------------------------------------------- trajectories and camera files
F64 = torch.float64


def _apply(w2c: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    return (w2c[..., :3, :3] @ pts[..., None])[..., 0] + w2c[..., :3, 3]


def test_intrinsics_from_fov_maps_the_fov_edge_to_the_image_edge():
    K = intrinsics_from_fov(70.0, 64, 48, dtype=F64)
    edge = math.tan(math.radians(35.0))  # x/z of a ray on the horizontal FoV boundary
    u = K[0, 0] * edge + K[0, 2]
    assert u.item() == pytest.approx(63.5)  # right edge of the last pixel (centres at integers)
    assert K[0, 0] == K[1, 1] and K[0, 2] == 31.5 and K[1, 2] == 23.5
    Kv = intrinsics_from_fov(70.0, 64, 48, axis="vertical", dtype=F64)
    assert (Kv[1, 1] * edge + Kv[1, 2]).item() == pytest.approx(47.5)
    with pytest.raises(ValueError, match="fov_deg"):
        intrinsics_from_fov(180.0, 4, 4)


def test_look_at_puts_target_on_axis_and_up_up():
    eye = torch.tensor([1.0, -2.0, 0.5], dtype=F64)
    target = torch.tensor([0.2, 0.3, 2.0], dtype=F64)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=F64)
    w2c = look_at_w2c(eye, target, up)
    rot = w2c[:3, :3]
    torch.testing.assert_close(rot @ rot.T, torch.eye(3, dtype=F64))
    assert torch.linalg.det(rot).item() == pytest.approx(1.0)
    torch.testing.assert_close(_apply(w2c, eye), torch.zeros(3, dtype=F64), atol=1e-12, rtol=0)
    t_cam = _apply(w2c, target)
    torch.testing.assert_close(t_cam[:2], torch.zeros(2, dtype=F64), atol=1e-12, rtol=0)
    assert t_cam[2].item() == pytest.approx((target - eye).norm().item())
    up_cam = rot @ up  # a world 'up' direction must point to image-up: negative y, no x
    assert up_cam[1] < 0 and abs(up_cam[0].item()) < 1e-12
    with pytest.raises(ValueError, match="parallel"):
        look_at_w2c(eye, eye + up, up)


def test_orbit_circles_the_centre_at_radius_and_elevation():
    center = torch.tensor([0.5, -0.2, 3.0], dtype=F64)
    up = torch.tensor([0.0, -1.0, 0.0], dtype=F64)
    w2c = orbit_trajectory(center, 2.0, 30.0, 12)
    assert w2c.shape == (12, 4, 4)
    eyes = invert_rigid(w2c)[:, :3, 3]
    offsets = eyes - center
    torch.testing.assert_close(offsets.norm(dim=1), torch.full((12,), 2.0, dtype=F64))
    elev = torch.rad2deg(torch.asin(offsets @ up / 2.0))
    torch.testing.assert_close(elev, torch.full((12,), 30.0, dtype=F64))
    c_cam = _apply(w2c, center.expand(12, 3))
    torch.testing.assert_close(c_cam[:, :2], torch.zeros(12, 2, dtype=F64), atol=1e-12, rtol=0)
    # azimuth 0 looks along world +z (tilted down by the elevation); the azimuth grows CCW about up
    assert offsets[0, 0].abs() < 1e-12 and offsets[0, 2] < 0
    horiz = offsets - (offsets @ up)[:, None] * up
    turn = torch.linalg.cross(horiz[:-1], horiz[1:]) @ up
    assert torch.all(turn > 0)
    # evenly spaced and not closing the loop: frame 12 would be frame 0
    angles = torch.atan2(turn, (horiz[:-1] * horiz[1:]).sum(1))
    torch.testing.assert_close(angles, torch.full((11,), math.radians(30.0), dtype=F64))


def test_interpolate_poses_hits_keys_and_is_smooth():
    keys_w2c = orbit_trajectory(torch.zeros(3), 2.0, 10.0, 4, turns=0.5)
    c2w_keys = invert_rigid(keys_w2c)
    path = interpolate_poses(c2w_keys, 3 * 5 + 1)
    assert path.shape == (16, 4, 4)
    torch.testing.assert_close(path[::5], c2w_keys, atol=1e-10, rtol=0)
    rot = path[:, :3, :3]
    torch.testing.assert_close(rot @ rot.transpose(1, 2), torch.eye(3, dtype=F64).expand(16, 3, 3), atol=1e-12, rtol=0)
    # rotation: 2 of 5 frames from key 0 to key 1 is 40% of the angle between them (slerp)
    rel = lambda a, b: torch.acos(((a.T @ b).trace().clamp(-1, 3) - 1) / 2)
    assert rel(rot[0], rot[2]).item() == pytest.approx(0.4 * rel(rot[0], rot[5]).item(), rel=1e-6)
    # positions: collinear, evenly spaced keys give constant-speed straight motion
    line = torch.eye(4, dtype=F64).repeat(3, 1, 1)
    line[:, :3, 3] = torch.tensor([[0.0, 0, 0], [1, 2, 0], [2, 4, 0]], dtype=F64)
    pos = interpolate_poses(line, 9)[:, :3, 3]
    torch.testing.assert_close(pos, torch.linspace(0, 1, 9, dtype=F64)[:, None] * torch.tensor([2.0, 4, 0], dtype=F64))
    assert interpolate_poses(c2w_keys[:1], 3).shape == (3, 4, 4)


def test_slerp_constant_angular_speed():
    q0 = torch.tensor([1.0, 0, 0, 0], dtype=F64)
    q1 = torch.tensor([math.cos(0.6), 0, math.sin(0.6), 0], dtype=F64)  # 1.2 rad about y
    t = torch.linspace(0, 1, 5, dtype=F64)
    q = slerp(q0.expand(5, 4), (-q1).expand(5, 4), t)  # the sign of q1 must not matter
    angles = 2 * torch.acos(q[:, 0].abs())
    torch.testing.assert_close(angles, 1.2 * t)


def test_cameras_json_round_trip_and_schema(tmp_path):
    w2c = orbit_trajectory(torch.tensor([0.0, 0.0, 1.0]), 1.5, 20.0, 3)
    K = intrinsics_from_fov(60.0, 32, 24, dtype=F64)
    path = save_cameras_json(tmp_path / "cameras.json", w2c[:, :3], K, 32, 24)
    doc = json.loads(path.read_text())
    assert doc["width"] == 32 and "OpenCV" in doc["convention"] and len(doc["frames"]) == 3
    frame = doc["frames"][1]
    assert set(frame) == {"index", "w2c", "c2w", "fx", "fy", "cx", "cy", "width", "height"}
    torch.testing.assert_close(torch.tensor(frame["c2w"], dtype=F64) @ torch.tensor(frame["w2c"], dtype=F64),
                               torch.eye(4, dtype=F64))
    w2c_back, K_back, width, height = load_cameras_json(path)
    torch.testing.assert_close(w2c_back, w2c, atol=0, rtol=0)
    torch.testing.assert_close(K_back, K.expand(3, 3, 3), atol=0, rtol=0)
    assert (width, height) == (32, 24)


def test_cameras_json_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        load_cameras_json(tmp_path / "none.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(UserInputError, match="not a valid JSON"):
        load_cameras_json(tmp_path / "bad.json")
    (tmp_path / "empty.json").write_text(json.dumps({"frames": []}))
    with pytest.raises(UserInputError, match="frames"):
        load_cameras_json(tmp_path / "empty.json")
    (tmp_path / "partial.json").write_text(json.dumps({"width": 4, "height": 4, "frames": [{"w2c": [[1, 0, 0, 0]]}]}))
    with pytest.raises(UserInputError, match="frame 0 is malformed"):
        load_cameras_json(tmp_path / "partial.json")
