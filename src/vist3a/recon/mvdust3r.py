"""MV-DUSt3R and MV-DUSt3R+ (Tang et al., CVPR 2025): pointmaps and per-pixel Gaussians of ``V`` views in one pass.

Architecture facts from facebookresearch/mvdust3r (``AsymmetricCroCo3DStereoMultiView``, commit 18872ea,
CC BY-NC 4.0, the licence of the released weights too); this is an independent implementation whose
parameter names match the released checkpoints (``MVD.pth``, ``MVDp_s1.pth``, ``MVDp_s2.pth``), checked
against the official golden vectors (``oracles/mvdust3r_tiny``).

* **Encoder** (shared by all views): ``Conv2d(3, C, p, stride p)`` patch embedding, ``enc_depth`` pre-norm ViT
  blocks with 2D RoPE (base 100, positions = integer (row, column) of the token grid; no CLS, no absolute
  position embedding), ``enc_norm``.
* **Decoder**: ``decoder_embed``, then ``dec_depth`` layers. In a *path* with reference view ``r``, view ``r``
  goes through ``dec_blocks[l]`` and every other view through ``dec_blocks2[l]``; each view self-attends and
  cross-attends to the tokens of *all other* views of the path (previous layer's states).
  MV-DUSt3R+ (``multi_path``) runs ``P = min(n_ref, V)`` paths, path ``r`` with reference view ``r``, and after each
  layer mixes the paths: ``dec_same_view_blocks[l]`` lets every view of a path cross-attend to the same view in
  the other paths. ``dec_norm`` at the end.
* **Heads**: the path's reference view uses ``downstream_head1`` / ``downstream_GS_head.0``, the other views
  ``downstream_head2`` / ``downstream_GS_head.1``: linear point head with an image skip branch (pointmaps in the
  camera frame of the path's reference view, confidence > 1) and a per-pixel Gaussian head (``sh_degree`` 0).

Inputs are RGB in ``[-1, 1]`` (the release's ``Normalize(0.5, 0.5)``), ``[B, V, 3, H, W]`` with ``H`` and ``W``
multiples of the patch size. Outputs are indexed by *original* view (see :class:`MVDust3rOutput`); the release's
"slot" order (reference view swapped into slot 0) is produced only by the parity runner.

Portrait inputs: the release wraps its heads in ``transpose_to_landscape``, whose portrait branch fails with the
skip branch; vist3a runs portrait images like any other size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.embeddings import get_1d_sincos_pos_embed_from_grid
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vist3a.recon.heads.pixel_heads import LinearPointHead, PixelGaussianHead
from vist3a.recon.layers.block import Block, checkpoint_call
from vist3a.recon.layers.croco import MultiViewDecoderBlock
from vist3a.recon.layers.rope import RotaryEmbedding2D
from vist3a.recon.outputs import CameraPrediction
from vist3a.recon.pointmap_cameras import PointmapCameras, cameras_from_pointmaps
from vist3a.splats import Gaussians, rgb_to_sh_dc

NORM_EPS = 1e-6
RENDER_SCALE_RANGE = (1e-4, 4e-3)
"""Gaussian scales relative to the mean point distance, as the release's renderer clamps them."""


@dataclass
class MVDust3rEncoding:
    """Encoder output. ``tokens [B, V, Hp*Wp, enc_embed_dim]`` (after ``enc_norm``, row-major grid),
    ``grid_hw = (Hp, Wp)``."""

    tokens: torch.Tensor
    grid_hw: tuple[int, int]


@dataclass
class MVDust3rOutput:
    """MV-DUSt3R(+) predictions, indexed by path ``P`` and **original** view ``V``.

    Path ``p`` uses view ``reference_views[p]`` as its reference (MV-DUSt3R: one path, view 0; MV-DUSt3R+:
    ``P = min(n_ref, V)`` paths, path ``p`` has reference view ``p``). Every pointmap of a path is in the camera
    frame of its reference view (OpenCV axes: x right, y down, z forward; arbitrary scale).

    Attributes:
        points: ``[B, P, V, H, W, 3]`` pointmap of view ``v`` in path ``p``'s reference camera frame.
        conf: ``[B, P, V, H, W]`` confidence (> 1).
        reference_views: ``[P]`` long, the reference view of each path.
        rgb: ``[B, P, V, H, W, 3 (sh_degree + 1)^2]`` raw colour of the Gaussian head (SH coefficients; the
            release's renderer ignores it and colours Gaussians with the input pixels), ``None`` without that head.
        opacity: ``[B, P, V, H, W]`` in (0, 1); scale: ``[B, P, V, H, W, 3]`` (``0.1 * raw``, not clamped);
        rotation: ``[B, P, V, H, W, 4]`` unit quaternion (w, x, y, z). Means are ``points``.
        images: ``[B, V, 3, H, W]`` the input in ``[-1, 1]`` (the colours of :attr:`gaussians`).
    """

    points: torch.Tensor
    conf: torch.Tensor
    reference_views: torch.Tensor
    rgb: torch.Tensor | None = None
    opacity: torch.Tensor | None = None
    scale: torch.Tensor | None = None
    rotation: torch.Tensor | None = None
    images: torch.Tensor | None = None

    # ---------------------------------------------------------------- scene views of path 0 (the release's demo)
    # The properties below give the same attributes as the AnySplat / VGGT outputs (``cameras``, ``depth``,
    # ``world_points``, ``gaussians``), so reconstruction, the stitched pipeline and scenes treat all models alike.
    # World frame = the camera frame of path 0's reference view.

    @cached_property
    def pointmap_cameras(self) -> PointmapCameras:
        """Cameras recovered from path 0's pointmaps (:func:`~vist3a.recon.pointmap_cameras.cameras_from_pointmaps`:
        ``K`` with integer pixel centres)."""
        return cameras_from_pointmaps(self.points[:, 0], self.conf[:, 0], int(self.reference_views[0]))

    @cached_property
    def cameras(self) -> CameraPrediction:
        """``w2c [B, V, 3, 4]`` and ``K [B, V, 3, 3]`` in the convention of the AnySplat / VGGT outputs (principal
        point of the image centre written as ``(W/2, H/2)``, i.e. ``pointmap_cameras.K`` + 0.5 px; consumers map
        it back with :func:`vist3a.cameras.K_from_edge_convention`). No pose encoding."""
        cams = self.pointmap_cameras
        K = cams.K.clone()
        K[..., :2, 2] += 0.5
        return CameraPrediction(pose_enc=None, pose_enc_list=[], w2c=cams.w2c, K=K)

    @property
    def depth(self) -> torch.Tensor:
        """``[B, V, H, W]`` depth of every pixel in its own view's recovered camera."""
        return self.pointmap_cameras.depth

    @property
    def world_points(self) -> torch.Tensor:
        """``[B, V, H, W, 3]`` path 0's pointmaps (world = its reference camera frame)."""
        return self.points[:, 0]

    @property
    def world_points_conf(self) -> torch.Tensor:
        """``[B, V, H, W]`` their confidences."""
        return self.conf[:, 0]

    @cached_property
    def gaussians(self) -> list[Gaussians] | None:
        """One Gaussian per pixel of path 0 per batch element (``None`` without Gaussian head or images).

        As the release renders them: means = the pointmaps, colour = the **input image pixel** (the release's
        renderer ignores the head's ``rgb``; its training loss uses ``use_img_rgb``), scales clamped to
        ``RENDER_SCALE_RANGE`` times the mean point distance (the loss normalises points by that distance before
        clamping), opacity and rotation as predicted.
        """
        if self.opacity is None or self.images is None:
            return None
        out = []
        for b in range(self.points.shape[0]):
            means = self.points[b, 0].reshape(-1, 3).float()
            norm = means.norm(dim=-1).nan_to_num(0.0).mean().clamp(min=1e-8)
            scales = self.scale[b, 0].reshape(-1, 3).float().clamp(RENDER_SCALE_RANGE[0] * norm,
                                                                   RENDER_SCALE_RANGE[1] * norm)
            colours = ((self.images[b].float() + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).reshape(-1, 3)
            out.append(Gaussians(
                means=means, quats=self.rotation[b, 0].reshape(-1, 4).float(), scales=scales,
                opacities=self.opacity[b, 0].reshape(-1).float(), sh=rgb_to_sh_dc(colours)[:, None],
            ))
        return out


def slot_permutations(num_views: int, num_paths: int, device: torch.device | None = None) -> torch.Tensor:
    """``[P, V]`` long: slot ``s`` of path ``r`` holds view ``perm[r, s]`` (views 0 and ``r`` swapped, so the
    path's reference is slot 0). Each row is its own inverse."""
    perm = torch.arange(num_views, device=device).repeat(num_paths, 1)
    paths = torch.arange(num_paths, device=device)
    perm[paths, 0] = paths
    perm[paths, paths] = 0
    return perm


class _PatchEmbed(nn.Module):
    """``Conv2d(3, dim, p, stride p)`` -> row-major tokens ``[B, Hp*Wp, dim]`` (key ``proj``)."""

    def __init__(self, patch_size: int, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(images).flatten(2).transpose(1, 2)


def sincos_positions(grid_hw: tuple[int, int], dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``[1, Hp*Wp, dim]`` fixed position code of a token grid (row-major, as :meth:`MVDust3r.grid_positions`): the
    first half of the channels encodes the row, the second the column, each diffusers' 1D sine-cosine code (sines
    then cosines at ``dim / 4`` geometric frequencies from 1 down to 1/10000). ``dim`` must be a multiple of 4."""
    if dim % 4:
        raise ValueError(f"the sine-cosine position code needs a width divisible by 4, got {dim}")
    hp, wp = grid_hw
    rows = torch.arange(hp, device=device, dtype=torch.float64).repeat_interleave(wp)
    cols = torch.arange(wp, device=device, dtype=torch.float64).repeat(hp)
    halves = [get_1d_sincos_pos_embed_from_grid(dim // 2, coord, output_type="pt") for coord in (rows, cols)]
    return torch.cat(halves, -1)[None].to(dtype)


class MVDust3r(ModelMixin, ConfigMixin):
    """MV-DUSt3R (``multi_path=False``, ``MVD.pth``) or MV-DUSt3R+ (``multi_path=True``, ``MVDp_*.pth``).

    Args:
        img_size: training resolution of the release (224); informational, any multiple of ``patch_size`` runs.
        patch_size, enc_embed_dim, enc_depth, enc_num_heads: the ViT encoder (released: 16, 1024, 24, 16).
        dec_embed_dim, dec_depth, dec_num_heads: the decoder (released: 768, 12, 12).
        mlp_ratio: MLP width factor of every block.
        rope_base: RoPE frequency base (the release's ``pos_embed='RoPE100'``).
        sincos_pos_embed: also add a fixed 2D sine-cosine code of each token's (row, column) to the encoder's and
            the decoder's input tokens, as CroCo's ``pos_embed='cosine'`` does (the release: off). RoPE gives
            attention only relative offsets, so a small model trained briefly struggles to learn where in the image
            a token is, which the reference view's pointmap needs (docs/nano.md, Nano MV-DUSt3R).
        multi_path: MV-DUSt3R+ multi-path decoding with ``dec_same_view_blocks``.
        n_ref: paths of MV-DUSt3R+ (released: 4); fewer views than ``n_ref`` run ``V`` paths.
        gaussian_head: build the per-pixel Gaussian heads (``downstream_GS_head``).
        sh_degree, gs_mlp_dim: Gaussian head colour degree and hidden width (released: 0, 768).
        point_skip, skip_dim, skip_scale: the point heads' image skip branch (released: on, 256, 1e-4).
        conf_min, conf_max: confidence range ``conf_min + min(exp(x), conf_max - conf_min)``.

    Example:
        >>> model = MVDust3r.from_official_config(constructor)     # or vist3a.recon.mvdust3r_from_pretrained(...)
        >>> out = model(images)                                     # images [B, V, 3, H, W] in [-1, 1]
        >>> out.points.shape                                        # [B, P, V, H, W, 3]
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        img_size: int = 224,
        patch_size: int = 16,
        enc_embed_dim: int = 1024,
        enc_depth: int = 24,
        enc_num_heads: int = 16,
        dec_embed_dim: int = 768,
        dec_depth: int = 12,
        dec_num_heads: int = 12,
        mlp_ratio: float = 4.0,
        rope_base: float = 100.0,
        sincos_pos_embed: bool = False,
        multi_path: bool = False,
        n_ref: int = 4,
        gaussian_head: bool = True,
        sh_degree: int = 0,
        gs_mlp_dim: int = 768,
        point_skip: bool = True,
        skip_dim: int = 256,
        skip_scale: float = 1e-4,
        conf_min: float = 1.0,
        conf_max: float = 1e9,
    ) -> None:
        super().__init__()
        if multi_path and n_ref < 2:
            raise ValueError(f"MV-DUSt3R+ (`multi_path`) needs `n_ref` >= 2 reference views, got {n_ref}")
        self.rope = RotaryEmbedding2D(rope_base)
        self.patch_embed = _PatchEmbed(patch_size, enc_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dec_embed_dim))  # CroCo pre-training leftover, unused
        self.enc_blocks = nn.ModuleList(
            Block(enc_embed_dim, enc_num_heads, mlp_ratio, rope=self.rope, norm_eps=NORM_EPS) for _ in range(enc_depth)
        )
        self.enc_norm = nn.LayerNorm(enc_embed_dim, eps=NORM_EPS)
        self.decoder_embed = nn.Linear(enc_embed_dim, dec_embed_dim)

        def decoder_blocks() -> nn.ModuleList:
            return nn.ModuleList(
                MultiViewDecoderBlock(dec_embed_dim, dec_num_heads, mlp_ratio, self.rope, NORM_EPS)
                for _ in range(dec_depth)
            )

        self.dec_blocks = decoder_blocks()
        self.dec_blocks2 = decoder_blocks()
        self.dec_same_view_blocks = decoder_blocks() if multi_path else None
        self.dec_norm = nn.LayerNorm(dec_embed_dim, eps=NORM_EPS)
        point = {"skip": point_skip, "skip_dim": skip_dim, "skip_scale": skip_scale, "conf_min": conf_min,
                 "conf_max": conf_max}
        self.downstream_head1 = LinearPointHead(dec_embed_dim, patch_size, **point)
        self.downstream_head2 = LinearPointHead(dec_embed_dim, patch_size, **point)
        self.downstream_GS_head = (
            nn.ModuleList(PixelGaussianHead(dec_embed_dim, patch_size, gs_mlp_dim, sh_degree) for _ in range(2))
            if gaussian_head
            else None
        )
        self.gradient_checkpointing = False

    # ------------------------------------------------------------------ construction from official arguments
    @classmethod
    def from_official_config(cls, constructor: dict[str, Any], **overrides: Any) -> MVDust3r:
        """Build from official constructor arguments: ``AsymmetricCroCo3DStereoMultiView`` keywords (flat, or the
        oracle layout with sections named after the classes, e.g. ``GSHead (...)`` for ``mlp_dim`` and
        ``LinearPts3d (...)`` for ``skip_dim``). See :func:`official_kwargs`."""
        return cls(**{**official_kwargs(constructor), **overrides})

    # ------------------------------------------------------------------ checks
    def check_images(self, images: torch.Tensor) -> None:
        """``images [B, V, 3, H, W]``, ``V >= 2``, ``H, W`` multiples of the patch size."""
        p = self.config.patch_size
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"`images` must have shape [B, V, 3, H, W] (RGB in [-1, 1]), got {list(images.shape)}")
        if images.shape[1] < 2:
            raise ValueError(f"MV-DUSt3R needs at least 2 views, got {images.shape[1]}")
        if images.shape[-2] % p or images.shape[-1] % p:
            raise ValueError(f"`images` height and width must be multiples of {p}, got {tuple(images.shape[-2:])}")

    def grid_positions(self, grid_hw: tuple[int, int], device: torch.device) -> torch.Tensor:
        """``[1, Hp*Wp, 2]`` long (row, column) of every token: the RoPE positions."""
        hp, wp = grid_hw
        rows = torch.arange(hp, device=device).repeat_interleave(wp)
        cols = torch.arange(wp, device=device).repeat(hp)
        return torch.stack((rows, cols), -1)[None]

    # ------------------------------------------------------------------ encoder
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Patch embedding: ``images [B, V, 3, H, W]`` -> tokens ``[B*V, Hp*Wp, enc_embed_dim]`` (``(b v)`` order);
        the stitching cut point ``enc_blocks_0`` (with ``sincos_pos_embed``, the position code is added here)."""
        tokens = self.patch_embed(images.flatten(0, 1))
        if self.config.sincos_pos_embed:
            grid_hw = (images.shape[-2] // self.config.patch_size, images.shape[-1] // self.config.patch_size)
            tokens = tokens + sincos_positions(grid_hw, tokens.shape[-1], tokens.device, tokens.dtype)
        return tokens

    def run_encoder_blocks(
        self, tokens: torch.Tensor, grid_hw: tuple[int, int], start_block: int = 0, capture: bool = False
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Encoder blocks ``start_block..`` and ``enc_norm`` on ``tokens [N, Hp*Wp, C]``. Returns the normalised
        tokens and (if ``capture``) every block output ran, before the norm."""
        pos = self.grid_positions(grid_hw, tokens.device)
        outs = []
        x = tokens
        for block in self.enc_blocks[start_block:]:
            if self.gradient_checkpointing and torch.is_grad_enabled():
                x = checkpoint_call(self, block, x, pos)
            else:
                x = block(x, pos)
            if capture:
                outs.append(x)
        return self.enc_norm(x), outs

    def encode(self, images: torch.Tensor) -> MVDust3rEncoding:
        """Encoder on ``images [B, V, 3, H, W]`` in ``[-1, 1]``; with :meth:`decode` this is the split a stitched
        model uses (it replaces the patch embedding and the first blocks, then reuses :meth:`decode`)."""
        self.check_images(images)
        batch, views = images.shape[:2]
        grid_hw = (images.shape[-2] // self.config.patch_size, images.shape[-1] // self.config.patch_size)
        tokens, _ = self.run_encoder_blocks(self.embed(images), grid_hw)
        return MVDust3rEncoding(tokens.reshape(batch, views, *tokens.shape[1:]), grid_hw)

    # ------------------------------------------------------------------ decoder
    def num_paths(self, views: int) -> int:
        """Decoding paths for ``views`` views: ``min(n_ref, views)`` for MV-DUSt3R+, else 1."""
        return min(self.config.n_ref, views) if self.config.multi_path else 1

    def decode_tokens(self, enc: MVDust3rEncoding) -> torch.Tensor:
        """The multi-view (multi-path) decoder: encoder tokens ``[B, V, N, C_enc]`` -> normalised decoder tokens
        ``[B, P, V, N, C_dec]`` in *slot* order (slot 0 = the path's reference view, see
        :func:`slot_permutations`)."""
        batch, views, tokens, _ = enc.tokens.shape
        paths = self.num_paths(views)
        perm = slot_permutations(views, paths, enc.tokens.device)
        pos = self.grid_positions(enc.grid_hw, enc.tokens.device)
        x = self.decoder_embed(enc.tokens)
        if self.config.sincos_pos_embed:
            x = x + sincos_positions(enc.grid_hw, x.shape[-1], x.device, x.dtype)
        x = x[:, perm]  # [B, P, V, N, D]
        x = x.flatten(0, 1)
        for layer in range(self.config.dec_depth):
            x = self._checkpointed(self.decoder_layer, layer, x, pos, perm, batch)
        x = self.dec_norm(x)
        return x.reshape(batch, paths, views, tokens, -1)

    def _checkpointed(self, fn, *args):
        """``fn(*args)``, one activation-checkpoint segment when gradient checkpointing is on."""
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint_call(self, fn, *args)
        return fn(*args)

    def decoder_layer(
        self, layer: int, x: torch.Tensor, pos: torch.Tensor, perm: torch.Tensor, batch: int
    ) -> torch.Tensor:
        """Decoder layer ``layer`` on slot-ordered states ``x [B*P, V, N, D]`` (``perm``: the ``[P, V]``
        :func:`slot_permutations`, ``pos``: :meth:`grid_positions`). Returns the new ``[B*P, V, N, D]``."""
        ref = self.dec_blocks[layer](x[:, :1], x[:, 1:], pos)
        others = self.dec_blocks2[layer](x[:, 1:], x, pos, self_offset=1) if x.shape[1] > 1 else x[:, :0]
        x = torch.cat([ref, others], 1)
        if self.dec_same_view_blocks is None:
            return x
        paths, views = perm.shape
        # slots -> original views (each permutation is an involution), then group by view: [B*V, P, N, D]
        by_view = x.reshape(batch, paths, views, *x.shape[2:])
        by_view = torch.stack([by_view[:, r, perm[r]] for r in range(paths)], 1).transpose(1, 2).flatten(0, 1)
        mixed = self.dec_same_view_blocks[layer](by_view, by_view, pos, self_offset=0)
        mixed = mixed.reshape(batch, views, paths, *x.shape[2:]).transpose(1, 2)
        return torch.stack([mixed[:, r, perm[r]] for r in range(paths)], 1).flatten(0, 1)

    def heads(self, dec: torch.Tensor, images: torch.Tensor, grid_hw: tuple[int, int]) -> MVDust3rOutput:
        """Point and Gaussian heads on slot-ordered decoder tokens ``dec [B, P, V, N, D]``; ``images
        [B, V, 3, H, W]`` in ``[-1, 1]`` feed the point heads' skip branch. Returns view-ordered outputs.

        As the release, the heads run with autocast off in their own dtype (float32 unless the model is cast)."""
        with torch.autocast(dec.device.type, enabled=False):
            dtype = self.downstream_head1.proj.weight.dtype
            return self._heads(dec.to(dtype), images.to(dtype), grid_hw)

    def _heads(self, dec: torch.Tensor, images: torch.Tensor, grid_hw: tuple[int, int]) -> MVDust3rOutput:
        paths, views = dec.shape[1:3]
        perm = slot_permutations(views, paths, dec.device)
        slot_images = images[:, perm].to(dec.dtype)  # [B, P, V, 3, H, W]
        height, width = images.shape[-2:]

        def run(slots: slice, point_head: nn.Module, gs_index: int) -> dict[str, torch.Tensor]:
            tok = dec[:, :, slots]
            shape = tok.shape[:3]
            tok = tok.flatten(0, 2)
            points, conf = point_head(tok, grid_hw, slot_images[:, :, slots].flatten(0, 2))
            out = {"points": points, "conf": conf}
            if self.downstream_GS_head is not None:
                out.update(self.downstream_GS_head[gs_index](tok, grid_hw))
            return {k: v.reshape(*shape, height, width, *v.shape[3:]) for k, v in out.items()}

        first = run(slice(0, 1), self.downstream_head1, 0)
        rest = run(slice(1, None), self.downstream_head2, 1)
        view_order = {}
        for key in first:
            slotted = torch.cat([first[key], rest[key]], 2)  # [B, P, V(slot), ...]
            view_order[key] = torch.stack([slotted[:, r, perm[r]] for r in range(paths)], 1)
        return MVDust3rOutput(reference_views=perm[:, 0].clone(), images=images, **view_order)

    def decode(self, enc: MVDust3rEncoding, images: torch.Tensor) -> MVDust3rOutput:
        """Decoder and heads (float32 unless the model is cast); ``images [B, V, 3, H, W]`` in ``[-1, 1]``."""
        self.check_images(images)
        expected = (*images.shape[:2], enc.grid_hw[0] * enc.grid_hw[1])
        if tuple(enc.tokens.shape[:3]) != expected:
            raise ValueError(f"encoder tokens {list(enc.tokens.shape)} do not fit images {list(images.shape)}")
        return self.heads(self.decode_tokens(enc), images, enc.grid_hw)

    def forward(self, images: torch.Tensor) -> MVDust3rOutput:
        """Pointmaps, confidences and Gaussians for ``images [B, V, 3, H, W]`` in ``[-1, 1]``."""
        return self.decode(self.encode(images), images)


# ----------------------------------------------------------------------------- official arguments
_OFFICIAL_MAIN = "AsymmetricCroCo3DStereoMultiView"


def _section(constructor: dict[str, Any], name: str) -> dict[str, Any]:
    for key, value in constructor.items():
        if re.split(r"[\s(]", key.strip(), maxsplit=1)[0] == name and isinstance(value, dict):
            return value
    return {}


def official_kwargs(constructor: dict[str, Any]) -> dict[str, Any]:
    """Official ``AsymmetricCroCo3DStereoMultiView`` keyword arguments -> :class:`MVDust3r` kwargs.

    Accepts the flat keywords or the oracle layout (``{"AsymmetricCroCo3DStereoMultiView": {...},
    "GSHead (...)": {"mlp_dim": ...}, "LinearPts3d (...)": {"skip_dim": ...}}``). Unsupported settings (other
    heads, output or depth modes) raise ``ValueError``.
    """
    main = _section(constructor, _OFFICIAL_MAIN) or dict(constructor)
    pos_embed = str(main.get("pos_embed", "RoPE100"))
    match = re.fullmatch(r"RoPE(\d+(?:\.\d+)?)", pos_embed)
    if match is None:
        raise ValueError(f"official pos_embed {pos_embed!r} is not supported (only 'RoPE<base>')")
    for key, allowed in (("head_type", "linear"), ("output_mode", "pts3d")):
        if main.get(key, allowed) != allowed:
            raise ValueError(f"official {key} = {main[key]!r} is not supported (only {allowed!r})")
    depth_mode = main.get("depth_mode", ("exp", "-inf", "inf"))
    if depth_mode[0] != "exp" or float(depth_mode[1]) != float("-inf") or float(depth_mode[2]) != float("inf"):
        raise ValueError(f"official depth_mode {depth_mode!r} is not supported (only ('exp', -inf, inf))")
    conf_mode = main.get("conf_mode", ("exp", 1, 1e9))
    if conf_mode[0] != "exp":
        raise ValueError(f"official conf_mode {conf_mode!r} is not supported (only 'exp')")
    img_size = main.get("img_size", 224)
    img_size = img_size[0] if isinstance(img_size, list | tuple) else img_size
    multi = bool(main.get("m_ref_flag", False))
    kwargs: dict[str, Any] = {
        "img_size": int(img_size),
        "patch_size": int(main.get("patch_size", 16)),
        "rope_base": float(match.group(1)),
        "multi_path": multi,
        "gaussian_head": bool(main.get("GS", False)),
        "sh_degree": int(main.get("sh_degree", 0)),
        "point_skip": bool((main.get("pts_head_config") or {}).get("skip", False)),
        "conf_min": float(conf_mode[1]),
        "conf_max": float(conf_mode[2]),
    }
    if multi:
        kwargs["n_ref"] = int(main.get("n_ref") or 4)
    for key in ("enc_embed_dim", "enc_depth", "enc_num_heads", "dec_embed_dim", "dec_depth", "dec_num_heads"):
        if key in main:
            kwargs[key] = int(main[key])
    if "mlp_ratio" in main:
        kwargs["mlp_ratio"] = float(main["mlp_ratio"])
    gs = _section(constructor, "GSHead")
    if gs:
        if gs.get("skip") or int(gs.get("mlp_depth", 1)) != 1:
            raise ValueError("official GSHead with skip=True or mlp_depth != 1 is not supported")
        kwargs["gs_mlp_dim"] = int(gs.get("mlp_dim", 768))
    pts = _section(constructor, "LinearPts3d")
    if pts:
        kwargs["skip_dim"] = int(pts.get("skip_dim", 256))
        kwargs["skip_scale"] = float(pts.get("skip_proj_scale", 1e-4))
    return kwargs
