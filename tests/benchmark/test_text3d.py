"""``vist3a eval text3d``: resumable runs (in-process with a fake pipeline; a real kill on the nano preset)."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vist3a.benchmark.metric_models import ViewMetric
from vist3a.benchmark.text3d import Text3DConfig, evaluate_text3d, suite_prompts
from vist3a.errors import UserInputError
from vist3a.scene import Scene
from vist3a.splats import Gaussians

ROOT = Path(__file__).resolve().parents[2]


def fake_scene(prompt: str, seed: int) -> Scene:
    gen = torch.Generator().manual_seed(seed)
    n = 64
    means = torch.randn(n, 3, generator=gen) * 0.3 + torch.tensor([0.0, 0.0, 3.0])
    gaussians = Gaussians.from_rgb(means, torch.rand(n, 3, generator=gen), torch.full((n, 3), 0.1), torch.ones(n))
    w2c = torch.eye(4).expand(5, 4, 4).clone()
    w2c[:, 0, 3] = torch.linspace(-0.2, 0.2, 5)
    K = torch.tensor([[20.0, 0.0, 7.5], [0.0, 20.0, 7.5], [0.0, 0.0, 1.0]]).expand(5, 3, 3).clone()
    return Scene(prompt=prompt, frames=torch.rand(5, 3, 16, 16, generator=gen), w2c=w2c, K=K, image_size=(16, 16),
                 gaussians=gaussians, settings={"seed": seed})


class FakePipeline:
    """Counts generations; raises KeyboardInterrupt on call number ``fail_at`` (a user's Ctrl-C)."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_at = fail_at

    def __call__(self, prompt, progress=False, generator=None, **kwargs):
        if self.fail_at is not None and len(self.calls) == self.fail_at:
            raise KeyboardInterrupt
        seed = generator.initial_seed()
        self.calls.append((prompt, seed))
        return [fake_scene(prompt, seed)]


def brightness_metric() -> list[ViewMetric]:
    return [ViewMetric("brightness", "Brightness", lambda views, prompt, scene: float(views.mean()))]


@pytest.fixture
def prompts_file(tmp_path) -> Path:
    path = tmp_path / "prompts.txt"
    path.write_text("# a comment\na red cube\n\na blue sphere\na green cone\n")
    return path


def test_suites_resolve_by_name_and_by_file(prompts_file):
    assert len(suite_prompts("t3bench")[1]) == 300
    assert len(suite_prompts("scenebench")[1]) == 80 and len(suite_prompts("dpg")[1]) == 100
    nano = suite_prompts("nano")[1]
    assert len(set(nano)) == 64 and nano == suite_prompts("nano")[1]
    assert suite_prompts(str(prompts_file)) == ("custom", ["a red cube", "a blue sphere", "a green cone"])
    with pytest.raises(UserInputError, match="neither a suite name"):
        suite_prompts("nope")


def test_interrupted_run_resumes_without_regenerating(tmp_path, prompts_file):
    cfg = Text3DConfig(suite=str(prompts_file), preset="fake", seed=10, progress=False, render_backend="torch")
    out = tmp_path / "run"
    first = FakePipeline(fail_at=2)
    with pytest.raises(KeyboardInterrupt):
        evaluate_text3d(cfg, out, pipeline=first, metrics=brightness_metric())
    assert [s for _, s in first.calls] == [10, 11]
    done = sorted(p.parent.name for p in out.glob("scenes/*/eval.json"))
    assert done == ["0000_a-red-cube", "0001_a-blue-sphere"]
    assert not (out / "results.json").exists()
    # The second scene was saved but its scores were lost (killed while scoring): it is rescored, not regenerated.
    (out / "scenes" / "0001_a-blue-sphere" / "eval.json").unlink()
    kept = (out / "scenes" / "0000_a-red-cube" / "eval.json").read_text()
    second = FakePipeline()
    summary = evaluate_text3d(cfg, out, pipeline=second, metrics=brightness_metric())
    assert second.calls == [("a green cone", 12)]
    assert (out / "scenes" / "0000_a-red-cube" / "eval.json").read_text() == kept
    rows = json.loads((out / "results.json").read_text())["per_prompt"]
    assert [r["reused_scene"] for r in rows] == [False, True, False]
    assert summary["num_prompts"] == 3
    assert summary["means"]["brightness"] == pytest.approx(sum(r["metrics"]["brightness"] for r in rows) / 3)
    assert (out / "contact_sheet.png").is_file() and "| vist3a `fake` |" in (out / "results.md").read_text()
    # A third run has nothing left to do and loads nothing.
    assert evaluate_text3d(cfg, out, pipeline=None, metrics=[])["num_prompts"] == 3


def test_refuses_to_mix_settings_but_allows_a_larger_limit(tmp_path, prompts_file):
    out = tmp_path / "run"
    cfg = Text3DConfig(suite=str(prompts_file), preset="fake", limit=1, progress=False, render_backend="torch")
    evaluate_text3d(cfg, out, pipeline=FakePipeline(), metrics=brightness_metric())
    pipe = FakePipeline()
    cfg.limit = 2
    assert evaluate_text3d(cfg, out, pipeline=pipe, metrics=brightness_metric())["num_prompts"] == 2
    assert [s for _, s in pipe.calls] == [1]
    with pytest.raises(UserInputError, match="seed"):
        evaluate_text3d(Text3DConfig(suite=str(prompts_file), preset="fake", seed=5, progress=False), out,
                        pipeline=FakePipeline(), metrics=brightness_metric())


def test_ranks_shard_prompts_and_the_last_writes_results(tmp_path, prompts_file, monkeypatch):
    cfg = Text3DConfig(suite=str(prompts_file), preset="fake", progress=False, render_backend="torch")
    out = tmp_path / "run"
    pipes = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, expect_summary in ((0, False), (1, True)):
        monkeypatch.setenv("RANK", str(rank))
        pipes.append(FakePipeline())
        summary = evaluate_text3d(cfg, out, pipeline=pipes[-1], metrics=brightness_metric())
        assert (summary is not None) == expect_summary
    assert [s for _, s in pipes[0].calls] == [0, 2] and [s for _, s in pipes[1].calls] == [1]


@pytest.mark.slow
def test_nano_run_killed_mid_way_continues(tmp_path):
    """The issue's check on the real CLI and nano preset: SIGKILL after the first prompt, rerun, nothing redone."""
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\na blue sphere left of a green cone\na yellow torus\n")
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "vist3a.cli.main", "eval", "text3d", "--suite", str(prompts), "--preset", "nano",
           "--out", str(out), "--quiet", "--device", "cpu"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list(out.glob("scenes/0000_*/eval.json")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = list(out.glob("scenes/0000_*/eval.json"))
    assert first, "the first prompt never finished"
    first_text = first[0].read_text()
    meta_mtime = (first[0].parent / "meta.json").stat().st_mtime_ns
    assert not (out / "results.json").exists()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert first[0].read_text() == first_text and (first[0].parent / "meta.json").stat().st_mtime_ns == meta_mtime
    report = json.loads((out / "results.json").read_text())
    assert report["num_prompts"] == 3 and set(report["means"]) == {"clip_nano", "consistency"}
    assert (out / "results.md").is_file() and (out / "contact_sheet.png").is_file()


def test_scene_folders_are_named_like_vist3a_generate_prompts_files():
    from vist3a.benchmark.text3d import slugify
    from vist3a.cli.generate import slugify as generate_slugify

    for prompt in suite_prompts("scenebench")[1][:5] + ["a red cube!", "???"]:
        assert slugify(prompt) == generate_slugify(prompt)


def test_every_nano_preset_gets_the_nano_metrics():
    """The default metric set follows where a preset's models come from: the nano presets (any decoder) score with
    the nano stand-ins, which need no download; release presets with the paper's metrics."""
    from vist3a.benchmark.text3d import metric_kind

    assert [metric_kind(p) for p in ("nano", "nano-vggt", "nano-mvdust3r")] == ["nano"] * 3
    assert metric_kind("tiny-random-mvdust3r") == "tiny" and metric_kind("vist3a-1.3b") == "real"


def test_pointmap_scenes_are_scored_by_their_reprojected_points(tmp_path):
    """eval text3d on a pointmap preset (issue 21: consistency of decoded frames and the pointmaps re-projected):
    the point splats render at the predicted cameras; a rerun on the saved folder (points.ply, no pointmaps)
    scores the very same splats."""
    from vist3a.evaluation.scene_folder import load_scene_folder
    from vist3a.nano.weights import nano_available
    from vist3a.pipeline import Text2ScenePipeline

    if not nano_available():
        pytest.skip("no nano weights installed in this checkout")
    cfg = Text3DConfig(suite="nano", preset="nano-vggt", limit=1, progress=False, render_backend="torch")
    evaluate_text3d(cfg, tmp_path / "run", "cpu")
    (row_file,) = (tmp_path / "run").glob("scenes/0000_*/eval.json")
    first = json.loads(row_file.read_text())
    assert not first["reused_scene"] and 3.0 < first["metrics"]["consistency"] < 60.0
    # the saved folder gives back the fresh scene's splats (same points, same footprints)
    pipe = Text2ScenePipeline.from_pretrained("nano-vggt", device="cpu")
    fresh = pipe(first["prompt"], generator=torch.Generator("cpu").manual_seed(first["seed"]), progress=False)[0]
    saved = load_scene_folder(row_file.parent)
    torch.testing.assert_close(saved.gaussians.means, fresh.render_splats().means)
    torch.testing.assert_close(saved.gaussians.scales, fresh.render_splats().scales, rtol=1e-4, atol=1e-7)
    row_file.unlink()
    (tmp_path / "run" / "results.json").unlink()
    evaluate_text3d(cfg, tmp_path / "run", "cpu")
    again = json.loads(row_file.read_text())
    assert again["reused_scene"]
    # the same splats; the reference frames now come from frames.mp4 (lossy), hence not to the last digit
    assert again["metrics"]["consistency"] == pytest.approx(first["metrics"]["consistency"], abs=0.3)
    # --refine optimises Gaussians: a pointmap scene has none, resumed or fresh: one clear error, and a fresh run
    # says so before it generates anything
    with pytest.raises(UserInputError, match="--refine"):
        evaluate_text3d(dataclasses.replace(cfg, refine_steps=2), tmp_path / "refined", "cpu")
    assert not list((tmp_path / "refined").glob("scenes/*/*"))
