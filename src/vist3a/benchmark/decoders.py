"""The two decoders the stitching tables compare, behind one call: frames in, 3D prediction out.

- ``original``: the reconstruction model on the frames themselves (resized to its input size).
- ``stitched``: the video VAE encodes the frames, the stitched decoder reads the latents (and, for AnySplat's
  Gaussian head, the frames). A video VAE needs ``4k + 1`` frames (:attr:`Decoder.frame_step` = 4).

Predictions are expressed at the **frames'** size: cameras ``w2c [V, 4, 4]`` (OpenCV) and pixel intrinsics
``K [V, 3, 3]`` with pixel centres at integer coordinates (rescaled from the model's input size), world pointmaps
``[V, H, W, 3]`` resized to the frames (nearest), and the Gaussians (AnySplat decoders).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vist3a.errors import UserInputError


@dataclass
class Prediction:
    """One decoder output for ``V`` views of ``H x W`` frames (see the module docstring); CPU float32."""

    w2c: torch.Tensor
    K: torch.Tensor
    points: torch.Tensor | None
    gaussians: Any = None


def _prediction(out: Any, frames_hw: tuple[int, int]) -> Prediction:
    """Batch element 0 of an AnySplat / VGGT output as a :class:`Prediction` at ``frames_hw``."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous
    from vist3a.data.clip import crop_resize_intrinsics

    height, width = frames_hw
    model_h, model_w = (int(s) for s in out.depth.shape[-2:])
    K = crop_resize_intrinsics(K_from_edge_convention(out.cameras.K[0].float()), (0, 0),
                               (width / model_w, height / model_h))
    points = getattr(out, "points", None)
    if points is None:
        points = getattr(out, "world_points", None)
    if points is not None:
        points = F.interpolate(points[0].float().permute(0, 3, 1, 2), size=frames_hw, mode="nearest-exact")
        points = points.permute(0, 2, 3, 1).cpu()
    gaussians = getattr(out, "gaussians", None)
    return Prediction(to_homogeneous(out.cameras.w2c[0].float()).cpu(), K.cpu(), points,
                      gaussians[0].detach().to(device="cpu", dtype=torch.float32) if gaussians is not None else None)


def check_view_count(name: str, frame_step: int, count: int, what: str) -> None:
    """One clear error when ``count`` views are not ``1 + k * frame_step`` (a video VAE's frame rule)."""
    if (count - 1) % frame_step:
        raise UserInputError(f"the {name} decoder reads video latents and needs {frame_step}k+1 views, but {what} "
                             f"has {count}; choose --context/--targets (or --frames) so that the context and "
                             "context+targets are both 4k+1 (e.g. 9 and 4)")


class Decoder:
    """``decoder(frames [V, 3, H, W] in [0, 1]) -> Prediction``; ``frame_step``: V must be ``1 + k * step``."""

    name: str = "decoder"
    frame_step: int = 1

    def check_views(self, count: int, what: str) -> None:
        check_view_count(self.name, self.frame_step, count, what)

    def __call__(self, frames: torch.Tensor) -> Prediction:
        raise NotImplementedError


class OriginalDecoder(Decoder):
    """A recon model (AnySplat / VGGT) on frames resized to its square input ``size``."""

    name = "original"

    def __init__(self, model: torch.nn.Module, size: int) -> None:
        self.model, self.size = model.eval(), size

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> Prediction:
        param = next(self.model.parameters())
        x = F.interpolate(frames.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=self.size < min(frames.shape[-2:])).clamp(0, 1)
        out = self.model(x[None].to(param.device, param.dtype))
        return _prediction(out, tuple(frames.shape[-2:]))


class StitchedLatentDecoder(Decoder):
    """A :class:`~vist3a.stitching.StitchedDecoder` on the VAE posterior means of the frames."""

    name = "stitched"
    frame_step = 4

    def __init__(self, decoder: torch.nn.Module, encode: Any, frame_step: int = 4) -> None:
        self.decoder, self.encode, self.frame_step = decoder.eval(), encode, frame_step

    @torch.no_grad()
    def __call__(self, frames: torch.Tensor) -> Prediction:
        self.check_views(frames.shape[0], "the clip")
        param = next(self.decoder.parameters())
        latents = self.encode(frames[None].float())
        out = self.decoder(latents.to(param.device, param.dtype), frames[None].to(param.device, param.dtype))
        return _prediction(out, tuple(frames.shape[-2:]))


def preset_sizes(preset: str | dict[str, Any]) -> tuple[int, int]:
    """``(frame size, recon size)`` of a preset's decoders, from its ``stitching`` block: the VAE input size the
    stitched decoder was fitted at (the clips are resized to it) and the plain 3D model's input size."""
    from vist3a.components import resolve_preset, stitching_sizes

    sizes = stitching_sizes(resolve_preset(preset))
    return int(sizes["vae_size"]), int(sizes["recon_size"])


def load_decoders(preset: str, names: tuple[str, ...], device: torch.device) -> list[Decoder]:
    """Decoders ``names`` ("stitched", "original") of a preset, its models from the component registry
    (:func:`vist3a.components.load_components`): the stitched decoder reads the posterior means of the preset's VAE
    (parts ``vae`` + ``stitched``), the original one is the plain 3D model (part ``recon``) at the preset's
    ``stitching.recon_size``. Missing weights are one ``UserInputError`` from the preset's provider."""
    from vist3a.components import load_components
    from vist3a.stitching.features import encode_latents
    from vist3a.video.frames import vae_scale_factors

    unknown = sorted(set(names) - {"stitched", "original"})
    if unknown:
        raise UserInputError(f"unknown decoders {unknown}; use stitched and/or original")
    parts = ({"recon"} if "original" in names else set()) | ({"vae", "stitched"} if "stitched" in names else set())
    components = load_components(preset, parts, device=device)
    out: list[Decoder] = []
    for name in names:
        if name == "original":
            _, recon_size = preset_sizes(components.preset)
            out.append(OriginalDecoder(components.recon.to(device), recon_size))
        else:
            vae = components.vae.to(device).eval()
            temporal, _ = vae_scale_factors(vae.config)
            out.append(StitchedLatentDecoder(components.stitched.to(device),
                                             lambda x, vae=vae: encode_latents(vae, x, sample=False).float(), temporal))
    return out
