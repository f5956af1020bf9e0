"""Fixtures of the video tests: one tiny random Wan generator per session (treat it as read-only)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_gen():
    from vist3a.video.tiny import build_tiny_generator

    return build_tiny_generator(seed=0, text_max_length=16)


@pytest.fixture(scope="session")
def tiny_embeds(tiny_gen):
    """Conditional / unconditional embeddings for two prompts, ``[2, 16, 32]`` each."""
    return tiny_gen.encode_prompts(["a red chair", "a small cabin in the woods"], "", guidance_scale=5.0)
