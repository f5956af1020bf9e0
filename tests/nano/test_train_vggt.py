"""vggt stage (issue 21): pointmap targets, the VGGT losses, the held-out metrics, and the stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano import train_vggt as tv
from vist3a.nano.train_recon import normalize_clip_cameras


def test_targets_unproject_to_the_normalised_world(tiny_caches):
    batch = tiny_caches[0].batch([0, 1])
    target = tv.pointmap_targets(batch, 16)  # the clip's own size: no resizing
    gt = normalize_clip_cameras(batch.w2c, batch.K, batch.depth)
    assert torch.equal(target.valid, gt.valid) and bool(target.valid.any()) and bool((~target.valid).any())
    assert torch.allclose(target.depth[target.valid], gt.depth[gt.valid])
    # background on the far shell: twice the clip's largest depth (at least 1)
    far = torch.where(gt.valid, gt.depth, 0.0).flatten(1).amax(1).clamp_min(1.0) * 2.0
    assert torch.allclose(target.depth[0][~target.valid[0]], far[0].expand(int((~target.valid[0]).sum())))
    # a point of view v seen from camera v has camera-frame z equal to its depth
    cam = torch.einsum("bvij,bvhwj->bvhwi", target.w2c[..., :3, :3], target.points) + target.w2c[..., None, None, :3, 3]
    assert torch.allclose(cam[..., 2], target.depth, rtol=1e-4, atol=1e-4)
    assert target.pose.shape == (2, batch.frames.shape[1], 9)
    assert torch.allclose(target.pose[:, 0, :3], torch.zeros(2, 3), atol=1e-6)  # view 0 is the identity


def test_confidence_losses():
    target = torch.zeros(1, 1, 3, 3, 1)
    valid = torch.ones(1, 1, 3, 3, dtype=torch.bool)
    conf = torch.full((1, 1, 3, 3), 2.0)
    pred = torch.full_like(target, 0.5)
    # conf * |err| - alpha * log(conf) on every pixel
    expected = 2.0 * 0.5 - 0.2 * torch.log(torch.tensor(2.0))
    assert float(tv.confidence_regression(pred, conf, target, valid, 0.2)) == pytest.approx(float(expected))
    # a constant offset has no gradient; a step between columns 0 and 1 does (2 of the 6 horizontal pairs)
    assert float(tv.confidence_gradient(pred, conf, target, valid)) == 0.0
    step = pred.clone()
    step[..., 0, :] = 1.5
    assert float(tv.confidence_gradient(step, conf, target, valid)) == pytest.approx(2.0 * 1.0 * 3 / 12)
    # pairs that leave the valid pixels do not count
    valid[..., 0] = False
    assert float(tv.confidence_gradient(step, conf, target, valid)) == 0.0


def test_scene_metrics_of_the_ground_truth_are_perfect(tiny_caches):
    from types import SimpleNamespace

    batch = tiny_caches[1].batch([0])
    target = tv.pointmap_targets(batch, 16)
    cams = SimpleNamespace(w2c=target.w2c[..., :3, :])
    out = SimpleNamespace(depth=target.depth, world_points=target.points, cameras=cams)
    metrics, rot = tv.pointmap_scene_metrics(out, target, 0, max_points=512)
    assert metrics["depth_abs_rel"] == pytest.approx(0.0, abs=1e-6) and metrics["depth_delta1"] == 1.0
    assert metrics["points_acc"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["points_comp"] == pytest.approx(0.0, abs=1e-4)
    assert metrics["rra@5"] == 1.0 and metrics["auc@30"] == pytest.approx(1.0)
    assert float(rot.abs().max()) < 0.1
    # a scale-free model (MV-DUSt3R): the right shape at 3x the scale is perfect once the depth scale is fitted
    scaled = SimpleNamespace(depth=3.0 * target.depth, world_points=3.0 * target.points, cameras=cams)
    assert tv.pointmap_scene_metrics(scaled, target, 0, 512)[0]["depth_abs_rel"] == pytest.approx(2.0, abs=1e-5)
    metrics = tv.pointmap_scene_metrics(scaled, target, 0, 512, scale_align=True)[0]
    assert metrics["depth_abs_rel"] == pytest.approx(0.0, abs=1e-5) and metrics["points_acc"] < 1e-3


def test_config_adds_patch_pooling_and_checks_kinds(tiny_vggt_config):
    cfg = tv.VGGTTrainConfig(model=tiny_vggt_config, camera_patch_pool=4)
    assert cfg.model["camera_config"]["patch_pool_dim"] == 4 and cfg.model["camera_config"]["patch_pool_tokens"] == 4
    with pytest.raises(ValueError, match="camera_kinds"):
        tv.VGGTTrainConfig(camera_kinds=["spiral"])


def test_vggt_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_vggt_config):
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import VGGT

    cfg = tv.VGGTTrainConfig(**stage_defaults, steps=2, batch_size=2, model=tiny_vggt_config, camera_patch_pool=2,
                             canonical_direction=True, eval_max_points=64)
    run = tv.train_vggt(cfg, tmp_path / "vggt", "cpu", caches=tiny_caches)
    evaluation = json.loads((run / "eval.json").read_text())
    for key in ("depth_abs_rel", "points_acc", "points_comp", "points_nc", "rotation_error_median_deg", "rra@5",
                "auc@30"):
        assert isinstance(evaluation[f"heldout_{key}"], float), key
    assert evaluation["saved_dtype"] in ("float16", "float32") and "heldout_points_acc_fp16" in evaluation
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "vggt" and record["steps_done"] == 2
    rows = (run / "losses.csv").read_text().splitlines()
    assert "points_gradient" in rows[0] and "cam_rot_deg" in rows[0] and len(rows) == 3
    model = load_component_from(run, "vggt")
    assert isinstance(model, VGGT) and model.config.camera_config["patch_pool_dim"] == 2
    # continuing: init from the run (strict), a new seed
    again = tv.VGGTTrainConfig(**stage_defaults, steps=1, batch_size=1, model=cfg.model, init=str(run), seed=1,
                               eval_max_points=64)
    run2 = tv.train_vggt(again, tmp_path / "vggt2", "cpu", caches=tiny_caches)
    assert json.loads((run2 / "train_config.json").read_text())["steps_done"] == 1


@pytest.mark.slow
def test_vggt_loss_decreases_on_a_fixed_batch(tiny_caches, tiny_vggt_config):
    from vist3a.recon import VGGT

    torch.manual_seed(0)
    model = VGGT(**tiny_vggt_config)
    cfg = tv.VGGTTrainConfig(num_frames=5, size=16, model=tiny_vggt_config, progress=False)
    batch = tiny_caches[0].batch([0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss, _ = tv.vggt_step_loss(model, batch, cfg, torch.device("cpu"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * sum(losses[:5]) / 5


def test_trunk_init_takes_the_anysplat_trunk(tmp_path, tiny_caches, stage_defaults, tiny_vggt_config):
    """A VGGT started from a nano AnySplat's trunk computes the same aggregator tokens as that model."""
    from vist3a.nano.configs import nano_anysplat_config
    from vist3a.nano.training import save_component
    from vist3a.recon import VGGT, AnySplat

    torch.manual_seed(0)
    trunk = tiny_vggt_config["aggregator_config"]
    recon = AnySplat(**nano_anysplat_config(embed_dim=trunk["embed_dim"], depth=trunk["depth"], num_heads=2,
                                            dino_depth=2, dpt_features=8, img_size=28, voxel_size=0.05)).eval()
    vggt = VGGT(**tiny_vggt_config).eval()
    state = tv.trunk_state_from_recon(vggt, recon)
    vggt.load_state_dict(state, strict=False)
    # AnySplat's normalisation constants are bf16-rounded like the release's (not weights): copy them to compare
    vggt.aggregator.image_mean.copy_(recon.aggregator.image_mean)
    vggt.aggregator.image_std.copy_(recon.aggregator.image_std)
    frames = torch.rand(1, 3, 3, 28, 28)
    with torch.no_grad():
        ours = vggt.aggregator(frames).tokens
        theirs = recon.aggregator(frames).tokens
    assert torch.equal(ours[-1], theirs[-1])
    # every tensor but the point head's output layer (4 channels vs the depth head's 2) comes from the recon
    left = [k for k in vggt.state_dict() if k not in state]
    assert left and all(k.startswith("point_head.") for k in left)
    ours, theirs = vggt.state_dict(), recon.state_dict()
    assert torch.equal(ours["point_head.projects.0.weight"], theirs["depth_head.projects.0.weight"])

    folder = tmp_path / "recon"
    save_component(recon, folder, torch.float32)
    cfg = tv.VGGTTrainConfig(**stage_defaults, steps=1, batch_size=1, model=tiny_vggt_config, trunk_init=str(folder),
                             eval_max_points=64)
    tv.train_vggt(cfg, tmp_path / "vggt", "cpu", caches=tiny_caches)
    with pytest.raises(ValueError, match="trunk_init"):
        tv.VGGTTrainConfig(model=tiny_vggt_config, trunk_init=str(folder), init=str(folder))
