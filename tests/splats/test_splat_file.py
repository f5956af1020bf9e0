"""antimatter15 ``.splat`` files: byte layout decoded by hand, importance order, quantised round trip."""

from __future__ import annotations

import struct

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.splats import SH_C0, Gaussians, load_gaussians, load_splat, save_gaussians, save_splat


def _scene(n=30, degree=1, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.exp(torch.randn(n, 3, generator=gen) - 3),
        opacities=torch.rand(n, generator=gen),
        sh=0.5 * torch.randn(n, (degree + 1) ** 2, 3, generator=gen),
    )


def test_byte_layout_and_importance_order(tmp_path):
    g = _scene()
    raw = save_splat(g, tmp_path / "s.splat").read_bytes()
    assert len(raw) == 32 * len(g)
    records = [struct.unpack("<3f3f4B4B", raw[i : i + 32]) for i in range(0, len(raw), 32)]
    expected_order = torch.argsort(g.scales.prod(1) * g.opacities, descending=True)
    first = expected_order[0]
    assert records[0][:3] == pytest.approx(g.means[first].tolist())
    assert records[0][3:6] == pytest.approx(g.scales[first].tolist())
    rgb = (0.5 + SH_C0 * g.sh[first, 0]).clamp(0, 1)
    assert records[0][6:9] == tuple(round(v * 255) for v in rgb.tolist())
    assert records[0][9] == round(g.opacities[first].item() * 255)
    q = g.quats[first]
    assert records[0][10:14] == tuple(min(255, max(0, round(v * 128 + 128))) for v in q.tolist())
    positions = torch.tensor([r[:3] for r in records])
    torch.testing.assert_close(positions, g.means[expected_order], atol=0, rtol=0)


def test_round_trip_within_quantisation(tmp_path):
    g = _scene(degree=0)
    g.sh[:, 0] = (torch.rand(len(g), 3) - 0.5) / SH_C0  # colours inside [0, 1]
    back = load_gaussians(save_gaussians(g, tmp_path / "s.splat"))
    order = torch.argsort(g.scales.prod(1) * g.opacities, descending=True)
    g = g[order]
    assert back.sh_degree == 0
    torch.testing.assert_close(back.means, g.means, atol=0, rtol=0)
    torch.testing.assert_close(back.scales, g.scales, atol=0, rtol=0)
    rgb, rgb_back = 0.5 + SH_C0 * g.sh[:, 0], 0.5 + SH_C0 * back.sh[:, 0]
    assert (rgb - rgb_back).abs().max() <= 0.5 / 255 + 1e-6
    assert (g.opacities - back.opacities).abs().max() <= 0.5 / 255 + 1e-6
    # quaternions: 8-bit components -> rotation angle error of a few degrees at most
    cos_half = (g.quats * back.quats).sum(1).abs().clamp(max=1)
    assert torch.rad2deg(2 * torch.acos(cos_half)).max() < 3.0


def test_rejects_bad_splat_files(tmp_path):
    (tmp_path / "odd.splat").write_bytes(b"\0" * 33)
    with pytest.raises(UserInputError, match="not a multiple of 32"):
        load_splat(tmp_path / "odd.splat")
    (tmp_path / "empty.splat").write_bytes(b"")
    with pytest.raises(UserInputError, match="zero splats"):
        load_splat(tmp_path / "empty.splat")
    with pytest.raises(UserInputError, match="does not exist"):
        load_splat(tmp_path / "nope.splat")
