"""FolderClips on tiny videos and image folders written by the test (each frame encodes its own index)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vist3a.data import FolderClips, collate_clips
from vist3a.errors import UserInputError

LEVEL = 12  # grey level step per frame index


def _write_sequence(folder, n, size=(12, 16)):
    import imageio.v3 as iio

    folder.mkdir(parents=True)
    for i in range(n):
        frame = np.full((*size, 3), LEVEL * i, dtype=np.uint8)
        frame[0, 0] = (255, 0, 0)
        iio.imwrite(folder / f"frame_{i + 1}.png", frame)  # natural order: frame_2 before frame_10


def _write_video(path, n):
    import imageio.v3 as iio

    frames = np.stack([np.full((32, 32, 3), LEVEL * i, dtype=np.uint8) for i in range(n)])
    iio.imwrite(path, frames, fps=8)


def _decoded_index(frame: torch.Tensor) -> float:
    return float(frame[:, 4:, 4:].mean() * 255 / LEVEL)


def test_image_folders_yield_the_frames_named_in_meta(tmp_path):
    _write_sequence(tmp_path / "b_scene", 14)
    _write_sequence(tmp_path / "a_scene", 20)
    (tmp_path / "notes.txt").write_text("ignored")
    ds = FolderClips(tmp_path, num_frames=5, stride=(1, 2, 3), seed=0, captions={"a_scene": "a hallway"})
    assert len(ds) == 2 and [name for name, _, _ in ds.items] == ["a_scene", "b_scene"]
    for i in range(2):
        clip = ds[i]
        assert clip.frames.shape == (5, 3, 12, 16) and not clip.has_cameras and clip.depth is None
        for t, idx in enumerate(clip.meta["frame_indices"]):
            assert abs(_decoded_index(clip.frames[t]) - idx) < 1e-3
        assert torch.allclose(clip.frames[:, :, 0, 0], torch.tensor([1.0, 0.0, 0.0]).expand(5, 3))
    assert ds[0].caption == "a hallway" and ds[1].caption is None
    # deterministic per (seed, epoch, index), also across instances; new epochs draw new windows
    ds.set_epoch(5)
    ds2 = FolderClips(tmp_path, num_frames=5, stride=(1, 2, 3), seed=0)
    ds2.set_epoch(5)
    assert [ds[i].meta["frame_indices"] for i in range(2)] == [ds2[i].meta["frame_indices"] for i in range(2)]
    windows = set()
    for epoch in range(10):
        ds.set_epoch(epoch)
        windows.add(tuple(ds[0].meta["frame_indices"]))
    assert len(windows) > 3


def test_keys_with_frame_counts_resize_and_collate(tmp_path):
    _write_sequence(tmp_path / "s1", 12, size=(12, 16))
    _write_sequence(tmp_path / "s2", 12, size=(20, 10))
    ds = FolderClips(tmp_path, num_frames=(5, 9), size=8)
    batch = collate_clips([ds[(0, 9)], ds[(1, 9)]])
    assert batch.frames.shape == (2, 9, 3, 8, 8)
    assert ds[(1, 5)].num_frames == 5
    with pytest.raises(ValueError, match="4n"):
        ds[(0, 6)]
    with pytest.raises(IndexError):
        ds[2]


def test_root_with_images_is_one_sequence_and_short_sequences_fail_clearly(tmp_path):
    _write_sequence(tmp_path / "only", 7)
    ds = FolderClips(tmp_path / "only", num_frames=5, mode="spread")
    assert len(ds) == 1 and ds[0].meta["frame_indices"] == [0, 2, 3, 4, 6]
    with pytest.raises(ValueError, match="only 7"):
        FolderClips(tmp_path / "only", num_frames=9)[0]


def test_missing_or_empty_folders_are_user_errors(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        FolderClips(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no videos"):
        FolderClips(tmp_path / "empty")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "clip.mp4").write_text("not a video")
    with pytest.raises(UserInputError, match="cannot open video"):
        FolderClips(tmp_path / "bad")[0]


def test_mp4_videos(tmp_path):
    _write_video(tmp_path / "clip.mp4", 11)
    ds = FolderClips(tmp_path, num_frames=5, stride=2, seed=1)
    assert len(ds) == 1 and ds.num_available(0) == 11
    clip = ds[0]
    assert clip.frames.shape == (5, 3, 32, 32)
    assert clip.frames.min() >= 0.0 and clip.frames.max() <= 1.0
    # lossy video: grey levels survive within a fraction of one frame step
    for t, idx in enumerate(clip.meta["frame_indices"]):
        assert abs(_decoded_index(clip.frames[t]) - idx) < 0.5
