"""VGGT (Wang et al., CVPR 2025): feed-forward cameras, depth and point maps from ``V`` views.

Architecture facts from facebookresearch/vggt (and its copy vendored in AnySplat); this is an
independent implementation whose parameter names match the official checkpoints (``facebook/VGGT-1B``),
so :mod:`vist3a.recon.convert` loads them strictly. Outputs are checked against the official golden vectors
(``oracles/vggt_tiny``).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

from vist3a.cameras import pose_encoding_to_w2c_K
from vist3a.recon.aggregator import Aggregator, AggregatorOutput
from vist3a.recon.config import AggregatorConfig, CameraHeadConfig, DPTConfig, TrackHeadConfig, from_dict
from vist3a.recon.heads import CameraHead, DPTHead
from vist3a.recon.outputs import CameraPrediction, TrackPrediction, VGGTOutput

VGGT_HEADS = ("camera", "depth", "point", "track")
DEFAULT_HEADS = ("camera", "depth", "point")
DEPTH_CHANNELS = 1
POINT_CHANNELS = 3


def check_images(images: torch.Tensor, patch_size: int) -> None:
    """Validate ``images [B, V, 3, H, W]`` with ``H`` and ``W`` multiples of ``patch_size``."""
    if images.ndim != 5 or images.shape[2] != 3:
        raise ValueError(f"`images` must have shape [B, V, 3, H, W] (RGB in [0, 1]), got {list(images.shape)}")
    height, width = images.shape[-2:]
    if height % patch_size or width % patch_size:
        raise ValueError(
            f"`images` height and width must be multiples of the patch size {patch_size}, got {height}x{width}"
        )


def heads_precision(module: nn.Module, agg: AggregatorOutput, images: torch.Tensor):
    """Leave autocast for the heads, as the official models do (aggregator in mixed precision, heads in the
    heads' own dtype, float32 by default). Returns ``(autocast-off context, tokens, images)`` cast to that dtype."""
    dtype = next(module.parameters()).dtype
    context = torch.autocast(images.device.type, enabled=False)
    return context, [t.to(dtype) for t in agg.tokens], images.to(dtype)


class VGGT(ModelMixin, ConfigMixin):
    """VGGT model: aggregator + camera / depth / point (/ track) heads.

    Args:
        aggregator_config: :class:`~vist3a.recon.config.AggregatorConfig` fields (``None``: VGGT-1B).
        camera_config: :class:`~vist3a.recon.config.CameraHeadConfig` fields.
        depth_config, point_config: :class:`~vist3a.recon.config.DPTConfig` fields.
        track_config: :class:`~vist3a.recon.config.TrackHeadConfig` fields.
        heads: which heads to build, a subset of ``("camera", "depth", "point", "track")``. The track head is
            off by default; it only runs when ``query_points`` are given.
        fov_eps: added to ``tan(fov / 2)`` when decoding intrinsics (VGGT: 0).

    Example:
        >>> model = VGGT.from_official_config(constructor)       # or vist3a.recon.vggt_from_pretrained(...)
        >>> out = model(images)                                   # images [B, V, 3, H, W] in [0, 1]
        >>> out.depth.shape, out.cameras.w2c.shape                # [B, V, H, W], [B, V, 3, 4]
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        aggregator_config: dict | None = None,
        camera_config: dict | None = None,
        depth_config: dict | None = None,
        point_config: dict | None = None,
        track_config: dict | None = None,
        heads: tuple[str, ...] = DEFAULT_HEADS,
        fov_eps: float = 0.0,
    ) -> None:
        super().__init__()
        unknown = sorted(set(heads) - set(VGGT_HEADS))
        if unknown:
            raise ValueError(f"VGGT `heads` must be a subset of {VGGT_HEADS}, got unknown {unknown}")
        agg_cfg = from_dict(AggregatorConfig, aggregator_config)
        dim_in = 2 * agg_cfg.embed_dim
        patch = agg_cfg.patch_size
        self.aggregator = Aggregator(agg_cfg)
        self.camera_head = CameraHead(dim_in, from_dict(CameraHeadConfig, camera_config)) if "camera" in heads else None
        self.point_head = (
            DPTHead(dim_in, from_dict(DPTConfig, point_config), patch, POINT_CHANNELS + 1, "inv_log", "expp1")
            if "point" in heads
            else None
        )
        self.depth_head = (
            DPTHead(dim_in, from_dict(DPTConfig, depth_config), patch, DEPTH_CHANNELS + 1, "exp", "expp1")
            if "depth" in heads
            else None
        )
        self.track_head = None
        if "track" in heads:
            from vist3a.recon.heads.track_head import TrackHead

            self.track_head = TrackHead(dim_in, from_dict(TrackHeadConfig, track_config), patch)

    @classmethod
    def from_official_config(cls, constructor: dict, **overrides) -> VGGT:
        """Build from the official constructor arguments (see :func:`vist3a.recon.convert.config_from_official`)."""
        from vist3a.recon.convert import config_from_official

        kind, kwargs = config_from_official(constructor)
        if kind != "vggt":
            raise ValueError(f"the official configuration describes a {kind!r} model, not VGGT")
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ stages
    def encode(self, images: torch.Tensor) -> AggregatorOutput:
        """Aggregator on ``images [B, V, 3, H, W]`` in ``[0, 1]`` (every layer kept, as VGGT's heads read them).

        With :meth:`decode` this is the split a stitched model uses: it replaces the start of the aggregator's
        patch embedder and reuses :meth:`decode` unchanged (as :class:`~vist3a.recon.AnySplat` does).
        """
        check_images(images, self.aggregator.config.patch_size)
        return self.aggregator(images)

    def forward(
        self,
        images: torch.Tensor,
        query_points: torch.Tensor | None = None,
        frames_chunk_size: int | None = 8,
        return_aggregator: bool = False,
    ) -> VGGTOutput:
        """Predict cameras, depth and point maps (and tracks) for ``images [B, V, 3, H, W]`` in ``[0, 1]``.

        ``query_points [B, N, 2]``: (x, y) pixels in frame 0, tracked through all views by the track head.
        ``frames_chunk_size``: frames per chunk in the dense heads (memory bound; results do not depend on it).
        """
        check_images(images, self.aggregator.config.patch_size)
        self._check_query_points(query_points, images.shape[0])
        return self.decode(self.encode(images), images, query_points, frames_chunk_size, return_aggregator)

    def decode(
        self,
        agg: AggregatorOutput,
        images: torch.Tensor,
        query_points: torch.Tensor | None = None,
        frames_chunk_size: int | None = 8,
        return_aggregator: bool = False,
    ) -> VGGTOutput:
        """The heads on aggregator tokens, outside autocast in the heads' dtype. ``images [B, V, 3, H, W]`` give
        the output size only (no VGGT head reads the pixels); arguments as in :meth:`forward`."""
        check_images(images, self.aggregator.config.patch_size)
        self._check_query_points(query_points, images.shape[0])
        out = VGGTOutput(aggregator=agg if return_aggregator else None)
        image_hw = tuple(images.shape[-2:])
        heads = [h for h in (self.camera_head, self.depth_head, self.point_head, self.track_head) if h is not None]
        if not heads:
            return out
        context, tokens, images = heads_precision(heads[0], agg, images)
        prefix = agg.num_prefix_tokens
        with context:
            if self.camera_head is not None:
                pose_list = self.camera_head(tokens[-1], num_prefix_tokens=prefix)
                w2c, K = pose_encoding_to_w2c_K(pose_list[-1], image_hw, fov_eps=self.config.fov_eps)
                out.cameras = CameraPrediction(pose_list[-1], pose_list, w2c, K)
            if self.depth_head is not None:
                depth, out.depth_conf = self.depth_head(tokens, images, prefix, frames_chunk_size)
                out.depth = depth[..., 0]
            if self.point_head is not None:
                out.world_points, out.world_points_conf = self.point_head(tokens, images, prefix, frames_chunk_size)
            if query_points is not None:
                tracks, vis, conf = self.track_head(tokens, images, prefix, query_points.to(images.dtype))
                out.tracks = TrackPrediction(tracks[-1], tracks, vis, conf)
        return out

    def _check_query_points(self, query_points: torch.Tensor | None, batch: int) -> None:
        if query_points is None:
            return
        if self.track_head is None:
            raise ValueError("`query_points` were given but this VGGT has no track head (add 'track' to `heads`)")
        if query_points.ndim != 3 or query_points.shape[-1] != 2 or query_points.shape[0] != batch:
            raise ValueError(f"`query_points` must have shape [B, N, 2], got {list(query_points.shape)}")
