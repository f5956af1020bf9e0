"""DPT dense-prediction head of VGGT (depth, point map, track features) and the shared DPT pieces.

Pipeline for each of the 4 selected aggregator layers: LayerNorm -> patch tokens as a ``[2C, Hp, Wp]`` map
-> 1x1 projection -> (+ uv positional embedding) -> resize by 4, 2, 1, 1/2. A RefineNet-style fusion
(``scratch``) merges them coarse-to-fine at 2x the patch grid; the result is upsampled to the image size,
gets the positional embedding again and goes through the output convolutions. Parameter names follow the
official checkpoints (``projects``, ``resize_layers``, ``scratch.refinenetN.resConfUnitN`` ...).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vist3a.recon.config import DPTConfig
from vist3a.recon.heads.activations import activate_dense

# Width of the hidden layer of the final 1x1 prediction block; fixed by the official DPTHead.
OUTPUT_HIDDEN_CHANNELS = 32
# Strength of the uv positional embedding added to DPT feature maps (official value).
POS_EMBED_RATIO = 0.1
# Frequency base of that embedding.
POS_EMBED_OMEGA = 100.0
# F.interpolate misbehaves on CUDA beyond this many output elements; larger inputs are split over the batch.
_MAX_INTERP_ELEMENTS = 1_610_612_736


def select_layers(tokens: Sequence[torch.Tensor], layer_idx: Sequence[int]) -> list[torch.Tensor]:
    """Pick the DPT input layers exactly as the official heads do.

    With more than 10 returned layers (VGGT returns all of them) ``layer_idx`` are layer indices; with 10 or
    fewer (AnySplat's aggregator returns only the requested layers) each entry is replaced by its *position*
    in ``layer_idx``. For a tiny VGGT with <= 10 layers this means positions, not layer numbers.
    """
    layer_idx = list(layer_idx)
    if len(tokens) > 10:
        return [tokens[i] for i in layer_idx]
    return [tokens[layer_idx.index(i)] for i in layer_idx]


def interpolate_bilinear(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear, ``align_corners=True`` resize of ``[N, C, h, w]``, chunked over ``N`` for huge outputs."""
    elements = size[0] * size[1] * x.shape[0] * x.shape[1]
    if elements <= _MAX_INTERP_ELEMENTS:
        return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
    chunks = x.chunk(elements // _MAX_INTERP_ELEMENTS + 1, dim=0)
    return torch.cat([F.interpolate(c, size=size, mode="bilinear", align_corners=True) for c in chunks], 0)


def uv_pos_embed(
    height: int, width: int, channels: int, aspect_ratio: float, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """Sin/cos embedding ``[channels, height, width]`` of a centred uv grid normalised by its diagonal.

    The grid spans ``±aspect/d * (width-1)/width`` in u and ``±1/d * (height-1)/height`` in v with
    ``d = sqrt(aspect² + 1)``; the first ``channels/2`` channels embed u, the rest v (each as
    ``[sin(p·ω), cos(p·ω)]`` with ``ω_k = 100^(-k / (channels/4))``), computed in float64.
    """
    diag = math.sqrt(aspect_ratio**2 + 1.0)
    span_u, span_v = aspect_ratio / diag, 1.0 / diag
    u = torch.linspace(-span_u * (width - 1) / width, span_u * (width - 1) / width, width, dtype=dtype, device=device)
    v = torch.linspace(
        -span_v * (height - 1) / height, span_v * (height - 1) / height, height, dtype=dtype, device=device
    )
    uu, vv = torch.meshgrid(u, v, indexing="xy")  # [height, width]
    half = channels // 2

    def embed(p: torch.Tensor) -> torch.Tensor:
        omega = torch.arange(half // 2, dtype=torch.float64, device=device) / (half / 2.0)
        omega = 1.0 / POS_EMBED_OMEGA**omega
        angles = p.reshape(-1).double()[:, None] * omega
        return torch.cat((angles.sin(), angles.cos()), 1).float()

    emb = torch.cat((embed(uu), embed(vv)), 1)  # [h * w, channels]
    return emb.view(height, width, channels).permute(2, 0, 1)


def add_pos_embed(x: torch.Tensor, image_hw: tuple[int, int]) -> torch.Tensor:
    """``x [N, C, h, w] + 0.1 * uv_pos_embed`` with the *image's* aspect ratio ``W / H``."""
    emb = uv_pos_embed(x.shape[-2], x.shape[-1], x.shape[1], image_hw[1] / image_hw[0], x.dtype, x.device)
    return x + (emb * POS_EMBED_RATIO).to(x.dtype)[None]


class ResidualConvUnit(nn.Module):
    """``conv2(relu(conv1(relu(x)))) + relu(x)``.

    The skip carries ``relu(x)``, not ``x``: the official unit applies an in-place ReLU to its input before
    the residual add, and released checkpoints were trained with that behaviour.
    """

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)
        return self.conv2(F.relu(self.conv1(x))) + x


class FeatureFusionBlock(nn.Module):
    """RefineNet fusion: ``(coarse [+ unit1(skip)]) -> unit2 -> bilinear resize -> 1x1 conv``."""

    def __init__(self, features: int, has_residual: bool = True) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        if has_residual:
            self.resConfUnit1 = ResidualConvUnit(features)
        self.has_residual = has_residual
        self.resConfUnit2 = ResidualConvUnit(features)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None, size: tuple[int, int] | None = None):
        if self.has_residual:
            if skip is None:
                raise ValueError("this fusion block needs the `skip` feature map")
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            size = (x.shape[-2] * 2, x.shape[-1] * 2)
        return self.out_conv(interpolate_bilinear(x, size))


class DPTHead(nn.Module):
    """DPT head over aggregator tokens.

    Args:
        dim_in: token width (``2 * embed_dim``).
        config: features, per-layer channels, which layers.
        patch_size: pixel size of a patch.
        output_dim: output channels incl. the confidence channel (depth 2, points 4).
        activation / conf_activation: see :mod:`vist3a.recon.heads.activations`.
        feature_only: return the fused ``features``-channel map instead of predictions (track head).
        down_ratio: output resolution divisor (track head: 2).
    """

    def __init__(
        self,
        dim_in: int,
        config: DPTConfig,
        patch_size: int,
        output_dim: int = 4,
        activation: str = "inv_log",
        conf_activation: str = "expp1",
        feature_only: bool = False,
        down_ratio: int = 1,
    ) -> None:
        super().__init__()
        self.config = config
        self.patch_size = patch_size
        self.activation = activation
        self.conf_activation = conf_activation
        self.feature_only = feature_only
        self.down_ratio = down_ratio
        features, out_ch = config.features, config.out_channels
        self.norm = nn.LayerNorm(dim_in)
        self.projects = nn.ModuleList(nn.Conv2d(dim_in, oc, 1) for oc in out_ch)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(out_ch[0], out_ch[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(out_ch[1], out_ch[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(out_ch[3], out_ch[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        self.scratch = nn.Module()
        for i, oc in enumerate(out_ch, start=1):
            setattr(self.scratch, f"layer{i}_rn", nn.Conv2d(oc, features, 3, padding=1, bias=False))
        for i in range(1, 5):
            setattr(self.scratch, f"refinenet{i}", FeatureFusionBlock(features, has_residual=i != 4))
        if feature_only:
            self.scratch.output_conv1 = nn.Conv2d(features, features, 3, padding=1)
        else:
            self.scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
            self.scratch.output_conv2 = nn.Sequential(
                nn.Conv2d(features // 2, OUTPUT_HIDDEN_CHANNELS, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(OUTPUT_HIDDEN_CHANNELS, output_dim, 1),
            )

    # ------------------------------------------------------------------ shared trunk
    def fuse(
        self, tokens: Sequence[torch.Tensor], num_prefix_tokens: int, image_hw: tuple[int, int], frames: slice
    ) -> torch.Tensor:
        """Selected layers -> fused map ``[B * V', C', 2 Hp, 2 Wp]`` after ``output_conv1`` for frames ``frames``."""
        height, width = image_hw
        hp, wp = height // self.patch_size, width // self.patch_size
        maps = []
        for i, layer in enumerate(select_layers(tokens, self.config.intermediate_layer_idx)):
            x = layer[:, frames, num_prefix_tokens:]
            x = self.norm(x.reshape(-1, x.shape[-2], x.shape[-1]))
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], hp, wp)
            x = self.projects[i](x)
            if self.config.pos_embed:
                x = add_pos_embed(x, image_hw)
            maps.append(self.resize_layers[i](x))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{i + 1}_rn")(m) for i, m in enumerate(maps))
        out = s.refinenet4(l4, size=l3.shape[-2:])
        out = s.refinenet3(out, l3, size=l2.shape[-2:])
        out = s.refinenet2(out, l2, size=l1.shape[-2:])
        out = s.refinenet1(out, l1)
        return s.output_conv1(out)

    def forward(
        self,
        tokens: Sequence[torch.Tensor],
        images: torch.Tensor,
        num_prefix_tokens: int,
        frames_chunk_size: int | None = 8,
    ):
        """``tokens``: aggregator layers ``[B, V, T, 2C]``; ``images [B, V, 3, H, W]`` (only the shape is used).

        Returns ``(values [B, V, H, W, C], conf [B, V, H, W])``, or with ``feature_only`` the feature map
        ``[B, V, features, H / down_ratio, W / down_ratio]``. Frames are processed in chunks to bound memory.
        """
        batch, views, _, height, width = images.shape
        chunk = frames_chunk_size or views
        results = [
            self._forward_frames(tokens, (height, width), num_prefix_tokens, slice(s, min(s + chunk, views)), batch)
            for s in range(0, views, chunk)
        ]
        if self.feature_only:
            return torch.cat(results, 1)
        return torch.cat([r[0] for r in results], 1), torch.cat([r[1] for r in results], 1)

    def _forward_frames(self, tokens, image_hw, num_prefix_tokens, frames: slice, batch: int):
        hp, wp = image_hw[0] // self.patch_size, image_hw[1] // self.patch_size
        out = self.fuse(tokens, num_prefix_tokens, image_hw, frames)
        size = (int(hp * self.patch_size / self.down_ratio), int(wp * self.patch_size / self.down_ratio))
        out = interpolate_bilinear(out, size)
        if self.config.pos_embed:
            out = add_pos_embed(out, image_hw)
        if self.feature_only:
            return out.reshape(batch, -1, *out.shape[1:])
        values, conf = activate_dense(self.scratch.output_conv2(out), self.activation, self.conf_activation)
        return values.reshape(batch, -1, *values.shape[1:]), conf.reshape(batch, -1, *conf.shape[1:])
