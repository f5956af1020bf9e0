"""SH degree <= 3 by default: files every viewer opens, the kept bands unchanged, the loss reported exactly."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from plyfile import PlyData

from vist3a.splats import Gaussians, load_ply, save_gaussians, save_ply, sh_basis, sh_truncation_report
from vist3a.splats.sh import DEFAULT_SH_DEGREE, resolve_sh_degree


def degree4_gaussians(n: int = 40, seed: int = 0) -> Gaussians:
    """Degree-4 splats with AnySplat's band damping (0.1 * 0.25^l), so band 4 is small but not zero."""
    gen = torch.Generator().manual_seed(seed)
    damp = torch.tensor([1.0] + [0.1 * 0.25**band for band in range(1, 5) for _ in range(2 * band + 1)])
    return Gaussians(
        means=torch.randn(n, 3, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.exp(torch.randn(n, 3, generator=gen) - 3),
        opacities=torch.rand(n, generator=gen) * 0.98 + 0.01,
        sh=torch.randn(n, 25, 3, generator=gen) * damp[None, :, None],
    )


def _rest_count(path) -> int:
    return sum(p.name.startswith("f_rest_") for p in PlyData.read(str(path))["vertex"].properties)


def test_default_writes_degree_3_with_the_kept_coefficients_unchanged(tmp_path):
    g = degree4_gaussians()
    path = save_ply(g, tmp_path / "scene.ply")
    assert DEFAULT_SH_DEGREE == 3 and _rest_count(path) == 45  # 3 * (16 - 1), not 72
    back = load_ply(path)
    assert back.sh_degree == 3
    torch.testing.assert_close(back.sh, g.sh[:, :16], rtol=0, atol=0)  # float32 in, float32 out: bit-exact
    torch.testing.assert_close(back.means, g.means, rtol=0, atol=0)


@pytest.mark.parametrize(("requested", "written"), [(None, 4), (4, 4), (2, 2), (0, 0)])
def test_sh_degree_chooses_the_bands(tmp_path, requested, written):
    g = degree4_gaussians(10)
    path = save_gaussians(g, tmp_path / "s.ply", sh_degree=requested)
    assert _rest_count(path) == 3 * ((written + 1) ** 2 - 1)
    torch.testing.assert_close(load_ply(path).sh, g.sh[:, : (written + 1) ** 2], rtol=0, atol=0)


def test_lower_degree_input_is_not_padded(tmp_path):
    g = degree4_gaussians(5).with_sh_degree(1)
    assert _rest_count(save_ply(g, tmp_path / "s.ply", sh_degree=3)) == 9


def test_resolve_sh_degree_rejects_out_of_range():
    assert resolve_sh_degree(None, 4) == 4 and resolve_sh_degree(3, 1) == 1
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="sh_degree must be in"):
            resolve_sh_degree(bad, 4)
    with pytest.raises(ValueError, match="degree must be in"):
        degree4_gaussians(3).with_sh_degree(1).with_sh_degree(2)


def test_truncation_report_matches_a_sampled_mean_over_view_directions():
    """The closed form sum(dropped^2) / (4 pi) against the colour change averaged over many directions."""
    g = degree4_gaussians(30, seed=3)
    report = sh_truncation_report(g.sh, 3)
    rng = np.random.default_rng(0)
    dirs = torch.from_numpy(rng.normal(size=(200_000, 3)))
    band4 = sh_basis(dirs, 4)[:, 16:]  # [D, 9]: the dropped basis functions
    change = torch.einsum("dk,nkc->dnc", band4, g.sh[:, 16:].double())  # colour change per direction
    sampled_rms = float(change.pow(2).mean().sqrt())
    assert report["dropped_rms_color"] == pytest.approx(sampled_rms, rel=0.01)
    sq = g.sh.double().pow(2)
    assert report["dropped_energy_fraction"] == pytest.approx(float(sq[:, 16:].sum() / sq[:, 1:].sum()), rel=1e-12)
    assert (report["sh_degree_in"], report["sh_degree_out"]) == (4, 3)
    # AnySplat's damping makes band 4 small: well under 1% of the view-dependent energy here
    assert 0 < report["dropped_energy_fraction"] < 0.01
    assert sh_truncation_report(g.sh, 4)["dropped_rms_color"] == 0.0
    assert sh_truncation_report(g.sh[:, :1], 3)["dropped_energy_fraction"] == 0.0  # nothing view-dependent


def test_save_scene_defaults_to_degree_3_and_reports_the_loss(tmp_path):
    from vist3a.scene import Scene, save_scene

    g = degree4_gaussians(20)
    eye = torch.eye(4).expand(2, 4, 4).clone()
    eye[:, 2, 3] = 3.0
    K = torch.tensor([[20.0, 0, 7.5], [0, 20.0, 7.5], [0, 0, 1]]).expand(2, 3, 3)
    scene = Scene(prompt="p", frames=torch.rand(2, 3, 16, 16), w2c=eye, K=K, image_size=(16, 16), gaussians=g)
    out = save_scene(scene, tmp_path / "scene", flythrough_frames=0)
    assert _rest_count(out / "scene.ply") == 45
    meta = json.loads((out / "meta.json").read_text())
    assert meta["sh"] == sh_truncation_report(g.sh, 3)
    assert meta["sh"]["dropped_rms_color"] > 0
    out4 = save_scene(scene, tmp_path / "scene4", flythrough_frames=0, sh_degree=None)
    assert _rest_count(out4 / "scene.ply") == 72
    assert json.loads((out4 / "meta.json").read_text())["sh"]["dropped_energy_fraction"] == 0.0


def test_report_rms_is_per_channel_and_direction():
    """One splat with a single band-4 coefficient c on one channel: rms over 3 channels = c / sqrt(4 pi * 3)."""
    sh = torch.zeros(1, 25, 3, dtype=torch.float64)
    sh[0, 20, 1] = 2.0
    assert sh_truncation_report(sh, 3)["dropped_rms_color"] == pytest.approx(2.0 / math.sqrt(4 * math.pi * 3))


def test_generate_rejects_an_sh_degree_out_of_range(tmp_path):
    from typer.testing import CliRunner

    from vist3a.cli.main import app
    from vist3a.errors import UserInputError

    result = CliRunner().invoke(app, ["generate", "a cube", "--sh-degree", "7", "--out", str(tmp_path / "o")])
    assert isinstance(result.exception, UserInputError) and "--sh-degree" in str(result.exception)
