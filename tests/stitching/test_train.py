"""Stitched fine-tuning: the loss goes down, only the intended parameters move, resuming is exact, the CLI runs."""

from __future__ import annotations

import csv

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


def test_resume_after_interruption_takes_the_same_next_steps(teacher, teacher_search, tiny_models, tiny_clips,
                                                             tmp_path):
    cfg = config()
    full = train_stitched(build_student(teacher, teacher_search, cfg), teacher, tiny_models.vae, tiny_clips,
                          tmp_path / "a", cfg, device="cpu", progress=False)

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
    a = load_file(str(tmp_path / "a" / "checkpoint-4" / "trainable.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoint-4" / "trainable.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    with (tmp_path / "b" / "losses.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert [float(r["loss"]) for r in rows] == [r["loss"] for r in full.history]
    assert (tmp_path / "b" / "losses.png").is_file()
    final = StitchedDecoder.from_pretrained(tmp_path / "b" / "final")
    assert final.config.lora_rank == 2 and final.layer == resumed_layer(teacher_search)


def resumed_layer(search_dir) -> str:
    import json

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


def test_config_validation():
    with pytest.raises(ValueError, match="view_choices"):
        config(view_choices=(6,))
    with pytest.raises(ValueError, match="mixed_precision"):
        config(mixed_precision="fp8")
    assert config(warmup_steps=None, max_steps=40).resolved_warmup == 4
