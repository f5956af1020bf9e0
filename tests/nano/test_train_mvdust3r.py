"""mvdust3r stage (issue 21): DUSt3R's normalised confidence-weighted pointmap loss, the Gaussian render loss, the
held-out metrics, and the stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano import train_mvdust3r as tm
from vist3a.nano.train_vggt import pointmap_targets


def _config(tiny_mvdust3r_config, **overrides):
    return tm.MVDust3rTrainConfig(num_frames=5, size=16, model=tiny_mvdust3r_config, progress=False,
                                  render_backend="torch", **overrides)


def test_a_perfect_pointmap_at_any_scale_has_no_error(tiny_caches, tiny_mvdust3r_config):
    """The pointmap loss compares shapes (prediction and truth each divided by their mean distance, DUSt3R's
    normalisation) in the first view's camera frame: the true pointmap scaled by 3 leaves only -alpha log(conf)."""
    from vist3a.recon import MVDust3rOutput

    batch = tiny_caches[0].batch([0, 1])
    cfg = _config(tiny_mvdust3r_config)
    target = pointmap_targets(batch, cfg.image_size)
    conf = torch.full(target.depth.shape, 2.0)[:, None]

    def perfect(images):
        return MVDust3rOutput(points=3.0 * target.points[:, None], conf=conf, reference_views=torch.tensor([0]))

    _, terms = tm.mvdust3r_step_loss(perfect, batch, cfg, torch.Generator(), torch.device("cpu"))
    expected = -cfg.conf_alpha * torch.log(torch.tensor(2.0))
    assert terms["points_regression"] == pytest.approx(float(expected), abs=1e-5)
    assert terms["points_background"] == pytest.approx(0.0, abs=1e-5) and "render" not in terms
    # the same points in another frame (view 1's) are wrong
    other = pointmap_targets(batch, cfg.image_size, ref_view=1).points
    _, terms = tm.mvdust3r_step_loss(lambda images: MVDust3rOutput(points=other[:, None], conf=conf,
                                                                   reference_views=torch.tensor([0])),
                                     batch, cfg, torch.Generator(), torch.device("cpu"))
    assert terms["points_regression"] > float(expected) + 0.05


def test_mean_distance_counts_only_pixels_with_geometry():
    points = torch.zeros(1, 1, 2, 2, 3)
    points[..., 0, 0, 2] = 2.0
    points[..., 1, 1, 2] = 100.0
    valid = torch.tensor([[[[True, True], [False, False]]]])
    assert float(tm.mean_distance(points, valid)[0]) == pytest.approx(1.0)


def test_mvdust3r_plus_paths_and_gaussians_enter_the_loss(tiny_caches, tiny_mvdust3r_config):
    """MV-DUSt3R+ (two paths, each against the ground truth in its reference view's frame) with the Gaussian head:
    every term is finite and the render loss reaches the Gaussian head's parameters."""
    from vist3a.recon import MVDust3r

    torch.manual_seed(0)
    model = MVDust3r(**{**tiny_mvdust3r_config, "multi_path": True, "n_ref": 2})
    cfg = _config(model.config)
    loss, terms = tm.mvdust3r_step_loss(model, tiny_caches[0].batch([0]), cfg, torch.Generator().manual_seed(0),
                                        torch.device("cpu"))
    assert torch.isfinite(loss) and {"points", "render", "render_psnr"} <= set(terms)
    loss.backward()
    assert model.downstream_GS_head[0].mlp_opacity[2].weight.grad.abs().sum() > 0
    assert model.dec_same_view_blocks[0].attn.qkv.weight.grad is not None


def test_config_checks():
    with pytest.raises(ValueError, match="render_weight"):
        tm.MVDust3rTrainConfig(render_weight=-1.0)
    with pytest.raises(ValueError, match="camera_kinds"):
        tm.MVDust3rTrainConfig(camera_kinds=["spiral"])
    assert tm.MVDust3rTrainConfig().image_size == 112


@pytest.mark.slow
def test_mvdust3r_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_mvdust3r_config):
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import MVDust3r

    cfg = tm.MVDust3rTrainConfig(**stage_defaults, steps=2, batch_size=2, model=tiny_mvdust3r_config,
                                 render_backend="torch", canonical_direction=True, eval_max_points=64)
    run = tm.train_mvdust3r(cfg, tmp_path / "mvdust3r", "cpu", caches=tiny_caches)
    evaluation = json.loads((run / "eval.json").read_text())
    for key in ("depth_abs_rel", "points_acc", "points_comp", "points_nc", "rotation_error_median_deg", "rra@5",
                "auc@30"):
        assert isinstance(evaluation[f"heldout_{key}"], float), key
    assert evaluation["saved_dtype"] in ("float16", "float32") and "heldout_points_acc_fp16" in evaluation
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "mvdust3r" and record["steps_done"] == 2
    rows = (run / "losses.csv").read_text().splitlines()
    assert "points_regression" in rows[0] and "render_psnr" in rows[0] and len(rows) == 3
    model = load_component_from(run, "mvdust3r")
    assert isinstance(model, MVDust3r) and model.config.enc_embed_dim == tiny_mvdust3r_config["enc_embed_dim"]
    # continuing: init from the run (strict), a new seed
    again = tm.MVDust3rTrainConfig(**stage_defaults, steps=1, batch_size=1, model=cfg.model, init=str(run), seed=1,
                                   render_backend="torch", eval_max_points=64)
    run2 = tm.train_mvdust3r(again, tmp_path / "mvdust3r2", "cpu", caches=tiny_caches)
    assert json.loads((run2 / "train_config.json").read_text())["steps_done"] == 1


@pytest.mark.slow
def test_mvdust3r_losses_decrease_on_a_fixed_batch(tiny_caches, tiny_mvdust3r_config):
    """An honest learning check: 30 Adam steps on one batch lower the pointmap loss and the render loss."""
    from vist3a.recon import MVDust3r

    torch.manual_seed(0)
    model = MVDust3r(**tiny_mvdust3r_config)
    cfg = _config(tiny_mvdust3r_config)
    batch = tiny_caches[0].batch([0, 1])
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    rows = []
    for _ in range(30):
        opt.zero_grad()
        loss, terms = tm.mvdust3r_step_loss(model, batch, cfg, torch.Generator().manual_seed(0), torch.device("cpu"))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        rows.append({"loss": float(loss.detach()), **terms})

    def mean(key, part):
        values = [r[key] for r in (rows[:5] if part == "first" else rows[-5:])]
        return sum(values) / len(values)

    assert mean("loss", "last") < 0.7 * mean("loss", "first")
    assert mean("points_regression", "last") < 0.8 * mean("points_regression", "first")
    assert mean("render", "last") < mean("render", "first")
