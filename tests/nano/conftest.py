"""Fixtures of the nano recipe tests: tiny clips of the real synthetic world and tiny model configs."""

from __future__ import annotations

import pytest
import torch

TINY_FRAMES = 5  # 4n + 1 for the causal VAE
TINY_SIZE = 16  # 2x2 latent through the 8x VAE


def tiny_vae_config() -> dict:
    from vist3a.nano.configs import nano_vae_config

    return nano_vae_config(base_dim=8)


def tiny_anysplat_config() -> dict:
    from vist3a.nano.configs import nano_anysplat_config

    # 28 px / patch 14 = a 2x2 token grid, matching the 2x2 latent of a 16 px clip (stride-1 stitching)
    return nano_anysplat_config(embed_dim=16, depth=4, num_heads=2, dino_depth=2, dpt_features=8, img_size=28,
                                voxel_size=0.05)


def tiny_vggt_config() -> dict:
    from vist3a.nano.configs import nano_vggt_config

    # the trunk of tiny_anysplat_config with VGGT's heads: 28 px -> a 2x2 grid for the 2x2 latent of a 16 px clip
    return nano_vggt_config(embed_dim=16, depth=4, num_heads=2, dino_depth=2, dpt_features=8, img_size=28)


def tiny_mvdust3r_config() -> dict:
    from vist3a.nano.configs import nano_mvdust3r_config

    # 28 px / patch 14 -> a 2x2 grid for the 2x2 latent of a 16 px clip, as the tiny AnySplat and VGGT
    return nano_mvdust3r_config(enc_embed_dim=16, enc_depth=2, dec_embed_dim=16, dec_depth=2, num_heads=2,
                                gs_mlp_dim=8, skip_dim=4, img_size=28)


def tiny_transformer_config() -> dict:
    from vist3a.nano.configs import nano_transformer_config

    return nano_transformer_config(num_layers=1, num_heads=2, head_dim=8)


@pytest.fixture(name="tiny_vae_config")
def _tiny_vae_config() -> dict:
    return tiny_vae_config()


@pytest.fixture(name="tiny_anysplat_config")
def _tiny_anysplat_config() -> dict:
    return tiny_anysplat_config()


@pytest.fixture(name="tiny_vggt_config")
def _tiny_vggt_config() -> dict:
    return tiny_vggt_config()


@pytest.fixture(name="tiny_mvdust3r_config")
def _tiny_mvdust3r_config() -> dict:
    return tiny_mvdust3r_config()


@pytest.fixture(name="tiny_transformer_config")
def _tiny_transformer_config() -> dict:
    return tiny_transformer_config()


@pytest.fixture(scope="session")
def tiny_caches():
    """(train, held-out) caches of real synthetic-world clips, 5 frames of 16x16."""
    from vist3a.data import SyntheticClips
    from vist3a.data.cache import ClipCache

    with torch.random.fork_rng():
        train = ClipCache.build(SyntheticClips(4, TINY_FRAMES, TINY_SIZE, seed=0), progress=False)
        held = ClipCache.build(SyntheticClips(1, TINY_FRAMES, TINY_SIZE, seed=1, split="heldout"), progress=False)
    return train, held


@pytest.fixture
def stage_defaults() -> dict:
    """Shared overrides that make any stage tiny and quiet."""
    return {"num_frames": TINY_FRAMES, "size": TINY_SIZE, "progress": False, "eval_reserve_s": 0.0, "log_every": 1,
            "warmup_steps": 0, "num_train_clips": 4, "num_eval_clips": 1}
