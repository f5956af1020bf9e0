"""Evaluation data: the RealEstate10K chunk layout (written here) and the nano held-out clips."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vist3a.benchmark.eval_data import check_data, eval_clips, parse_data, re10k_cameras
from vist3a.cameras import look_at_w2c
from vist3a.errors import UserInputError


def camera_rows(w2c: torch.Tensor, K: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The pixelSplat row layout written from pixel intrinsics with integer centres (the inverse mapping)."""
    rows = torch.zeros(w2c.shape[0], 18)
    rows[:, 0], rows[:, 1] = K[:, 0, 0] / width, K[:, 1, 1] / height
    rows[:, 2], rows[:, 3] = (K[:, 0, 2] + 0.5) / width, (K[:, 1, 2] + 0.5) / height
    rows[:, 6:] = w2c[:, :3].reshape(-1, 12)
    return rows


def write_re10k(root, scenes: dict[str, int], height=30, width=40):
    gen = torch.Generator().manual_seed(0)
    data, truth = [], {}
    for key, frames in scenes.items():
        eyes = [torch.tensor([float(i), 0.2, -3.0]) for i in range(frames)]
        w2c = torch.stack([look_at_w2c(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
        K = torch.tensor([[35.0, 0.0, 19.5], [0.0, 34.0, 14.5], [0.0, 0.0, 1.0]]).expand(frames, 3, 3).clone()
        images = [torch.from_numpy(np.frombuffer(iio.imwrite("<bytes>", (torch.rand(height, width, 3, generator=gen)
                                                                         * 255).byte().numpy(), extension=".jpg"),
                                                 dtype=np.uint8).copy()) for _ in range(frames)]
        data.append({"key": key, "url": "", "timestamps": torch.arange(frames), "cameras": camera_rows(w2c, K, height,
                     width), "images": images})
        truth[key] = (w2c, K)
    torch.save(data, root / "000000.torch")
    return truth


def test_re10k_camera_rows_round_trip():
    w2c = look_at_w2c(torch.tensor([1.0, 2.0, -3.0]), torch.zeros(3), torch.tensor([0.0, -1.0, 0.0]))[None]
    K = torch.tensor([[[50.0, 0.0, 31.5], [0.0, 48.0, 23.5], [0.0, 0.0, 1.0]]])
    got_w2c, got_K = re10k_cameras(camera_rows(w2c, K, 48, 64), 48, 64)
    torch.testing.assert_close(got_w2c, w2c)
    torch.testing.assert_close(got_K, K)


def test_re10k_clips_follow_the_evaluation_index(tmp_path):
    truth = write_re10k(tmp_path, {"a": 20, "b": 20, "c": 8})
    (tmp_path / "evaluation_index_re10k.json").write_text(json.dumps(
        {"a": None, "b": {"context": [2, 14], "target": [5, 9]}, "c": {"context": [0, 7], "target": [3]}}))
    clips = eval_clips(f"re10k:{tmp_path}", num_clips=4, num_frames=13, size=16)
    assert [c.meta["key"] for c in clips] == ["b"]  # a has no span, c's span is too short
    clip = clips[0]
    assert clip.meta["frames"] == list(range(2, 15)) and clip.frames.shape == (13, 3, 16, 16)
    torch.testing.assert_close(clip.w2c, truth["b"][0][2:15])
    # centre crop 30x40 -> 30x30 (x0 = 5), resize by 16/30: cx' = (19.5 - 5 + 0.5) * 16/30 - 0.5
    assert float(clip.K[0, 0, 2]) == pytest.approx((19.5 - 5 + 0.5) * 16 / 30 - 0.5, abs=1e-5)
    assert float(clip.K[0, 0, 0]) == pytest.approx(35.0 * 16 / 30, abs=1e-5)


def test_data_specs_are_checked():
    assert parse_data("nano") == ("nano", None) and parse_data("re10k:/x") == ("re10k", "/x")
    assert parse_data("7scenes:/x") == ("7scenes", "/x")
    for bad, message in (("scannet", "needs a folder"), ("re10k", "needs a folder"),
                         ("nano:/x", "takes no folder"), ("foo", "must be nano")):
        with pytest.raises(UserInputError, match=message):
            parse_data(bad)
    # the benchmark folders are looked into before any model loads
    for kind in ("7scenes", "eth3d", "scannet"):
        with pytest.raises(UserInputError, match=f"--data {kind}:/nonexistent: not a folder; expected SCENE/"):
            check_data(f"{kind}:/nonexistent")


def test_nano_clips_are_heldout_posed_and_deterministic():
    a = eval_clips("nano", 2, 5, 16, seed=3)
    b = eval_clips("nano", 2, 5, 16, seed=3)
    assert all(c.meta["split"] == "heldout" and c.depth is not None for c in a)
    torch.testing.assert_close(a[1].frames, b[1].frames)
