"""SyntheticClips: determinism per (seed, index), splits, captions, cameras, DataLoader use."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from vist3a.data import EqualLengthBatchSampler, SyntheticClips, collate_clips, valid_depth
from vist3a.world import Scene, is_heldout


def test_items_are_deterministic_per_seed_and_index():
    a = SyntheticClips(4, num_frames=5, size=16, seed=3)
    b = SyntheticClips(4, num_frames=5, size=16, seed=3)
    x, y = a[2], b[2]
    assert torch.equal(x.frames, y.frames) and torch.equal(x.depth, y.depth) and torch.equal(x.w2c, y.w2c)
    assert x.caption == y.caption and x.meta == y.meta
    assert x.meta["scene_json"] != a[1].meta["scene_json"]
    assert x.meta["scene_json"] != SyntheticClips(4, num_frames=5, size=16, seed=4)[2].meta["scene_json"]


def test_item_contents_are_consistent():
    ds = SyntheticClips(3, num_frames=5, size=16, seed=0)
    clip = ds[0]
    assert clip.frames.shape == (5, 3, 16, 16) and clip.depth.shape == (5, 16, 16)
    assert clip.w2c.shape == (5, 4, 4) and clip.K.shape == (5, 3, 3) and clip.w2c.dtype == torch.float32
    assert clip.frames.min() >= 0 and clip.frames.max() <= 1
    assert valid_depth(clip.depth).any() and torch.isinf(clip.depth[~valid_depth(clip.depth)]).all()
    scene = Scene.from_json(clip.meta["scene_json"])
    for obj in scene.objects:
        assert obj.colour in clip.caption and obj.shape in clip.caption
    # the scene centre is in front of the first camera and projects inside the image
    centre = torch.tensor(scene.centre, dtype=torch.float32)
    cam = clip.w2c[0, :3, :3] @ centre + clip.w2c[0, :3, 3]
    u = clip.K[0, 0, 0] * cam[0] / cam[2] + clip.K[0, 0, 2]
    v = clip.K[0, 1, 1] * cam[1] / cam[2] + clip.K[0, 1, 2]
    assert cam[2] > 0 and 0 <= u <= 15 and 0 <= v <= 15
    # a frame-count key keeps the scene and changes only the path's length
    longer = ds[(0, 9)]
    assert longer.num_frames == 9 and longer.meta["scene_json"] == clip.meta["scene_json"]


def test_splits_are_disjoint():
    train = SyntheticClips(6, num_frames=1, size=8, seed=0, split="train")
    held = SyntheticClips(6, num_frames=1, size=8, seed=0, split="heldout")
    for i in range(6):
        assert not is_heldout(Scene.from_json(train[i].meta["scene_json"]).composition)
        assert is_heldout(Scene.from_json(held[i].meta["scene_json"]).composition)


def test_dataloader_with_equal_length_batches():
    ds = SyntheticClips(5, num_frames=(1, 5), size=8, seed=1)
    loader = DataLoader(ds, batch_sampler=EqualLengthBatchSampler(len(ds), 2, choices=(1, 5), seed=0),
                        collate_fn=collate_clips)
    sizes = []
    for batch in loader:
        T = batch.frames.shape[1]
        assert batch.depth.shape[1] == T and batch.w2c.shape[1] == T and len(batch.captions) == batch.frames.shape[0]
        sizes.append(batch.frames.shape[0])
    assert sorted(sizes) == [1, 2, 2]


def test_batched_fetch_equals_item_by_item():
    ds = SyntheticClips(4, num_frames=(1, 5), size=8, seed=2, batch_render=True, render_batch_size=2)
    keys = [0, (1, 5), 2, (3, 5)]
    together = ds.__getitems__(keys)
    for key, clip in zip(keys, together, strict=True):
        alone = ds[key]
        assert clip.meta == alone.meta and clip.caption == alone.caption and torch.equal(clip.w2c, alone.w2c)
        assert torch.equal(torch.isfinite(clip.depth), torch.isfinite(alone.depth))
        assert (clip.frames - alone.frames).abs().max() < 1e-3


def test_direction_focus_draws_two_objects_related_by_left_or_right():
    """With ``direction_focus`` 1 every scene is a two-object left/right scene of its split, stated in the caption;
    with 0 the items are exactly those of the default dataset."""
    for split in ("train", "heldout"):
        ds = SyntheticClips(12, num_frames=1, size=8, seed=5, split=split, direction_focus=1.0)
        for i in range(len(ds)):
            item = ds[i]
            comp = Scene.from_json(item.meta["scene_json"]).composition
            assert len(comp.objects) == 2 and [r.relation in ("left of", "right of") for r in comp.relations] == [True]
            assert is_heldout(comp) == (split == "heldout")
            assert " left" in item.caption or " right" in item.caption
    plain, zero = SyntheticClips(5, num_frames=1, size=8, seed=5), SyntheticClips(5, 1, 8, seed=5, direction_focus=0.0)
    assert [plain[i].meta for i in range(5)] == [zero[i].meta for i in range(5)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="`split`"):
        SyntheticClips(2, split="test")
    with pytest.raises(ValueError, match="4n"):
        SyntheticClips(2, num_frames=6)
    with pytest.raises(ValueError, match="`camera_kinds`"):
        SyntheticClips(2, camera_kinds=("spin",))
    with pytest.raises(ValueError, match="`direction_focus`"):
        SyntheticClips(2, direction_focus=1.5)
