"""From a rollout's raw latents to the two image sources the rewards compare: decoded frames and renders.

:class:`StitchedSceneDecoder` runs the frozen, differentiable chain of the product path:

    raw latents [B, C, T_lat, h, w]
      -> VAE decode (optionally checkpointed)         frames [B, T, 3, H, W] in [0, 1]
      -> StitchedDecoder(raw latents, frames)         Gaussians + predicted cameras (w2c, K) per frame
      -> splats.render at the predicted cameras       renders of chosen frames

Gradients flow from both image sources back to the latents (and so, through the rollout, to the LoRA weights);
no parameter of the VAE or the stitched decoder is trained. Any object with the same two methods
(:class:`SceneDecoder`) can replace it, e.g. in tests.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch.utils.checkpoint import checkpoint

from vist3a.data.clip import crop_resize_intrinsics
from vist3a.splats import Gaussians, render
from vist3a.stitching.decoder import resize_frames

logger = logging.getLogger(__name__)


@dataclass
class DecodedScene:
    """A decoded rollout.

    Attributes:
        frames: ``[B, T, 3, H, W]`` VAE-decoded frames in ``[0, 1]`` at the render size ``(H, W)``.
        gaussians: one :class:`~vist3a.splats.Gaussians` per rollout (empty list when the model makes none).
        w2c: ``[B, T, 3 or 4, 4]`` predicted world-to-camera extrinsics (OpenCV) of each frame.
        K: ``[B, T, 3, 3]`` predicted pixel intrinsics at the render size.
    """

    frames: torch.Tensor
    gaussians: list[Gaussians]
    w2c: torch.Tensor | None
    K: torch.Tensor | None

    @property
    def render_hw(self) -> tuple[int, int]:
        return int(self.frames.shape[-2]), int(self.frames.shape[-1])


@runtime_checkable
class SceneDecoder(Protocol):
    """What the trainer needs: ``decode(raw_latents) -> DecodedScene`` and ``render(scene, views) -> images``."""

    def decode(self, raw_latents: torch.Tensor) -> DecodedScene: ...

    def render(self, scene: DecodedScene, views: Sequence[int]) -> torch.Tensor:
        """``[B, k, 3, H, W]`` renders in ``[0, 1]`` at the predicted cameras of frame indices ``views``."""
        ...


class StitchedSceneDecoder:
    """VAE decode + stitched decoder + Gaussian rendering (see the module docstring).

    Args:
        decode_video: raw latents ``[B, C, T_lat, h, w]`` -> frames ``[B, T, 3, H, W]`` in ``[0, 1]``
            (e.g. :meth:`vist3a.video.WanGenerator.decode`); runs under the caller's grad mode.
        stitched: a :class:`~vist3a.stitching.decoder.StitchedDecoder` whose outputs have ``gaussians`` and
            ``cameras`` (AnySplat); it is frozen here (``requires_grad_(False)``, eval).
        render_size: ``(H, W)`` or one side of the renders and of the compared frames; ``None``: the stitched
            model's input size.
        backend: :func:`vist3a.splats.render` backend (``"auto"``: gsplat on CUDA when installed).
        background: render background colour ``[3]`` in ``[0, 1]`` (default black).
        checkpoint_vae: recompute the VAE decode in the backward pass instead of keeping its activations
            while the stitched decoder, renderer and scorers run (diffusers' Wan VAE has no block-level
            checkpointing); costs one extra decode per step.
        decoder_kwargs: extra keyword arguments of the stitched decoder's forward (e.g. ``voxelize``).
    """

    def __init__(
        self,
        decode_video: Callable[[torch.Tensor], torch.Tensor],
        stitched: torch.nn.Module,
        *,
        render_size: int | tuple[int, int] | None = None,
        backend: str = "auto",
        background: Sequence[float] | None = None,
        checkpoint_vae: bool = True,
        decoder_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        self.decode_video = decode_video
        self.stitched = stitched.eval().requires_grad_(False)
        if isinstance(render_size, int):
            render_size = (render_size, render_size)
        if render_size is not None and (len(render_size) != 2 or min(render_size) < 1):
            raise ValueError(f"`render_size` must be None, a positive int or (H, W), got {render_size!r}")
        self.render_size = None if render_size is None else (int(render_size[0]), int(render_size[1]))
        self.backend = backend
        self.background = None if background is None else torch.tensor(list(background), dtype=torch.float32)
        self.checkpoint_vae = checkpoint_vae
        self.decoder_kwargs = dict(decoder_kwargs or {})

    def _decode_frames(self, raw_latents: torch.Tensor) -> torch.Tensor:
        if self.checkpoint_vae and torch.is_grad_enabled() and raw_latents.requires_grad:
            return checkpoint(self.decode_video, raw_latents, use_reentrant=False)
        return self.decode_video(raw_latents)

    def decode(self, raw_latents: torch.Tensor) -> DecodedScene:
        """Raw latents ``[B, C, T_lat, h, w]`` -> :class:`DecodedScene` (frames, Gaussians, cameras)."""
        frames = self._decode_frames(raw_latents).float()  # [B, T, 3, H, W]
        out = self.stitched(raw_latents, frames, **self.decoder_kwargs)
        gaussians = getattr(out, "gaussians", None)
        cameras = getattr(out, "cameras", None)
        if gaussians is None or cameras is None:
            raise ValueError(
                f"the stitched decoder returns {type(out).__name__} without Gaussians or cameras; rendered rewards "
                "need an AnySplat-type model"
            )
        model_hw = tuple(int(v) for v in out.depth.shape[-2:]) if getattr(out, "depth", None) is not None else None
        model_hw = model_hw or self.stitched.image_size(tuple(raw_latents.shape[-2:]))
        target_hw = self.render_size or model_hw
        K = cameras.K.float()
        if target_hw != model_hw:
            K = crop_resize_intrinsics(K, (0, 0), (target_hw[1] / model_hw[1], target_hw[0] / model_hw[0]))
        return DecodedScene(
            frames=resize_frames(frames, target_hw), gaussians=list(gaussians), w2c=cameras.w2c.float(), K=K
        )

    def render(self, scene: DecodedScene, views: Sequence[int]) -> torch.Tensor:
        """``[B, k, 3, H, W]`` renders in ``[0, 1]`` of frame indices ``views`` at their predicted cameras."""
        views = list(views)
        if not views:
            raise ValueError("`views` must name at least one frame to render, got none")
        height, width = scene.render_hw
        images = []
        device_type = scene.frames.device.type
        for b, splats in enumerate(scene.gaussians):
            with torch.autocast(device_type, enabled=False):  # rasterise in float32 even under bf16 autocast
                out = render(
                    splats.to(dtype=torch.float32), scene.w2c[b, views], scene.K[b, views], width, height,
                    backend=self.backend, background=self.background,
                )
            images.append(out.colors.clamp(0.0, 1.0).permute(0, 3, 1, 2))  # [k, 3, H, W]
        return torch.stack(images)
