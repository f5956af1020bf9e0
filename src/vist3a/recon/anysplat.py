"""AnySplat (Jiang et al., 2025): feed-forward 3D Gaussian splats and cameras from unposed views.

A VGGT backbone (aggregator, camera head, depth head) plus a DPT Gaussian head that also sees the RGB
frames. Per pixel: depth is unprojected with the predicted cameras to a world point; the Gaussian head gives
raw parameters and a confidence. Points and parameters are fused per voxel (softmax of the confidence)
and activated into Gaussians (:mod:`vist3a.recon.gaussian_ops`).

Facts from InternRobotics/AnySplat (as vendored by gohyojun15/VIST3A); independent implementation whose
parameter names map 1:1 to the official checkpoint (``lhjiang/anysplat``) via :mod:`vist3a.recon.convert`.
Checked against the official golden vectors (``oracles/anysplat_tiny``). The official model stores the
aggregator in bfloat16 and runs it under CUDA autocast; here everything runs in the model's dtype (use
``torch.autocast`` for the official mixed precision).
"""

from __future__ import annotations

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin

from vist3a.cameras import pose_encoding_to_w2c_K
from vist3a.recon import gaussian_ops
from vist3a.recon.aggregator import Aggregator, AggregatorOutput
from vist3a.recon.config import AggregatorConfig, CameraHeadConfig, DPTConfig, from_dict
from vist3a.recon.heads import CameraHead, DPTHead, GaussianHead
from vist3a.recon.outputs import AnySplatOutput, CameraPrediction
from vist3a.recon.vggt import DEPTH_CHANNELS, check_images, heads_precision

# Values the official code pads shorter scenes with when batching a different number of Gaussians.
PAD_FEATURE = -1e10
PAD_POINT = -1e4
DEFAULT_INTERMEDIATE_LAYERS = (4, 11, 17, 23)


def map_density_to_opacity(density: torch.Tensor, exponent_log2: float) -> torch.Tensor:
    """AnySplat's density -> opacity curve ``0.5 (1 - (1 - p)^e + p^(1/e))``, ``e = 2^exponent_log2``.

    ``exponent_log2 = 0`` (the released configuration) is the identity.
    """
    if exponent_log2 == 0:
        return density
    e = 2.0**exponent_log2
    return 0.5 * (1 - (1 - density) ** e + density ** (1 / e))


class AnySplat(ModelMixin, ConfigMixin):
    """AnySplat encoder: views in, Gaussians and cameras out.

    Args:
        aggregator_config: :class:`~vist3a.recon.config.AggregatorConfig` fields (``None``: the VGGT-1B backbone).
        camera_config: :class:`~vist3a.recon.config.CameraHeadConfig` fields.
        depth_config, gaussian_config: :class:`~vist3a.recon.config.DPTConfig` fields.
        intermediate_layer_idx: aggregator layers the trunk returns (the last layer is always added).
        sh_degree: SH degree of the predicted colours (raw channels ``1 + 7 + 3 (d + 1)²``).
        voxel_size: voxel edge (world units) for the fusion of per-pixel Gaussians.
        voxelize: fuse per voxel (released: True) or keep one Gaussian per valid pixel.
        opacity_exponent_log2: see :func:`map_density_to_opacity` (official ``opacity_mapping.initial``).
        render_conf / conf_threshold: keep only pixels whose depth confidence exceeds the ``conf_threshold``
            quantile (released: off).
        fov_eps: added to ``tan(fov / 2)`` when decoding intrinsics (AnySplat: 1e-3).
        norm_constants_dtype: precision of the ImageNet normalisation constants. The official model casts the
            aggregator, buffers included, to bfloat16, so the released behaviour is ``"bfloat16"``.

    Example:
        >>> model = vist3a.recon.anysplat_from_pretrained("lhjiang/anysplat")
        >>> out = model(images)                     # [B, V, 3, 448, 448] in [0, 1]
        >>> out.gaussians[0], out.cameras.w2c       # vist3a.splats.Gaussians, [B, V, 3, 4]
    """

    _supports_gradient_checkpointing = True

    @register_to_config
    def __init__(
        self,
        aggregator_config: dict | None = None,
        camera_config: dict | None = None,
        depth_config: dict | None = None,
        gaussian_config: dict | None = None,
        intermediate_layer_idx: tuple[int, ...] = DEFAULT_INTERMEDIATE_LAYERS,
        sh_degree: int = 4,
        voxel_size: float = 0.002,
        voxelize: bool = True,
        opacity_exponent_log2: float = 0.0,
        render_conf: bool = False,
        conf_threshold: float = 0.1,
        fov_eps: float = 1e-3,
        norm_constants_dtype: str = "bfloat16",
    ) -> None:
        super().__init__()
        agg_cfg = from_dict(AggregatorConfig, aggregator_config)
        bad = [i for i in intermediate_layer_idx if not 0 <= int(i) < agg_cfg.depth]
        if bad:
            raise ValueError(f"`intermediate_layer_idx` entries must be in [0, {agg_cfg.depth}), got {bad}")
        if voxel_size <= 0:
            raise ValueError(f"`voxel_size` must be positive, got {voxel_size}")
        dim_in = 2 * agg_cfg.embed_dim
        patch = agg_cfg.patch_size
        self.raw_dim = gaussian_ops.raw_gaussian_dim(sh_degree)
        if norm_constants_dtype not in ("bfloat16", "float32"):
            raise ValueError(f"`norm_constants_dtype` must be 'bfloat16' or 'float32', got {norm_constants_dtype!r}")
        self.aggregator = Aggregator(agg_cfg, getattr(torch, norm_constants_dtype))
        self.camera_head = CameraHead(dim_in, from_dict(CameraHeadConfig, camera_config))
        self.depth_head = DPTHead(dim_in, from_dict(DPTConfig, depth_config), patch, DEPTH_CHANNELS + 1, "exp", "expp1")
        # + 1: the confidence channel of the voxel fusion
        self.gaussian_head = GaussianHead(dim_in, from_dict(DPTConfig, gaussian_config), patch, self.raw_dim + 1)

    @classmethod
    def from_official_config(cls, constructor: dict, **overrides) -> AnySplat:
        """Build from the official constructor arguments (see :func:`vist3a.recon.convert.config_from_official`)."""
        from vist3a.recon.convert import config_from_official

        kind, kwargs = config_from_official(constructor)
        if kind != "anysplat":
            raise ValueError(f"the official configuration describes a {kind!r} model, not AnySplat")
        kwargs.update(overrides)
        return cls(**kwargs)

    # ------------------------------------------------------------------ stages
    def encode(self, images: torch.Tensor) -> AggregatorOutput:
        """Aggregator on ``images [B, V, 3, H, W]`` in ``[0, 1]``, keeping ``intermediate_layer_idx``."""
        check_images(images, self.aggregator.config.patch_size)
        return self.aggregator(images, self.config.intermediate_layer_idx)

    def forward(
        self,
        images: torch.Tensor,
        voxelize: bool | None = None,
        frames_chunk_size: int | None = 8,
        return_aggregator: bool = False,
    ) -> AnySplatOutput:
        """Views ``[B, V, 3, H, W]`` (RGB in ``[0, 1]``) -> Gaussians, cameras, depth. ``voxelize`` overrides config."""
        return self.decode(self.encode(images), images, voxelize, frames_chunk_size, return_aggregator)

    def decode(
        self,
        agg: AggregatorOutput,
        images: torch.Tensor,
        voxelize: bool | None = None,
        frames_chunk_size: int | None = 8,
        return_aggregator: bool = False,
    ) -> AnySplatOutput:
        """Heads + Gaussians from aggregator tokens. ``images`` give the size and the RGB for the Gaussian head."""
        check_images(images, self.aggregator.config.patch_size)
        image_hw = tuple(images.shape[-2:])
        prefix = agg.num_prefix_tokens
        context, tokens, images = heads_precision(self.camera_head, agg, images)
        with context:
            pose_list = self.camera_head(tokens[-1], num_prefix_tokens=prefix)
            w2c, K = pose_encoding_to_w2c_K(pose_list[-1], image_hw, fov_eps=self.config.fov_eps)
            depth, depth_conf = self.depth_head(tokens, images, prefix, frames_chunk_size)
            depth = depth[..., 0]
            points = gaussian_ops.unproject_depth(depth, w2c, K)
            if self.config.render_conf:
                threshold = torch.quantile(depth_conf.flatten(0, 1), self.config.conf_threshold)
                valid = depth_conf > threshold
            else:
                valid = torch.ones_like(depth_conf, dtype=torch.bool)
            head = self.gaussian_head(tokens, images, prefix, frames_chunk_size)
            raw, gs_conf = head[:, :, : self.raw_dim], head[:, :, self.raw_dim]
            official, counts = self.gaussians_from_pixels(points, raw, gs_conf, valid, voxelize)
        gaussians = [
            gaussian_ops.official_to_gaussians({k: v[b, :n] for k, v in official.items()}) for b, n in enumerate(counts)
        ]
        views = images.shape[1]
        return AnySplatOutput(
            gaussians=gaussians,
            gaussians_official=official,
            num_gaussians=counts,
            cameras=CameraPrediction(pose_list[-1], pose_list, w2c, K),
            depth=depth,
            depth_conf=depth_conf,
            points=points,
            gaussian_raw=raw,
            gaussian_conf=gs_conf,
            conf_valid_mask=valid,
            scene_scale=gaussian_ops.scene_scale(points),
            voxelize_ratio=gaussian_ops.voxelize_ratio(max(counts), views * image_hw[0] * image_hw[1]),
            aggregator=agg if return_aggregator else None,
        )

    def gaussians_from_pixels(
        self,
        points: torch.Tensor,
        raw: torch.Tensor,
        conf: torch.Tensor,
        valid: torch.Tensor,
        voxelize: bool | None = None,
    ) -> tuple[dict[str, torch.Tensor], list[int]]:
        """Per-pixel points ``[B, V, H, W, 3]``, raw channels ``[B, V, D, H, W]``, confidence and validity
        ``[B, V, H, W]`` -> (official batch-major Gaussians dict padded to the largest scene, counts per scene).

        Voxelised: points/features are fused per voxel (:func:`~vist3a.recon.gaussian_ops.voxel_fuse`, all pixels);
        otherwise one Gaussian per valid pixel in (view, row, column) order.
        """
        voxelize = self.config.voxelize if voxelize is None else voxelize
        rows_pts, rows_raw = [], []
        for b in range(points.shape[0]):
            pts, feats, cf = gaussian_ops.flatten_pixels(raw[b], points[b], conf[b])
            if voxelize:
                pts, feats = gaussian_ops.voxel_fuse(pts, feats, cf, self.config.voxel_size)
            else:
                keep = valid[b].reshape(-1)
                pts, feats = pts[keep], feats[keep]
            rows_pts.append(pts)
            rows_raw.append(feats)
        counts = [p.shape[0] for p in rows_pts]
        if min(counts) < 2:
            raise ValueError(f"AnySplat produced fewer than 2 Gaussians for a scene (counts {counts})")
        longest = max(counts)
        means = torch.stack([_pad_rows(p, longest, PAD_POINT) for p in rows_pts])
        feats = torch.stack([_pad_rows(f, longest, PAD_FEATURE) for f in rows_raw])
        official = gaussian_ops.anysplat_gaussians_from_raw(feats, means, self.config.sh_degree)
        official["opacities"] = map_density_to_opacity(official["opacities"], self.config.opacity_exponent_log2)
        return official, counts


def _pad_rows(x: torch.Tensor, rows: int, value: float) -> torch.Tensor:
    if x.shape[0] == rows:
        return x
    pad = x.new_full((rows - x.shape[0], *x.shape[1:]), value)
    return torch.cat((x, pad), 0)
