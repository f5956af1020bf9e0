"""Recon tests: one intra-op thread (the tiny models are latency-bound; on a shared 2-core machine extra
threads only add synchronisation cost)."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
