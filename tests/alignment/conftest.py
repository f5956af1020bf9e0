"""Fixtures of the alignment tests: tiny generators (fresh copies), a cheap scene decoder, tiny clips."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from vist3a.alignment.components import AlignComponents
from vist3a.alignment.scene import DecodedScene
from vist3a.alignment.scorers import TinyImageTextScorer
from vist3a.data import MultiViewClip

NUM_FRAMES, SIZE = 5, 32  # latents [16, 2, 4, 4]


@pytest.fixture(scope="session")
def _base_generator():
    from vist3a.video.tiny import build_tiny_generator

    return build_tiny_generator(seed=0, text_max_length=48, device="cpu")


@pytest.fixture
def make_generator(_base_generator):
    """A function returning a fresh deep copy of the tiny generator (trainers inject LoRA in place)."""
    return lambda: copy.deepcopy(_base_generator)


class CheapSceneDecoder:
    """A differentiable stand-in for VAE + stitched decoder + renderer (no 3D, milliseconds on a CPU).

    ``frames`` = sigmoid of the latents' first 3 channels, repeated over time and upsampled;
    ``render(views)`` = a blurred, dimmed copy of those frames (so decoded and rendered differ).
    """

    def __init__(self, num_frames: int = NUM_FRAMES, size: int = SIZE) -> None:
        self.num_frames, self.size = num_frames, size
        self.calls = 0

    def decode(self, raw_latents: torch.Tensor) -> DecodedScene:
        self.calls += 1
        x = torch.sigmoid(raw_latents[:, :3])  # [B, 3, T_lat, h, w]
        x = F.interpolate(x, size=(self.num_frames, self.size, self.size), mode="trilinear", align_corners=True)
        return DecodedScene(frames=x.permute(0, 2, 1, 3, 4), gaussians=[], w2c=None, K=None)

    def render(self, scene: DecodedScene, views) -> torch.Tensor:
        images = scene.frames[:, list(views)]
        blurred = F.avg_pool2d(images.flatten(0, 1), 3, stride=1, padding=1).view_as(images)
        return 0.8 * blurred


class TinyClips(Dataset):
    """Random captioned clips of ``NUM_FRAMES`` x ``SIZE``^2, item ``i`` a pure function of ``i``."""

    def __init__(self, count: int = 4) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int) -> MultiViewClip:
        g = torch.Generator().manual_seed(1000 + index)
        frames = torch.rand(NUM_FRAMES, 3, SIZE, SIZE, generator=g)
        return MultiViewClip(frames=frames, caption=f"clip number {index} of a room")


@pytest.fixture
def make_components(make_generator):
    """A function building :class:`AlignComponents` around a fresh tiny generator and cheap stand-ins."""

    def build(clips: bool = True) -> AlignComponents:
        scorer = TinyImageTextScorer(seed=0)
        return AlignComponents(
            generator=make_generator(),
            scene_decoder=CheapSceneDecoder(),
            scorer_for=lambda name: scorer,
            clips=TinyClips() if clips else None,
            num_frames=NUM_FRAMES,
            height=SIZE,
            width=SIZE,
            sources={"test": True},
        )

    return build
