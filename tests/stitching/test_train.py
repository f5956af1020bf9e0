"""Stitched fine-tuning: the loss goes down, only the intended parameters move, resuming is exact (also after a
clean early stop by the time budget or the should_stop hook), the CLI runs."""

from __future__ import annotations

import csv
import json

import pytest
import torch
from safetensors.torch import load_file
from stitch_helpers import perturbed_tiny_anysplat

from vist3a.stitching.adapters import adapter_for_model
from vist3a.stitching.decoder import StitchedDecoder
from vist3a.stitching.search import SearchConfig, run_layer_search
from vist3a.stitching.train import StitchTrainConfig, build_student, train_stitched


@pytest.fixture(scope="module")
def teacher():
    """A tiny AnySplat with non-degenerate outputs (2 DINO blocks, like the tiny-random preset)."""
    return perturbed_tiny_anysplat(seed=0, dino_depth=2)


@pytest.fixture(scope="module")
def teacher_search(tmp_path_factory, teacher, tiny_models, tiny_clips):
    out = tmp_path_factory.mktemp("teacher_search")
    config = SearchConfig(spec=tiny_models.spec, num_clips=3, num_frames=5, vae_size=16, recon_size=28,
                          holdout_fraction=0.0)
    run_layer_search(tiny_clips, tiny_models.vae, teacher, adapter_for_model(teacher), out, config, progress=False)
    return out


def config(**overrides) -> StitchTrainConfig:
    base = dict(max_steps=4, lr=1e-3, warmup_steps=0, batch_size=1, view_choices=(5,), vae_size=16, recon_size=28,
                lora_rank=2, lora_alpha=4.0, checkpoint_every=2, color_jitter=0.1, gradient_checkpointing=False)
    return StitchTrainConfig(**{**base, **overrides})


def test_a_few_steps_lower_the_loss_and_move_only_trained_parameters(teacher, teacher_search, tiny_models,
                                                                      tiny_clips, tmp_path):
    cfg = config(max_steps=5, color_jitter=0.0, sample_posterior=False, checkpoint_every=5)
    student = build_student(teacher, teacher_search, cfg)
    before = {k: v.detach().clone() for k, v in student.state_dict().items()}
    trained = set(student.trainable_parameters())
    # one clip, fixed views, no jitter, posterior mode: every step sees the same batch
    result = train_stitched(student, teacher, tiny_models.vae, tiny_clips[:1], tmp_path / "run", cfg, device="cpu",
                            progress=False)
    losses = [row["loss"] for row in result.history]
    assert len(losses) == 5 and losses[-1] < 0.75 * losses[0], losses
    after = student.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved <= trained, f"frozen parameters changed: {sorted(moved - trained)[:5]}"
    assert "stitching_layer.weight" in moved and "recon.aggregator.patch_embed.cls_token" in moved
    assert any("lora_B" in k for k in moved)
    # the teacher is untouched
    assert not any(p.requires_grad for p in teacher.parameters())


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, teacher, teacher_search, tiny_models, tiny_clips):
    """An uninterrupted run of :func:`config` (4 steps) to compare interrupted and stopped runs with.

    Single-threaded like the tests (module fixtures run before the autouse thread fixture): the thread count
    changes float summation order, and the comparisons are exact."""
    run_dir = tmp_path_factory.mktemp("full") / "a"
    cfg = config()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                                run_dir, cfg, device="cpu", progress=False)
    finally:
        torch.set_num_threads(threads)
    return run_dir, result


def assert_same_trained(a_dir, b_dir, step: int) -> None:
    a = load_file(str(a_dir / f"checkpoint-{step}" / "trainable.safetensors"))
    b = load_file(str(b_dir / f"checkpoint-{step}" / "trainable.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_after_interruption_takes_the_same_next_steps(teacher, teacher_search, tiny_models, tiny_clips,
                                                             full_run, tmp_path):
    cfg = config()
    full_dir, full = full_run
    assert full.stopped_by == "steps" and full.step == 4

    def interrupt(step, logs):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                       tmp_path / "b", cfg, device="cpu", progress=False, step_callback=interrupt)
    assert not (tmp_path / "b" / "checkpoint-4").exists()
    resumed = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                             tmp_path / "b", cfg, resume=tmp_path / "b" / "checkpoint-2", device="cpu",
                             progress=False)
    assert [r["step"] for r in resumed.history] == [3, 4]
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in full.history[2:]]
    assert_same_trained(full_dir, tmp_path / "b", 4)
    with (tmp_path / "b" / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == [r["loss"] for r in full.history]
    assert (tmp_path / "b" / "losses.png").is_file()
    final = StitchedDecoder.from_pretrained(tmp_path / "b" / "final")
    assert final.config.lora_rank == 2 and final.layer == resumed_layer(teacher_search)


def test_should_stop_ends_cleanly_and_the_run_resumes_exactly(teacher, teacher_search, tiny_models, tiny_clips,
                                                               full_run, tmp_path):
    """A stop hook ends the run at its step with a checkpoint there (recording why) and a final decoder; resuming
    from that checkpoint takes the uninterrupted run's next step."""
    cfg = config()
    full_dir, full = full_run
    seen = []
    stopped = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                             tmp_path / "b", cfg, device="cpu", progress=False,
                             should_stop=lambda step, row: seen.append(step) or step == 3)
    assert seen == [1, 2, 3] and stopped.step == 3 and stopped.stopped_by == "should_stop"
    assert [p.name for p in stopped.checkpoints] == ["checkpoint-2", "checkpoint-3"]
    assert json.loads((tmp_path / "b" / "checkpoint-3" / "meta.json").read_text())["stopped_by"] == "should_stop"
    assert "stopped_by" not in json.loads((tmp_path / "b" / "checkpoint-2" / "meta.json").read_text())
    assert stopped.final_dir is not None and (stopped.final_dir / "config.json").is_file()
    assert [r["loss"] for r in stopped.history] == [r["loss"] for r in full.history[:3]]

    resumed = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                             tmp_path / "b", cfg, resume=tmp_path / "b" / "checkpoint-3", device="cpu", progress=False)
    assert resumed.stopped_by == "steps" and [r["step"] for r in resumed.history] == [4]
    assert resumed.history[0]["loss"] == full.history[3]["loss"]
    assert_same_trained(full_dir, tmp_path / "b", 4)


def test_time_budget_stops_cleanly_before_overrunning(teacher, teacher_search, tiny_models, tiny_clips, full_run,
                                                      tmp_path):
    """A budget smaller than one step: the first step runs (the budget is checked after a step), then the run stops
    because the next step would overrun it, with a checkpoint and a final decoder."""
    _, full = full_run
    cfg = config(time_budget_s=1e-3)
    result = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                            tmp_path / "run", cfg, device="cpu", progress=False)
    assert result.step == 1 and result.stopped_by == "time_budget"
    meta = json.loads((tmp_path / "run" / "checkpoint-1" / "meta.json").read_text())
    assert meta["step"] == 1 and meta["stopped_by"] == "time_budget"
    assert (tmp_path / "run" / "final" / "config.json").is_file()
    assert result.history[0]["loss"] == full.history[0]["loss"]
    with pytest.raises(ValueError, match="time_budget_s"):
        config(time_budget_s=0)


def resumed_layer(search_dir) -> str:
    return json.loads((search_dir / "report.json").read_text())["best_layer"]


def test_cli_train_and_resume(search_dir, tmp_path):
    from vist3a.cli.main import main

    args = ["stitch", "train", "--preset", "tiny-random", "--init", str(search_dir), "--max-steps", "2",
            "--checkpoint-every", "1", "--vae-size", "16", "--recon-size", "28", "--num-clips", "2",
            "--lora-rank", "2", "--device", "cpu", "--out", str(tmp_path / "run")]
    for extra in ([], ["--resume", str(tmp_path / "run" / "checkpoint-1")]):
        with pytest.raises(SystemExit) as exit_info:
            main(args + extra)
        assert exit_info.value.code in (0, None)
    assert (tmp_path / "run" / "checkpoint-2" / "meta.json").is_file()
    assert (tmp_path / "run" / "final" / "config.json").is_file()


def test_cli_train_time_budget(search_dir, tmp_path, capsys):
    from vist3a.cli.main import main

    args = ["stitch", "train", "--preset", "tiny-random", "--init", str(search_dir), "--max-steps", "3",
            "--vae-size", "16", "--recon-size", "28", "--num-clips", "1", "--lora-rank", "2", "--device", "cpu",
            "--time-budget", "0.001", "--out", str(tmp_path / "run")]
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code in (0, None)
    assert "step 1 (stopped by time budget)" in capsys.readouterr().out
    assert json.loads((tmp_path / "run" / "checkpoint-1" / "meta.json").read_text())["stopped_by"] == "time_budget"


def test_views_must_follow_the_vae_frame_rule(teacher, teacher_search, tiny_models, tiny_clips, tmp_path):
    from vist3a.errors import UserInputError

    decoder = build_student(teacher, teacher_search, config())
    with pytest.raises(UserInputError, match="4k\\+1"):
        train_stitched(decoder, teacher, tiny_models.vae, tiny_clips, tmp_path / "run", config(view_choices=(5, 6)),
                       device="cpu", progress=False)


def test_config_validation():
    with pytest.raises(ValueError, match="view_choices"):
        config(view_choices=(0,))
    with pytest.raises(ValueError, match="mixed_precision"):
        config(mixed_precision="fp8")
    assert config(warmup_steps=None, max_steps=40).resolved_warmup == 4
