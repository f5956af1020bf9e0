"""Shared training machinery: schedule, clock, logs, metrics, fp16 rounding, save-dtype choice."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from vist3a.nano import training
from vist3a.nano.training import LossLog, RunClock, lr_factor


def test_lr_factor_warmup_then_cosine():
    assert lr_factor(0, 0.0, 10, 0.1) == pytest.approx(0.1)  # (0 + 1) / 10 of the peak
    assert lr_factor(9, 0.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_factor(50, 0.5, 10, 0.1) == pytest.approx(0.1 + 0.9 * 0.5)
    assert lr_factor(99, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_factor(99, 7.0, 0, 0.0) == pytest.approx(0.0)  # progress is clamped to 1


def test_clock_progress_uses_time_when_a_budget_is_set(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(training.time, "monotonic", lambda: now[0])
    clock = RunClock(steps=1000, time_budget_s=60.0, eval_reserve_s=10.0)
    now[0] = 110.0  # 10 s of data preparation
    clock.start_training()
    assert clock.train_seconds == pytest.approx(40.0)
    now[0] = 130.0
    assert clock.progress(step=10) == pytest.approx(0.5)  # 20 of 40 s beats 10 of 1000 steps
    assert not clock.out_of_time()
    now[0] = 150.0
    assert clock.out_of_time()
    assert RunClock(steps=10, time_budget_s=None, eval_reserve_s=0.0).progress(5) == pytest.approx(0.5)


def test_loss_log_averages_each_interval(tmp_path):
    log = LossLog(tmp_path)
    for value in (1.0, 3.0):
        log.add({"loss": value, "l1": value / 2})
    log.flush(step=2, lr=0.5, elapsed=1.0)
    log.add({"loss": 10.0, "l1": 5.0})
    log.flush(step=3, lr=0.25, elapsed=2.0)
    rows = list(csv.DictReader((tmp_path / "losses.csv").open()))
    assert [float(r["loss"]) for r in rows] == [2.0, 10.0]
    assert [float(r["l1"]) for r in rows] == [1.0, 5.0]
    assert float(rows[1]["lr"]) == 0.25
    assert log.plot("test").is_file()


def test_psnr_of_a_constant_error():
    target = torch.full((2, 3, 4, 4), 0.5)
    assert torch.allclose(training.psnr(target + 0.1, target), torch.full((2,), 20.0), atol=1e-4)


def _ssim_reference(x: torch.Tensor, y: torch.Tensor, window: int, sigma: float) -> float:
    """Window-by-window SSIM with explicit weighted sums (an independent, slow formulation)."""
    coords = torch.arange(window, dtype=torch.float64) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    w = torch.outer(g, g) / torch.outer(g, g).sum()
    values = []
    for c in range(x.shape[0]):
        for i in range(x.shape[1] - window + 1):
            for j in range(x.shape[2] - window + 1):
                a, b = x[c, i : i + window, j : j + window], y[c, i : i + window, j : j + window]
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum()
                cov = (w * (a - ma) * (b - mb)).sum()
                c1, c2 = 0.01**2, 0.03**2
                values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    return float(torch.stack(values).mean())


def test_ssim_matches_a_direct_computation():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 9, 9, generator=gen, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(1, 3, 9, 9, generator=gen, dtype=torch.float64)).clamp(0, 1)
    ours = training.ssim(x, y, window=5, sigma=1.5)
    assert float(ours) == pytest.approx(_ssim_reference(x[0], y[0], 5, 1.5), abs=1e-9)
    assert float(training.ssim(x, x, window=5)) == pytest.approx(1.0)


def test_rounded_weights_is_temporary_and_exact():
    layer = torch.nn.Linear(4, 4)
    with torch.no_grad():
        layer.weight.add_(1e-4 * torch.arange(16.0).view(4, 4))
    before = layer.weight.detach().clone()
    with training.rounded_weights(layer, torch.float16):
        assert torch.equal(layer.weight, before.half().float())
        assert not torch.equal(layer.weight, before)
    assert torch.equal(layer.weight, before)


def test_choose_save_dtype():
    f16, f32 = torch.float16, torch.float32
    assert training.choose_save_dtype("auto", 30.0, 29.99, 0.05, higher_is_better=True) == f16
    assert training.choose_save_dtype("auto", 30.0, 29.5, 0.05, higher_is_better=True) == f32
    assert training.choose_save_dtype("auto", 1.0, 1.2, 0.05, higher_is_better=False) == f32
    assert training.choose_save_dtype("float16", 30.0, 0.0, 0.0, higher_is_better=True) == f16
    assert training.choose_save_dtype("float32", 30.0, 30.0, 1.0, higher_is_better=True) == f32


def test_stage_config_validates_and_rejects_unknown_overrides():
    with pytest.raises(ValueError, match="steps"):
        training.StageConfig(steps=0)
    with pytest.raises(ValueError, match="save_dtype"):
        training.StageConfig(save_dtype="int8")
    with pytest.raises(ValueError, match="unknown StageConfig fields"):
        training.config_from_overrides(training.StageConfig, {"stepz": 3})


def test_train_loop_stops_at_steps_and_skips_non_finite(tmp_path):
    param = torch.nn.Parameter(torch.tensor([3.0]))
    opt = training.make_optimizer([param], lr=0.1, weight_decay=0.0)
    cfg = training.StageConfig(steps=6, lr=0.1, warmup_steps=0, grad_clip=0.0, log_every=2, progress=False)
    square = lambda: param.square().sum()
    losses = iter([square] * 2 + [lambda: torch.tensor(math.nan)] + [square] * 3)

    def step_fn(step):
        return next(losses)(), {}

    result = training.train_loop(step_fn, opt, cfg, RunClock(6, None, 0.0), LossLog(tmp_path), "test")
    assert (result.steps_done, result.stopped_by, result.skipped_steps) == (6, "steps", 1)
    assert abs(float(param.detach())) < 3.0


def test_begin_stage_and_finish_write_the_run_records(tmp_path):
    from diffusers import ConfigMixin, ModelMixin
    from diffusers.configuration_utils import register_to_config

    class Tiny(ModelMixin, ConfigMixin):
        @register_to_config
        def __init__(self, width: int = 2):
            super().__init__()
            self.proj = torch.nn.Linear(width, 3)

    cfg = training.StageConfig(steps=2, seed=7, progress=False, save_dtype="float32")
    run = training.begin_stage(cfg, tmp_path / "run", "demo", "cpu")
    assert run.run_dir.is_dir() and run.device == torch.device("cpu")
    drawn = torch.rand(3)
    torch.manual_seed(7)
    assert torch.equal(drawn, torch.rand(3))  # begin_stage seeded the global RNG with cfg.seed
    with pytest.raises(ValueError, match="save"):
        run.finish({}, {})
    run.data_ready()
    model = Tiny()
    metrics, metrics_fp16 = training.evaluate_with_fp16(model, lambda: {"w": float(model.proj.weight.detach().sum())})
    assert metrics["w"] == pytest.approx(metrics_fp16["w"], abs=1e-2)
    assert run.save(model, metrics["w"], metrics_fp16["w"], 0.0, True) == torch.float32
    run.finish({"heldout_w": metrics["w"]}, training.LoopResult(2, "steps", 0, {}).outcome())
    assert (run.run_dir / "model" / "config.json").is_file()
    evaluation = json.loads((run.run_dir / "eval.json").read_text())
    assert evaluation == {"heldout_w": metrics["w"], "saved_dtype": "float32", "num_params": 9}
    record = json.loads((run.run_dir / "train_config.json").read_text())
    assert record["stage"] == "demo" and record["config"]["seed"] == 7
    assert {"steps_done", "stopped_by", "skipped_steps", "data_seconds", "wall_seconds"} <= set(record)


def test_init_is_an_error_where_a_stage_cannot_continue():
    from vist3a.nano.train_generator import GeneratorTrainConfig
    from vist3a.nano.train_imagetext import ClipEvalTrainConfig, ImageTextTrainConfig
    from vist3a.nano.train_stitch import StitchStageConfig

    for cls in (ImageTextTrainConfig, ClipEvalTrainConfig):
        with pytest.raises(ValueError, match="`init` is not supported"):
            cls(init="installed")
    for cls in (GeneratorTrainConfig, StitchStageConfig):
        assert cls(init="installed").init == "installed"
