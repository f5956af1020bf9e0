"""Fixtures of the stitching tests: tiny random models, a few pre-rendered clips, one layer search (session)."""

from __future__ import annotations

import pytest
import torch

TINY_VAE_SIZE = 16  # -> 2x2 latent
TINY_RECON_SIZE = 28  # -> 2x2 token grid (patch 14)
TINY_FRAMES = 5


@pytest.fixture(autouse=True)
def _one_cpu_thread():
    """Tiny ops on a shared 2-core machine run several times faster single-threaded (no OpenMP contention)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_models():
    """Tiny random Wan VAE + AnySplat at 16 px VAE input / 28 px model input (read-only)."""
    from vist3a.stitching.models import resolve_stitch_models

    return resolve_stitch_models("tiny-random", vae_size=TINY_VAE_SIZE, recon_size=TINY_RECON_SIZE,
                                 num_frames=TINY_FRAMES)


@pytest.fixture(scope="session")
def tiny_clips():
    """Three synthetic clips of 5 frames at 28 px, rendered once."""
    from vist3a.data import SyntheticClips

    dataset = SyntheticClips(3, num_frames=TINY_FRAMES, size=TINY_RECON_SIZE, seed=0)
    return [dataset[i] for i in range(len(dataset))]


@pytest.fixture(scope="session")
def search_dir(tmp_path_factory, tiny_models, tiny_clips):
    """A finished layer search on the tiny models (2 fit clips, 1 held out)."""
    from vist3a.stitching.search import SearchConfig, run_layer_search

    out = tmp_path_factory.mktemp("search")
    m = tiny_models
    config = SearchConfig(spec=m.spec, num_clips=3, num_frames=TINY_FRAMES, vae_size=m.vae_size,
                          recon_size=m.recon_size, holdout_fraction=1 / 3)
    run_layer_search(tiny_clips, m.vae, m.recon, m.adapter, out, config, m.sources, progress=False)
    return out
