"""Shared test fixtures: the oracle folder and CPU determinism."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(os.environ.get("VIST3A_ORACLE_DIR", ROOT.parent / "shared" / "oracles"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture
def oracle_dir() -> Path:
    if not ORACLE_DIR.is_dir():
        pytest.skip(f"oracle folder {ORACLE_DIR} not found (set VIST3A_ORACLE_DIR)")
    return ORACLE_DIR


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
