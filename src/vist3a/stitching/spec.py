"""Stitching-layer specs and the stitching layer itself.

A spec string names one 3D convolution that maps raw video-VAE latents onto the token grid of a
reconstruction model, for example ``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1``:

- ``k`` kernel size ``T x H x W``, ``o`` output channels (the token width of the stitched block),
- optional ``s`` stride, ``p`` padding, ``d`` dilation (each ``T x H x W`` or one number for all three axes).

The layer (:class:`StitchingLayer`) first resamples the latent ``[B, C, T_lat, h, w]`` trilinearly
(``align_corners=True``) to ``T = (T_lat - 1) * temporal_factor + 1`` frames, one slice per video frame, and
then applies the convolution with **replicate** padding, as the VIST3A release does. ``in_channels`` and
``temporal_factor`` default to the release checkpoint's (:data:`RELEASE_LATENT_CHANNELS`,
:data:`RELEASE_TEMPORAL_FACTOR`: the Wan 2.1 VAE); the stitching stages pass the values of the VAE in use
(:class:`~vist3a.video.vae_adapters.VideoVAEAdapter`: 48 channels for Wan 2.2, 4 and factor 1 for SVD, ...).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

Triple = tuple[int, int, int]

#: Latent channels and temporal factor of the released VIST3A checkpoint (its Wan 2.1 VAE); only defaults.
RELEASE_LATENT_CHANNELS = 16
RELEASE_TEMPORAL_FACTOR = 4

_SPEC_RE = re.compile(
    r"conv3d"
    r"_k(?P<k>\d+(?:x\d+){0,2})"
    r"_o(?P<o>\d+)"
    r"(?:_s(?P<s>\d+(?:x\d+){0,2}))?"
    r"(?:_p(?P<p>\d+(?:x\d+){0,2}))?"
    r"(?:_d(?P<d>\d+(?:x\d+){0,2}))?"
)
_GRAMMAR = (
    "conv3d_k<T>x<H>x<W>_o<C>[_s<T>x<H>x<W>][_p<T>x<H>x<W>][_d<T>x<H>x<W>], e.g. conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"
)


def _triple(text: str, field: str, spec: str) -> Triple:
    parts = [int(p) for p in text.split("x")]
    if len(parts) == 1:
        parts = parts * 3
    if len(parts) != 3:
        raise ValueError(f"stitching spec {spec!r}: {field} must have 1 or 3 values (T x H x W), got {text!r}")
    return (parts[0], parts[1], parts[2])


def _fmt(values: Triple) -> str:
    return "x".join(str(v) for v in values)


@dataclass(frozen=True)
class StitchSpec:
    """One Conv3d stitching layer: kernel/stride/padding/dilation as ``(T, H, W)`` triples (an int means all three).

    ``str(spec)`` gives the canonical spec string (all triples written out, ``_d`` only when not 1),
    and ``parse_spec(str(spec)) == spec``.
    """

    kernel: Triple
    out_channels: int
    stride: Triple = (1, 1, 1)
    padding: Triple = (0, 0, 0)
    dilation: Triple = (1, 1, 1)

    def __post_init__(self) -> None:
        for name, minimum in (("kernel", 1), ("stride", 1), ("padding", 0), ("dilation", 1)):
            raw = getattr(self, name)
            value = (raw, raw, raw) if isinstance(raw, int) else tuple(raw)
            if len(value) != 3 or any(not isinstance(v, int) or v < minimum for v in value):
                raise ValueError(f"StitchSpec.{name} must be 3 integers >= {minimum}, got {value!r}")
            object.__setattr__(self, name, value)
        if not isinstance(self.out_channels, int) or self.out_channels < 1:
            raise ValueError(f"StitchSpec.out_channels must be a positive integer, got {self.out_channels!r}")

    def __str__(self) -> str:
        text = f"conv3d_k{_fmt(self.kernel)}_o{self.out_channels}_s{_fmt(self.stride)}_p{_fmt(self.padding)}"
        if self.dilation != (1, 1, 1):
            text += f"_d{_fmt(self.dilation)}"
        return text

    def patch_size(self, in_channels: int) -> int:
        """Columns of one im2col row: ``in_channels * kT * kH * kW``."""
        kt, kh, kw = self.kernel
        return in_channels * kt * kh * kw

    def output_thw(self, t: int, h: int, w: int) -> Triple:
        """Output grid ``(T_out, H_out, W_out)`` of the convolution for an input grid ``(t, h, w)``.

        Raises ValueError when the padded input is smaller than the dilated kernel along an axis.
        """
        return (self.axis_output_size(0, t), self.axis_output_size(1, h), self.axis_output_size(2, w))

    def axis_output_size(self, axis: int, size: int) -> int:
        """Conv output length along ``axis`` (0 = T, 1 = H, 2 = W) for an input of length ``size``."""
        k, s, p, d = self.kernel[axis], self.stride[axis], self.padding[axis], self.dilation[axis]
        span = d * (k - 1) + 1
        if size + 2 * p < span:
            raise ValueError(
                f"stitching spec {self}: input size {size} along {'THW'[axis]} (+2*{p} padding) is smaller "
                f"than the kernel span {span}"
            )
        return (size + 2 * p - span) // s + 1


def parse_spec(text: str | StitchSpec) -> StitchSpec:
    """Parse a spec string such as ``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1`` (a StitchSpec passes through)."""
    if isinstance(text, StitchSpec):
        return text
    if not isinstance(text, str):
        raise ValueError(f"stitching spec must be a string, got {type(text).__name__}")
    match = _SPEC_RE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"invalid stitching spec {text!r}: expected {_GRAMMAR}")
    groups = match.groupdict()
    return StitchSpec(
        kernel=_triple(groups["k"], "kernel (k)", text),
        out_channels=int(groups["o"]),
        stride=_triple(groups["s"], "stride (s)", text) if groups["s"] else (1, 1, 1),
        padding=_triple(groups["p"], "padding (p)", text) if groups["p"] else (0, 0, 0),
        dilation=_triple(groups["d"], "dilation (d)", text) if groups["d"] else (1, 1, 1),
    )


def upsampled_frames(latent_frames: int, temporal_factor: int = RELEASE_TEMPORAL_FACTOR) -> int:
    """Frames after the temporal upsampling: ``(T_lat - 1) * temporal_factor + 1``."""
    if latent_frames < 1:
        raise ValueError(f"latent_frames must be >= 1, got {latent_frames}")
    if temporal_factor < 1:
        raise ValueError(f"temporal_factor must be >= 1, got {temporal_factor}")
    return (latent_frames - 1) * temporal_factor + 1


def output_hw(spec: str | StitchSpec, h: int, w: int) -> tuple[int, int]:
    """Token grid ``(H_out, W_out)`` produced from a latent of spatial size ``(h, w)``."""
    spec = parse_spec(spec)
    return spec.axis_output_size(1, h), spec.axis_output_size(2, w)


def output_shape(
    spec: str | StitchSpec, latent_thw: tuple[int, int, int], temporal_factor: int = RELEASE_TEMPORAL_FACTOR
) -> tuple[int, int, int, int]:
    """``(C_out, T, H_out, W_out)`` of the stitching layer for a latent grid ``(T_lat, h, w)``."""
    spec = parse_spec(spec)
    t_lat, h, w = latent_thw
    return (spec.out_channels, *spec.output_thw(upsampled_frames(t_lat, temporal_factor), h, w))


def upsample_latent(
    latent: torch.Tensor, temporal_factor: int = RELEASE_TEMPORAL_FACTOR, target_hw: tuple[int, int] | None = None
) -> torch.Tensor:
    """Trilinear (``align_corners=True``) resampling ``[B, C, T_lat, h, w] -> [B, C, T, H', W']``.

    ``T = (T_lat - 1) * temporal_factor + 1`` so that output frame ``temporal_factor * k`` equals latent
    frame ``k`` exactly; ``(H', W') = target_hw`` or the input size. Works in the input's dtype.
    """
    if latent.ndim != 5:
        raise ValueError(f"latent must have shape [B, C, T_lat, h, w], got {list(latent.shape)}")
    t_lat, h, w = latent.shape[2:]
    size = (upsampled_frames(t_lat, temporal_factor), *(target_hw if target_hw is not None else (h, w)))
    return F.interpolate(latent, size=size, mode="trilinear", align_corners=True)


class StitchingLayer(nn.Conv3d):
    """Latent resampling + Conv3d (replicate padding): ``[B, C_in, T_lat, h, w] -> [B, C_out, T, H_out, W_out]``.

    It *is* the ``nn.Conv3d`` (subclass, no wrapper), so its ``state_dict`` holds exactly ``weight``
    ``[C_out, C_in, kT, kH, kW]`` and ``bias`` ``[C_out]``: the ``stitching_layer/{weight,bias}`` entries of a
    released VIST3A checkpoint load with ``strict=True``.
    """

    def __init__(
        self,
        spec: str | StitchSpec,
        in_channels: int = RELEASE_LATENT_CHANNELS,
        temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
        target_hw: tuple[int, int] | None = None,
        bias: bool = True,
    ) -> None:
        spec = parse_spec(spec)
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
        if temporal_factor < 1:
            raise ValueError(f"temporal_factor must be >= 1, got {temporal_factor}")
        if target_hw is not None and (len(target_hw) != 2 or min(target_hw) < 1):
            raise ValueError(f"target_hw must be (height, width) with positive entries, got {target_hw!r}")
        super().__init__(
            in_channels,
            spec.out_channels,
            kernel_size=spec.kernel,
            stride=spec.stride,
            padding=spec.padding,
            dilation=spec.dilation,
            bias=bias,
            padding_mode="replicate",
        )
        self.spec = spec
        self.temporal_factor = temporal_factor
        self.target_hw = None if target_hw is None else (int(target_hw[0]), int(target_hw[1]))

    def upsample(self, latent: torch.Tensor) -> torch.Tensor:
        """``[B, C_in, T_lat, h, w] -> [B, C_in, T, H', W']`` (see :func:`upsample_latent`)."""
        return upsample_latent(latent, self.temporal_factor, self.target_hw)

    def project(self, frames: torch.Tensor) -> torch.Tensor:
        """The convolution alone, on an already upsampled latent ``[B, C_in, T, H', W']``."""
        return super().forward(frames)

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        if latent.ndim != 5 or latent.shape[1] != self.in_channels:
            raise ValueError(f"latent must have shape [B, {self.in_channels}, T_lat, h, w], got {list(latent.shape)}")
        return self.project(self.upsample(latent))

    def output_shape(self, latent_thw: tuple[int, int, int]) -> tuple[int, int, int, int]:
        """``(C_out, T, H_out, W_out)`` for a latent grid ``(T_lat, h, w)``."""
        t_lat, h, w = latent_thw
        hw = self.target_hw if self.target_hw is not None else (h, w)
        return (self.out_channels, *self.spec.output_thw(upsampled_frames(t_lat, self.temporal_factor), *hw))

    def extra_repr(self) -> str:
        extra = f"spec={self.spec}, temporal_factor={self.temporal_factor}, target_hw={self.target_hw}"
        return f"{super().extra_repr()}, {extra}"


def build_stitching_layer(
    spec: str | StitchSpec,
    in_channels: int = RELEASE_LATENT_CHANNELS,
    temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
    target_hw: tuple[int, int] | None = None,
    bias: bool = True,
) -> StitchingLayer:
    """Build the :class:`StitchingLayer` for ``spec`` (default PyTorch init; fit it with the ridge solver)."""
    return StitchingLayer(
        spec, in_channels=in_channels, temporal_factor=temporal_factor, target_hw=target_hw, bias=bias
    )
