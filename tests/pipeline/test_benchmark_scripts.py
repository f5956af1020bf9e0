"""The generation benchmarks still run (tiny models on the CPU; the real runs are on GPUs)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_generate_e2e_smoke(tmp_path):
    out = tmp_path / "e2e.json"
    result = _load("generate_e2e").main(["--tiny", "--steps", "2", "--repeats", "1", "--warmup", "0",
                                         "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    for path in ("reference", "vist3a"):
        stages = result[path]
        assert stages["total"] > 0 and stages["num_gaussians"] == result["settings"]["num_gaussians"]


@pytest.mark.slow
def test_generate_e2e_times_a_bf16_vae(tmp_path):
    """The bf16-VAE row decodes the same latents as the float32 row: the frames differ by rounding only."""
    result = _load("generate_e2e").main(["--tiny", "--steps", "2", "--repeats", "1", "--warmup", "0",
                                         "--skip-reference", "--vae-bf16", "--out", str(tmp_path / "e2e.json")])
    assert result["offload"] == "none"  # off CUDA every part stays where it is
    assert result["vist3a_vae_bf16"]["total"] > 0
    fidelity = result["vae_bf16_fidelity"]
    assert fidelity["velocity_rel_l2"] == 0.0  # the transformer is untouched
    assert 25.0 < fidelity["frames_psnr_db"] < float("inf")


@pytest.mark.slow
def test_generate_multi_gpu_smoke_in_one_process(tmp_path):
    """One process (no launcher): every scene of the batch is generated and written, and the rates agree."""
    out = tmp_path / "one.json"
    result = _load("generate_multi_gpu").main(["--tiny", "--steps", "2", "--scenes-per-gpu", "2", "--out", str(out)])
    assert result == json.loads(out.read_text())
    assert result["num_gpus"] == 1 and result["scenes"] == 2 and result["ranks"][0]["scenes"] == 2
    assert result["scenes_per_min"] == pytest.approx(60 * 2 / result["wall_s"])


@pytest.mark.slow
def test_e2e_fidelity_probe_is_repeatable_and_compared_analytically():
    """The fp8-vs-bf16 numbers compare like with like: the probe repeats exactly, and the two measures are what
    they say (relative L2, PSNR of frames in [0, 1])."""
    import torch

    e2e = _load("generate_e2e")
    settings = e2e.release_settings(True, 2, None)
    pipe = e2e.make_pipeline(e2e.build(True, torch.device("cpu"), torch.float32), settings, torch.device("cpu"))
    first, second = e2e.fidelity_probe(pipe, settings), e2e.fidelity_probe(pipe, settings)
    assert e2e.compare_outputs(first, second) == {"velocity_rel_l2": 0.0, "frames_psnr_db": float("inf")}
    shifted = {"velocity": 1.1 * first["velocity"], "frames": first["frames"] + 0.01}
    measured = e2e.compare_outputs(first, shifted)
    assert measured["velocity_rel_l2"] == pytest.approx(0.1, rel=1e-4)
    assert measured["frames_psnr_db"] == pytest.approx(40.0, abs=1e-3)


@pytest.mark.slow
def test_quickstart_cpu_times_the_cli_in_fresh_processes(tmp_path):
    out = tmp_path / "quickstart.json"
    result = _load("quickstart_cpu").main(["--runs", "1", "--out", str(out)])
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["this"]["median_wall_s"] > 0 and result["this"]["repeatable_outputs"]


@pytest.mark.slow
def test_generate_e2e_times_a_step_cache(tmp_path):
    result = _load("generate_e2e").main(["--tiny", "--steps", "4", "--repeats", "1", "--warmup", "0",
                                         "--skip-reference", "--step-cache", "mag", "--step-cache-threshold", "1",
                                         "--out", str(tmp_path / "e2e.json")])
    cached = result["vist3a_step_cache"]
    assert cached["kind"] == "mag" and len(cached["mag_ratios"]) == 4  # calibrated in the warm-up run
    assert 0 < cached["block_runs_skipped"] < 1 and cached["total"] > 0
    assert result["step_cache_fidelity"]["frames_psnr_db"] > 0


@pytest.mark.slow
def test_step_cache_benchmark_on_the_nano_preset(tmp_path):
    """One prompt, the reference and one cache setting (~20 s): the measures are wired to the right runs."""
    result = _load("step_cache").main(["--prompts", "1", "--first-block", "0", "--mag", "--fewer-steps",
                                       "--out", str(tmp_path / "sc.json")])
    names = [s["name"] for s in result["settings"]]
    assert names == ["none", "none, seeds +1000", "first-block 0"]
    exact = result["settings"][-1]["summary"]  # threshold 0 never skips: the reference's scene again
    assert exact["block_runs_skipped"] == 0 and exact["frames_psnr_mean"] == 100.0
    assert exact["renders_psnr_mean"] == 100.0 and exact["hit_rendered_changed"] == 0
    assert result["settings"][1]["summary"]["frames_psnr_mean"] < 30  # another seed: another scene


@pytest.mark.slow
def test_first_scene_locates_the_start_up(tmp_path):
    """Fresh `vist3a generate` processes (tiny models, CPU): each row says when the libraries were imported and the
    pipeline loaded, in the order they happen, and the in-process load time fits between the two lines."""
    result = _load("first_scene").main(["--tiny", "--eager-only", "--repeats", "1", "--timeout", "300",
                                        "--work", str(tmp_path / "work"), "--out", str(tmp_path / "first.json")])
    assert json.loads((tmp_path / "first.json").read_text()) == json.loads(json.dumps(result))
    for name in ("warmup", "eager"):
        (row,) = result["runs"][name]
        assert row["returncode"] == 0 and row["scenes"] == 1
        imported, loaded = row["libraries_imported_at_s"], row["pipeline_loaded_at_s"]
        assert 0 < imported < loaded < row["time_to_first_scene_s"] <= row["wall_s"]
        assert 0 < row["pipeline_load_s"] <= loaded - imported + 0.1  # logged with one decimal
    assert "libraries imported at (s)" in result["table"]
