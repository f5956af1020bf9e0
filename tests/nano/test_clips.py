"""The in-memory clip cache keeps what the stages need, in compact form."""

from __future__ import annotations

import os

import pytest
import torch

from vist3a.data import MultiViewClip
from vist3a.data.cache import ClipCache


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

    from vist3a.data import SyntheticClips
    from vist3a.data.cache import ClipStream

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


def test_mirror_caption_swaps_only_left_and_right():
    from vist3a.world import mirror_caption

    text = "The camera orbits around a red cube to the left of a blue sphere and a green cone on its right."
    assert mirror_caption(text) == text.replace("left", "@").replace("right", "left").replace("@", "right")
    assert mirror_caption("a bright cube behind a sphere") == "a bright cube behind a sphere"
    assert mirror_caption(mirror_caption(text)) == text


def test_mirror_batch_is_the_mirrored_scene_seen_by_the_mirrored_cameras(tiny_caches):
    """A pixel's world point, mirrored across x = 0, projects through the mirrored camera onto the mirrored pixel
    at the same depth; frames/depth flip with it; mirroring twice is the identity."""
    from vist3a.cameras import invert_rigid
    from vist3a.data.cache import mirror_batch

    batch = tiny_caches[0].batch(range(2))
    mirrored = mirror_batch(batch)
    width = batch.frames.shape[-1]
    assert torch.equal(mirrored.frames, batch.frames.flip(-1))
    rot = mirrored.w2c[..., :3, :3]
    assert torch.allclose(torch.linalg.det(rot), torch.ones(rot.shape[:-2]), atol=1e-5)
    b, t = 1, 2
    v, u = (int(i) for i in torch.nonzero(torch.isfinite(batch.depth[b, t]) & (batch.depth[b, t] > 0))[0])
    assert u != (width - 1) / 2  # a pixel that actually moves
    z = float(batch.depth[b, t, v, u])
    K, w2c = batch.K[b, t], batch.w2c[b, t]
    cam = torch.tensor([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z, 1.0])
    world = torch.cat((invert_rigid(w2c[:3]), torch.tensor([[0.0, 0.0, 0.0, 1.0]]))) @ cam
    world[0] = -world[0]
    p = mirrored.w2c[b, t] @ world
    Km = mirrored.K[b, t]
    assert float(p[2]) == pytest.approx(z, rel=1e-4)
    assert float(Km[0, 0] * p[0] / p[2] + Km[0, 2]) == pytest.approx(width - 1 - u, abs=1e-3)
    assert float(Km[1, 1] * p[1] / p[2] + Km[1, 2]) == pytest.approx(v, abs=1e-3)
    assert float(mirrored.depth[b, t, v, width - 1 - u]) == z
    again = mirror_batch(mirrored)
    assert torch.allclose(again.w2c, batch.w2c) and torch.allclose(again.K, batch.K)
    assert again.captions == batch.captions


def test_mirrored_clip_shows_the_swapped_relation():
    """In the first (canonical) view of "a red cube left of a blue sphere", red is left of blue; in the mirrored
    clip, whose caption now says "right of", it is right of blue."""
    from vist3a.data import ClipBatch
    from vist3a.data.cache import mirror_batch
    from vist3a.world import Composition, render_clip, sample_camera_path, scene_from_composition

    scene = scene_from_composition(Composition.of(("red", "cube"), "left of", ("blue", "sphere")), 0)
    w2c, K = sample_camera_path("dolly_in", 5, 0, height=48, width=48, target=scene.centre, scene_radius=scene.radius)
    frames, depth = render_clip(scene, w2c, K, 48, 48)
    batch = ClipBatch(frames[None], w2c[None], K[None], depth[None], ["a red cube left of a blue sphere"], [{}])
    mirrored = mirror_batch(batch)
    assert mirrored.captions == ["a red cube right of a blue sphere"]

    def centre_x(image, colour):
        mask = (image - torch.tensor(colour).view(3, 1, 1)).norm(dim=0) < 0.35
        return float(torch.arange(image.shape[-1]).float().expand_as(mask)[mask].mean())

    red, blue = (0.8, 0.1, 0.1), (0.15, 0.2, 0.85)
    assert centre_x(batch.frames[0, 0], red) < centre_x(batch.frames[0, 0], blue)
    assert centre_x(mirrored.frames[0, 0], red) > centre_x(mirrored.frames[0, 0], blue)


def test_cpu_rendering_starts_at_most_one_worker_per_core(monkeypatch):
    """``data_workers`` (default 8, for the GPU machine's 16 cores) is capped at the cores on a small machine."""
    from vist3a.data import cache

    started = []
    monkeypatch.setattr(cache, "_usable_cores", lambda: 2)
    monkeypatch.setattr(cache.ClipCache, "build", classmethod(lambda cls, dataset, count, device, num_workers=0,
                                                              **kwargs: started.append(num_workers) or []))
    cache.make_caches(2, 1, 5, 32, 0, torch.device("cpu"), num_workers=8, train_dataset=[], eval_dataset=[])
    cache.make_caches(2, 1, 5, 32, 0, torch.device("cpu"), num_workers=1, train_dataset=[], eval_dataset=[])
    assert started == [2, 2, 1, 1]
    assert 1 <= cache._usable_cores() <= (os.cpu_count() or 1)
