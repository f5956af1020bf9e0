"""Stitching data: ``--data synthetic`` for training renders a pool of clips once and samples from it."""

from __future__ import annotations

import pytest
import torch

from vist3a.data import SyntheticClips
from vist3a.stitching.models import resolve_clips
from vist3a.stitching.train import StitchTrainConfig, sample_batch


def test_training_clips_are_rendered_once_and_drawn_from_memory(monkeypatch):
    pool = resolve_clips("synthetic", 2, 5, 16, seed=3, render_once=True)
    assert len(pool) == 2
    reference = SyntheticClips(2, num_frames=5, size=16, seed=3, split="train")
    for i in range(2):  # the pool holds the world's clips, quantised to uint8
        torch.testing.assert_close(pool[i].frames, reference[i].frames, atol=0.5 / 255 + 1e-6, rtol=0)
        torch.testing.assert_close(pool[i].w2c, reference[i].w2c)

    def no_rendering(*args, **kwargs):
        raise AssertionError("a training step rendered a clip")

    monkeypatch.setattr("vist3a.data.synthetic.render_clip", no_rendering)
    monkeypatch.setattr("vist3a.data.synthetic.render_clips", no_rendering)
    config = StitchTrainConfig(batch_size=2, view_choices=(1, 5), vae_size=8, recon_size=14, seed=0)
    seen_views = set()
    for step in range(6):
        vae_frames, recon_frames, views = sample_batch(pool, config, step)
        assert vae_frames.shape == (2, views, 3, 8, 8) and recon_frames.shape == (2, views, 3, 14, 14)
        seen_views.add(views)
    assert seen_views == {1, 5}
    # without the pool the same dataset renders on access
    with pytest.raises(AssertionError, match="rendered"):
        sample_batch(resolve_clips("synthetic", 2, 5, 16, seed=3), config, 0)
