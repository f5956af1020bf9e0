"""Shared test fixtures: the oracle folder and CPU determinism."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
ORACLE_DIR = Path(os.environ.get("VIST3A_ORACLE_DIR", ROOT.parent / "shared" / "oracles"))


@pytest.fixture(scope="session", autouse=True)
def _compile_cache_in_tmp(tmp_path_factory):
    """``--compile`` / ``Text2ScenePipeline.compile()`` keep their caches under ``$VIST3A_CACHE``: a temporary
    folder for the test session, not the user's ``~/.cache/vist3a``."""
    if "VIST3A_CACHE" not in os.environ:
        os.environ["VIST3A_CACHE"] = str(tmp_path_factory.mktemp("vist3a-cache"))
    yield


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


class FakeMiniLM:
    """Stands in for the MiniLM text encoder (``encode(prompts) -> (states [N, L, 384], mask [N, L])``): every
    word gets a fixed random 384-d state (CRC32-seeded), so equal prompts encode equally and different words
    differ. No weights to load."""

    hidden_size = 384

    def __init__(self, max_length: int = 16) -> None:
        self.max_length = max_length
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        states = torch.zeros(len(prompts), self.max_length, self.hidden_size)
        mask = torch.zeros(len(prompts), self.max_length, dtype=torch.long)
        for i, prompt in enumerate(prompts):
            for j, word in enumerate(prompt.lower().split()[: self.max_length]):
                gen = torch.Generator().manual_seed(zlib.crc32(word.encode()))
                states[i, j] = torch.randn(self.hidden_size, generator=gen)
                mask[i, j] = 1
        return states, mask


@pytest.fixture
def fake_minilm() -> FakeMiniLM:
    return FakeMiniLM()


def _tiny_clip_config(tower: str = "conv", role: str = "reward") -> dict:
    towers = {"conv": {"widths": [8, 16]}, "vit": {"dim": 16, "depth": 1, "num_heads": 2, "patch_size": 8}}
    return {"image_tower": tower, "tower_config": towers[tower], "image_size": 16, "embed_dim": 8, "pool_heads": 2,
            "text_dim": 384, "text_hidden": 16, "role": role}


@pytest.fixture
def tiny_clip_config():
    """``(tower="conv", role="reward") -> NanoImageTextModel kwargs`` of a tiny model (16 px, 8-d embeddings)."""
    return _tiny_clip_config
