"""Recon stage: ground-truth normalisation, losses, evaluation helpers, and the stage end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from vist3a.cameras import invert_rigid, to_homogeneous
from vist3a.nano import train_recon as tr
from vist3a.recon.gaussian_ops import unproject_depth


def test_normalised_cameras_keep_the_geometry(tiny_caches):
    batch = tiny_caches[0].batch([0, 1])
    gt = tr.normalize_clip_cameras(batch.w2c, batch.K, batch.depth)
    eye = torch.eye(4).expand_as(gt.w2c[:, 0])
    assert torch.allclose(gt.w2c[:, 0], eye, atol=1e-5)
    # relative motion between views: same rotation, translation divided by the scale
    rel_world = batch.w2c[:, 3] @ to_homogeneous(invert_rigid(batch.w2c[:, 1, :3]))
    rel_norm = gt.w2c[:, 3] @ to_homogeneous(invert_rigid(gt.w2c[:, 1, :3]))
    assert torch.allclose(rel_norm[:, :3, :3], rel_world[:, :3, :3], atol=1e-5)
    assert torch.allclose(rel_norm[:, :3, 3] * gt.scale[:, None], rel_world[:, :3, 3], atol=1e-4)
    # the scale is the mean distance of the valid world points to the first camera centre
    for b in range(2):
        valid = torch.isfinite(batch.depth[b]) & (batch.depth[b] > 0)
        points = unproject_depth(torch.where(valid, batch.depth[b], 0.0), batch.w2c[b], batch.K[b])[valid]
        centre = invert_rigid(batch.w2c[b, 0, :3])[:3, 3]
        assert float(gt.scale[b]) == pytest.approx(float((points - centre).norm(dim=-1).mean()), rel=1e-4)
        assert torch.allclose(gt.depth[b][valid] * gt.scale[b], batch.depth[b][valid], rtol=1e-3)
        assert torch.equal(gt.valid[b], valid)


def test_split_views():
    assert tr.split_views(13, 4) == ([0, 1, 3, 4, 6, 8, 9, 11, 12], [2, 5, 7, 10])
    with pytest.raises(ValueError, match="num_targets"):
        tr.split_views(5, 4)


def test_rotation_angle():
    angle = math.radians(30.0)
    rz = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0], [0, 0, 1]])
    assert float(tr.rotation_angle_deg(rz, torch.eye(3))) == pytest.approx(30.0, abs=1e-3)


def test_camera_loss_weights_late_steps_more():
    target = torch.zeros(1, 2, 9)
    steps = [torch.ones(1, 2, 9), torch.zeros(1, 2, 9)]
    assert float(tr.camera_loss([target, target], target, 0.6)) == 0.0
    # weights 0.6 (first) and 1 (last), normalised: error 1 on the first step only
    assert float(tr.camera_loss(steps, target, 0.6)) == pytest.approx(0.6 / 1.6)


def test_render_intrinsics_centre_and_focal():
    K = torch.tensor([[100.0, 0.0, 56.0], [0.0, 90.0, 56.0], [0.0, 0.0, 1.0]])
    out = tr.render_intrinsics(K, 112, 64)
    assert out[0, 0] == pytest.approx(100.0 * 64 / 112) and out[1, 1] == pytest.approx(90.0 * 64 / 112)
    assert out[0, 2] == pytest.approx(31.5) and out[1, 2] == pytest.approx(31.5)


def test_init_splat_scales_gives_pixel_sized_splats(tiny_anysplat_config):
    from vist3a.recon import AnySplat

    model = AnySplat(**tiny_anysplat_config)
    raw = tr.init_splat_scales(model, fov_deg=50.0)
    footprint = 2 * math.tan(math.radians(25.0)) / 28
    assert 0.001 * math.log1p(math.exp(raw)) == pytest.approx(footprint, rel=1e-6)
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 28, 28))
    # a fresh head's other inputs add small noise around the bias
    assert float(out.gaussians[0].scales.median()) == pytest.approx(footprint, rel=0.5)


def test_recon_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_anysplat_config):
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import AnySplat

    cfg = tr.ReconTrainConfig(**stage_defaults, steps=2, batch_size=1, model=tiny_anysplat_config, render_views=1,
                              eval_target_views=1, render_backend="torch")
    run = tr.train_recon(cfg, tmp_path / "recon", "cpu", caches=tiny_caches)
    evaluation = json.loads((run / "eval.json").read_text())
    assert {"heldout_novel_psnr", "heldout_novel_ssim", "heldout_depth_abs_rel", "saved_dtype"} <= set(evaluation)
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "recon" and record["config"]["seed"] == 0 and record["steps_done"] == 2
    assert (run / "losses.csv").is_file() and (run / "loss.png").is_file()
    model = load_component_from(run, "recon")
    assert isinstance(model, AnySplat) and model.config.sh_degree == cfg.model["sh_degree"]


@pytest.mark.slow
def test_recon_loss_decreases_on_a_fixed_batch(tiny_caches, tiny_anysplat_config):
    from vist3a.recon import AnySplat

    torch.manual_seed(0)
    model = AnySplat(**tiny_anysplat_config)
    tr.init_splat_scales(model)
    cfg = tr.ReconTrainConfig(num_frames=5, size=16, model=tiny_anysplat_config, render_views=2,
                              render_backend="torch", progress=False)
    batch = tiny_caches[0].batch([0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss, _ = tr.recon_step_loss(model, batch, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5
