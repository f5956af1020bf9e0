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
def test_generate_multi_gpu_smoke_in_one_process(tmp_path):
    """One process (no launcher): every scene of the batch is generated and written, and the rates agree."""
    out = tmp_path / "one.json"
    result = _load("generate_multi_gpu").main(["--tiny", "--steps", "2", "--scenes-per-gpu", "2", "--out", str(out)])
    assert result == json.loads(out.read_text())
    assert result["num_gpus"] == 1 and result["scenes"] == 2 and result["ranks"][0]["scenes"] == 2
    assert result["scenes_per_min"] == pytest.approx(60 * 2 / result["wall_s"])
