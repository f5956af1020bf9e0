"""``.spz`` v3: the bytes decoded by hand, quantisation bounds on a round trip, gsply's reader, bad files."""

from __future__ import annotations

import gzip
import math
import struct

import numpy as np
import pytest
import torch
from export_helpers import random_gaussians

from vist3a.errors import UserInputError
from vist3a.exports.spz import decode_spz, encode_spz, load_spz, save_spz
from vist3a.splats import Gaussians


def _angle_between(q1: torch.Tensor, q2: torch.Tensor) -> torch.Tensor:
    return 2 * torch.acos((q1 * q2).sum(-1).abs().clamp(max=1.0))


def test_round_trip_is_within_the_format_quantisation(tmp_path):
    g = random_gaussians(500, 3)
    back = load_spz(save_spz(g, tmp_path / "s.spz"), dtype=torch.float64)
    assert back.sh_degree == 3 and len(back) == 500
    assert (back.means - g.means).abs().max() <= 0.5 / 4096 + 1e-12  # 12 fractional bits
    assert (back.scales.log() - g.scales.log()).abs().max() <= 0.5 / 16 + 1e-9  # 16 steps per e-fold
    assert (back.opacities - g.opacities).abs().max() <= 0.5 / 255 + 1e-9
    dc = g.sh[:, 0].clamp((-127.5) / (0.15 * 255), 127.5 / (0.15 * 255))  # the colour byte's range
    assert (back.sh[:, 0] - dc).abs().max() <= 0.5 / (0.15 * 255) + 1e-9
    assert (back.sh[:, 1:4] - g.sh[:, 1:4]).abs().max() <= 4.5 / 128  # band 1: 5 bits (steps of 8/128)
    assert (back.sh[:, 4:] - g.sh[:, 4:]).abs().max() <= 8.5 / 128  # bands 2-3: 4 bits (steps of 16/128)
    # smallest-three with 9-bit magnitudes: well under a degree of rotation
    assert _angle_between(back.quats, g.quats).max() < math.radians(0.3)


def test_header_and_first_splat_decoded_by_hand():
    g = Gaussians(
        means=torch.tensor([[1.5, -2.25, 0.125]]),
        quats=torch.nn.functional.normalize(torch.tensor([[0.9, 0.3, -0.2, 0.1]]), dim=-1),  # w, x, y, z
        scales=torch.tensor([[1.0, math.exp(-2.0), math.exp(0.5)]]),
        opacities=torch.tensor([0.5]),
        sh=torch.zeros(1, 4, 3),
    )
    g.sh[0, 0] = torch.tensor([0.0, 1.0, -1.0])
    g.sh[0, 1] = torch.tensor([0.5, -0.25, 0.0])
    raw = encode_spz(g)
    magic, version, n, degree, bits, flags, reserved = struct.unpack_from("<IIIBBBB", raw)
    assert (magic, version, n, degree, bits, flags, reserved) == (0x5053474E, 3, 1, 1, 12, 0, 0)
    body = raw[16:]
    pos = [int.from_bytes(body[3 * i : 3 * i + 3], "little", signed=True) for i in range(3)]
    assert pos == [1.5 * 4096, -2.25 * 4096, 0.125 * 4096]
    alpha, colors, scales = body[9], list(body[10:13]), list(body[13:16])
    assert alpha == 128  # round(0.5 * 255) = 127.5 -> 128
    assert colors == [128, round(0.15 * 255 + 127.5), round(-0.15 * 255 + 127.5)]
    assert scales == [160, 128, 168]  # (log s + 10) * 16
    rot = int.from_bytes(body[16:20], "little")
    q = np.array([0.3, -0.2, 0.1, 0.9]) / np.linalg.norm([0.9, 0.3, -0.2, 0.1])  # x, y, z, w: w is largest
    assert rot >> 30 == 3
    for slot, comp in zip((2, 1, 0), q[:3], strict=True):  # x in the highest 10-bit slot
        field = (rot >> (10 * slot)) & 0x3FF
        assert field >> 9 == int(comp < 0)
        assert field & 0x1FF == round(511 * abs(comp) / math.sqrt(0.5))
    sh = list(body[20:29])  # coefficient-major, channel fastest; band 1 snapped to multiples of 8
    assert sh[:3] == [192, 96, 128] and all(v % 8 == 0 for v in sh)


def test_degree_4_input_writes_3_by_default_and_4_on_request(tmp_path):
    g = random_gaussians(20, 4)
    assert load_spz(save_spz(g, tmp_path / "a.spz")).sh_degree == 3
    back = load_spz(save_spz(g, tmp_path / "b.spz", sh_degree=None), dtype=torch.float64)
    assert back.sh_degree == 4 and (back.sh[:, 16:] - g.sh[:, 16:]).abs().max() <= 8.5 / 128


def test_gsply_reads_what_we_read(tmp_path):
    """gsply (an independent reader, numba) decodes the file to the same values as :func:`load_spz`."""
    gsply = pytest.importorskip("gsply")
    path = save_spz(random_gaussians(300, 2, seed=4), tmp_path / "s.spz")
    ours = load_spz(path, dtype=torch.float64)
    theirs = gsply.read_spz(path)
    assert theirs.is_scales_ply and theirs.is_opacities_ply and theirs.is_sh0_sh
    np.testing.assert_allclose(theirs.means, ours.means.numpy(), atol=1e-6)
    np.testing.assert_allclose(theirs.scales, ours.scales.log().numpy(), atol=1e-5)
    np.testing.assert_allclose(1 / (1 + np.exp(-theirs.opacities)), ours.opacities.numpy(), atol=1e-5)
    np.testing.assert_allclose(theirs.sh0, ours.sh[:, 0].numpy(), atol=1e-5)
    np.testing.assert_allclose(theirs.shN, ours.sh[:, 1:].numpy(), atol=1e-6)
    q = theirs.quats / np.linalg.norm(theirs.quats, axis=1, keepdims=True)
    assert np.minimum(np.abs(q - ours.quats.numpy()).max(1), np.abs(q + ours.quats.numpy()).max(1)).max() < 1e-5


def test_version_2_rotations_are_read():
    """A v2 file stores (x, y, z) * 127.5 + 127.5 with w >= 0 derived."""
    header = struct.pack("<IIIBBBB", 0x5053474E, 2, 1, 0, 12, 0, 0)
    q = np.array([0.8, 0.36, -0.48, 0.0])  # w, x, y, z (unit)
    rot = bytes(round(float(v) * 127.5 + 127.5) for v in q[1:])
    payload = header + bytes(9) + bytes([255]) + bytes([128] * 3) + bytes([160] * 3) + rot
    g = decode_spz(payload)
    np.testing.assert_allclose(g.quats[0].numpy(), q, atol=0.01)
    assert float(g.opacities[0]) == 1.0 and float(g.scales[0, 0]) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"\x00" * 40, "magic"),
        (struct.pack("<IIIBBBB", 0x5053474E, 4, 1, 0, 12, 0, 0) + bytes(32), "version 4"),
        (struct.pack("<IIIBBBB", 0x5053474E, 3, 10, 0, 12, 0, 0) + bytes(20), "truncated"),
        (struct.pack("<IIIBBBB", 0x5053474E, 3, 0, 0, 12, 0, 0), "zero splats"),
    ],
)
def test_bad_payloads_are_user_errors(tmp_path, payload, message):
    path = tmp_path / "bad.spz"
    path.write_bytes(gzip.compress(payload))
    with pytest.raises(UserInputError, match=message):
        load_spz(path)


def test_not_gzip_and_missing_files(tmp_path):
    (tmp_path / "x.spz").write_bytes(b"ply\nformat")
    with pytest.raises(UserInputError, match="gzip"):
        load_spz(tmp_path / "x.spz")
    with pytest.raises(UserInputError, match="does not exist"):
        load_spz(tmp_path / "none.spz")


def test_far_coordinates_use_fewer_fractional_bits():
    g = random_gaussians(3, 0)
    g.means[0, 0] = 5000.0  # beyond the 24-bit range at 12 fractional bits (+-2048)
    raw = encode_spz(g)
    assert raw[13] == 10  # 5000 * 2**10 < 2**23
    assert float(decode_spz(raw).means[0, 0]) == pytest.approx(5000.0, abs=1e-3)
