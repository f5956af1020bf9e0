"""benchmarks/nano_recon_heldout.py rebuilds a recon run's held-out set exactly: on the installed recon and its own
seed it reproduces the numbers the training stage recorded (MANIFEST.json), so comparisons on one set are sound."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WEIGHTS = ROOT / "src" / "vist3a" / "nano" / "weights"


def _load():
    spec = importlib.util.spec_from_file_location("nano_recon_heldout", ROOT / "benchmarks" / "nano_recon_heldout.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_reproduces_the_stage_s_own_heldout_numbers(tmp_path):
    entry = json.loads((WEIGHTS / "MANIFEST.json").read_text())["components"]["recon"]
    config = tmp_path / "train_config.json"
    config.write_text(json.dumps(entry["train_config"]))
    seed = entry["train_config"]["config"]["seed"]
    result = _load().main(["--config", str(config), "--seeds", str(seed), "--model", f"installed={WEIGHTS / 'recon'}",
                           "--out", str(tmp_path / "out.json")])
    got, recorded = result[f"seed {seed}"]["installed"], entry["eval"]
    assert json.loads((tmp_path / "out.json").read_text()) == result
    # the stage evaluated float32 weights on a GPU, the package ships float16: agreement to rounding, not exactly
    assert got["rotation_error_median_deg"] == pytest.approx(recorded["heldout_rotation_error_median_deg"], abs=0.05)
    assert got["novel_psnr_pred"] == pytest.approx(recorded["heldout_novel_psnr_pred"], abs=0.02)
    assert got["novel_psnr"] == pytest.approx(recorded["heldout_novel_psnr_fp16"], abs=0.02)
    assert got["depth_abs_rel"] == pytest.approx(recorded["heldout_depth_abs_rel"], abs=1e-3)
    assert got["rotation_span_gt_deg"] == pytest.approx(recorded["heldout_rotation_span_gt_deg"], abs=0.01)
