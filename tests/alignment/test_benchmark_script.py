"""``benchmarks/align_step.py`` still runs (tiny models on the CPU; the real run is on a GPU)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "align_step.py"


@pytest.mark.slow
def test_align_step_benchmark_smoke(tmp_path):
    spec = importlib.util.spec_from_file_location("align_step_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "bench.json"
    module.main(["--tiny", "--device", "cpu", "--rollout-steps", "1", "--repeats", "1", "--warmup", "0",
                 "--out", str(out)])
    result = json.loads(out.read_text())
    (run,) = result["runs"]
    assert run["rollout_steps"] == 1 and run["skipped"] == 0 and run["mean_seconds_per_step"] > 0
    assert result["lora_params"] > 0 and result["transformer_params"] > result["lora_params"]
