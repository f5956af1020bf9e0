"""The in-memory clip cache keeps what the stages need, in compact form."""

from __future__ import annotations

import torch

from vist3a.data import MultiViewClip
from vist3a.nano.clips import ClipCache


def _clip(seed: int) -> MultiViewClip:
    gen = torch.Generator().manual_seed(seed)
    depth = torch.rand(5, 8, 8, generator=gen) * 4 + 1
    depth[:, 0, 0] = float("inf")  # background pixel
    return MultiViewClip(frames=torch.rand(5, 3, 8, 8, generator=gen), w2c=torch.eye(4).repeat(5, 1, 1),
                         K=torch.eye(3).repeat(5, 1, 1), depth=depth, caption=f"clip {seed}",
                         meta={"composition": f"composition {seed}"})


def test_cache_round_trip_within_storage_precision():
    clips = [_clip(0), _clip(1), _clip(2)]
    cache = ClipCache.from_clips(clips)
    assert cache.frames.dtype == torch.uint8 and len(cache) == 3
    batch = cache.batch([2, 0])
    assert (batch.frames - torch.stack([clips[2].frames, clips[0].frames])).abs().max() <= 0.5 / 255 + 1e-6
    ref = torch.stack([clips[2].depth, clips[0].depth])
    finite = torch.isfinite(ref)
    assert torch.equal(torch.isinf(batch.depth), ~finite)
    assert torch.allclose(batch.depth[finite], ref[finite], rtol=1e-3)
    assert batch.captions == ["clip 2", "clip 0"]
    assert [m["composition"] for m in batch.meta] == ["composition 2", "composition 0"]


def test_cache_is_a_clip_sequence():
    cache = ClipCache.from_clips([_clip(0), _clip(1)])
    item = cache[1]
    assert isinstance(item, MultiViewClip) and item.caption == "clip 1"
    assert item.frames.shape == (5, 3, 8, 8) and item.depth.shape == (5, 8, 8)
    assert cache[-1].caption == "clip 1"


def test_sample_draws_distinct_clips_reproducibly():
    cache = ClipCache.from_clips([_clip(i) for i in range(6)])
    a = cache.sample(4, torch.Generator().manual_seed(3)).captions
    b = cache.sample(4, torch.Generator().manual_seed(3)).captions
    assert a == b and len(set(a)) == 4
    assert len(cache.sample(9, torch.Generator().manual_seed(0)).captions) == 9  # with replacement


def test_world_cache_has_cameras_depth_and_captions(tiny_caches):
    train, held = tiny_caches
    assert train.w2c.shape == (4, 5, 4, 4) and train.depth.shape == (4, 5, 16, 16)
    assert all(train.captions) and all(held.compositions)


def test_stream_delivers_exactly_the_requested_clips():
    import time

    import pytest

    from vist3a.data import SyntheticClips
    from vist3a.nano.clips import ClipStream

    dataset = SyntheticClips(6, 5, 16, seed=3)
    expected = ClipCache.build(dataset, progress=False)
    batches = []
    with ClipStream(dataset, start=2, count=4, num_workers=0, chunk_size=3) as stream:
        deadline = time.monotonic() + 60
        while not stream.finished and time.monotonic() < deadline:
            batches += stream.poll()
            time.sleep(0.01)
        batches += stream.poll()
        assert stream.received == 4
    got = ClipCache.from_batches(batches)
    assert torch.equal(got.frames, expected.frames[2:6])
    assert torch.equal(got.w2c, expected.w2c[2:6])
    assert got.captions == expected.captions[2:6]
    with pytest.raises(ValueError, match="not all in a dataset of 6"):
        ClipStream(dataset, start=4, count=3)
    with pytest.raises(ValueError, match="storage form"):
        ClipCache.from_batches([expected.batch([0])])
