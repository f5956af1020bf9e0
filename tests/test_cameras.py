import torch

from vist3a.cameras import (
    invert_rigid,
    pose_encoding_to_w2c_K,
    quat_to_rotmat,
    rotmat_to_quat,
    w2c_K_to_pose_encoding,
)


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
