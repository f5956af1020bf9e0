"""Video writing (read back with imageio) and depth colourisation."""

from __future__ import annotations

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vist3a import media
from vist3a.media import depth_to_colormap, write_video


def _frames(t=6, h=34, w=46):
    """Smooth frames (codec-friendly): a moving horizontal wave with distinct channels."""
    x = np.linspace(0, 1, w)[None, None, :, None]
    shift = np.arange(t)[:, None, None, None] / t
    shape = (t, h, w, 1)
    channels = [0.5 + 0.4 * np.sin(2 * np.pi * (x + shift)), 1 - x, np.full_like(x, 0.5)]
    return np.concatenate([np.broadcast_to(c, shape) for c in channels], -1)


@pytest.mark.skipif(not media.ffmpeg_available(), reason="no ffmpeg binary")
def test_mp4_round_trip_float_frames(tmp_path):
    frames = _frames()
    path = write_video(tmp_path / "v.mp4", torch.from_numpy(frames).float(), fps=12)
    assert path.suffix == ".mp4"
    back = np.stack(list(iio.imiter(path)))
    assert back.shape == (6, 34, 46, 3)
    assert np.abs(back.astype(float) / 255 - frames).mean() < 0.03  # lossy codec, but the same picture


@pytest.mark.skipif(not media.ffmpeg_available(), reason="no ffmpeg binary")
def test_odd_sizes_are_padded_to_even(tmp_path):
    frames = (_frames(h=17, w=23) * 255).astype(np.uint8)
    path = write_video(tmp_path / "odd.mp4", frames, fps=24)
    first = next(iter(iio.imiter(path)))
    assert first.shape == (18, 24, 3)


def test_gif_fallback_without_ffmpeg(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(media, "ffmpeg_available", lambda: False)
    frames = (_frames(t=3) * 255).astype(np.uint8)
    path = write_video(tmp_path / "v.mp4", frames, fps=10)
    assert path == tmp_path / "v.gif" and not (tmp_path / "v.mp4").exists()
    assert "no ffmpeg" in caplog.text
    back = iio.imread(path, index=None)
    assert back.shape[:3] == (3, 34, 46)
    assert np.abs(back[..., :3].astype(int) - frames.astype(int)).mean() < 8  # GIF palette quantisation


def test_write_video_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match="frames must have shape"):
        write_video(tmp_path / "a.mp4", np.zeros((4, 4, 3)), fps=5)
    with pytest.raises(ValueError, match="must end in one of"):
        write_video(tmp_path / "a.avi", np.zeros((1, 4, 4, 3)), fps=5)
    assert list(tmp_path.iterdir()) == []


def test_depth_to_colormap_range_and_masking():
    depth = np.tile(np.linspace(1.0, 5.0, 50), (4, 1))
    depth[0, 0] = 0.0  # no hit
    depth[1, 1] = np.inf
    rgb = depth_to_colormap(depth, percentiles=(0.0, 100.0), cmap="gray")
    assert rgb.shape == (4, 50, 3) and rgb.dtype == np.uint8
    assert (rgb[0, 0] == 0).all() and (rgb[1, 1] == 0).all()
    assert rgb[2, 0, 0] == 255 and rgb[2, -1, 0] == 0  # near is bright, far is dark
    assert np.all(np.diff(rgb[2, :, 0].astype(int)) <= 0)
    far_bright = depth_to_colormap(depth, depth_range=(1.0, 5.0), cmap="gray", near_is_bright=False)
    assert far_bright[2, -1, 0] == 255
    # one shared range for a batch: the same depth gets the same colour in every frame
    batch = np.stack([depth, depth * 2])
    rgb_b = depth_to_colormap(batch, valid=batch < 6.0)
    assert rgb_b.shape == (2, 4, 50, 3)
    assert (rgb_b[1][batch[1] >= 6.0] == 0).all()
