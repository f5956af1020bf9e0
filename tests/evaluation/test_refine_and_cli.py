"""Per-scene refinement and the ``vist3a refine`` / ``vist3a eval`` commands' user errors."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.cameras import look_at_w2c
from vist3a.cli.main import run as run_cli
from vist3a.evaluation.refine import RefineSettings, refine_gaussians
from vist3a.scene import Scene, save_scene
from vist3a.splats import Gaussians, load_ply, render

SIZE = 24


def small_scene() -> tuple[Gaussians, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = 200
    g = Gaussians.from_rgb((torch.rand(n, 3, generator=gen) - 0.5), torch.rand(n, 3, generator=gen),
                           torch.full((n, 3), 0.08), torch.full((n,), 0.9))
    eyes = [torch.tensor([3.0 * float(torch.sin(a)), 0.3, -3.0 * float(torch.cos(a))]) for a in torch.linspace(0, 1, 5)]
    w2c = torch.stack([look_at_w2c(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[22.0, 0.0, 11.5], [0.0, 22.0, 11.5], [0.0, 0.0, 1.0]]).expand(5, 3, 3).clone()
    frames = render(g, w2c, K, SIZE, SIZE, backend="torch").colors.clamp(0, 1).permute(0, 3, 1, 2)
    return g, frames, w2c, K


@pytest.mark.slow
def test_refinement_recovers_perturbed_colours():
    g, frames, w2c, K = small_scene()
    gen = torch.Generator().manual_seed(1)
    spoiled = Gaussians(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities,
                        sh=g.sh + 0.5 * torch.randn(g.sh.shape, generator=gen))
    result = refine_gaussians(spoiled, frames, w2c, K, RefineSettings(steps=15, lr_sh_dc=0.1), backend="torch")
    assert result.psnr_after > result.psnr_before + 3.0
    assert len(result.gaussians) == len(g) and not result.gaussians.means.requires_grad


def test_refine_command_writes_beside_the_original(tmp_path, capsys):
    g, frames, w2c, K = small_scene()
    folder = tmp_path / "scene"
    save_scene(Scene("p", frames, w2c, K, (SIZE, SIZE), gaussians=g), folder, flythrough_frames=0)
    before = (folder / "scene.ply").read_bytes()
    assert run_cli(["refine", str(folder), "--steps", "3", "--device", "cpu", "--backend", "torch"]) == 0
    assert "PSNR vs decoded frames" in capsys.readouterr().out
    assert (folder / "scene.ply").read_bytes() == before
    assert len(load_ply(folder / "scene_refined.ply")) == len(g)
    assert json.loads((folder / "scene_refined.json").read_text())["steps"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refine", "/nonexistent/scene"], "not a vist3a scene folder"),
        (["eval", "text3d", "--suite", "nope", "--out", "OUT"], "neither a suite name"),
        (["eval", "nvs", "--data", "eth3d:/x"], "--data eth3d:/x: not a folder; expected SCENE/images/"),
        (["eval", "nvs", "--data", "nano", "--context", "8"], "4k+1"),
        (["eval", "geometry", "--frames", "12"], "4k+1"),
        (["eval", "text3d", "--suite", "t3bench", "--metrics", "fid", "--preset", "nano", "--limit", "1",
          "--out", "OUT"], "unknown metrics"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
