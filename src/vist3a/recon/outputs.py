"""Typed outputs of the recon models.

Shapes use ``B`` batch, ``V`` views, ``H x W`` image size. Cameras follow :mod:`vist3a.cameras`: OpenCV,
world-to-camera ``w2c``, pixel intrinsics ``K`` with the principal point at ``(W / 2, H / 2)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from vist3a.cameras import invert_rigid, to_homogeneous
from vist3a.recon.aggregator import AggregatorOutput
from vist3a.splats import Gaussians


@dataclass
class CameraPrediction:
    """Predicted cameras.

    Attributes:
        pose_enc: ``[B, V, 9]`` last refinement step (``t``, ``q`` xyzw, ``fov_h``, ``fov_w``).
        pose_enc_list: every refinement step, each ``[B, V, 9]``.
        w2c: ``[B, V, 3, 4]`` world-to-camera extrinsics decoded from ``pose_enc``.
        K: ``[B, V, 3, 3]`` pixel intrinsics decoded from ``pose_enc``.
    """

    pose_enc: torch.Tensor
    pose_enc_list: list[torch.Tensor]
    w2c: torch.Tensor
    K: torch.Tensor

    @property
    def c2w(self) -> torch.Tensor:
        """``[B, V, 4, 4]`` camera-to-world."""
        return to_homogeneous(invert_rigid(self.w2c))

    def normalized_K(self, image_hw: tuple[int, int]) -> torch.Tensor:
        """``K`` with row 0 divided by ``W`` and row 1 by ``H`` (AnySplat's normalised intrinsics)."""
        height, width = image_hw
        scale = torch.tensor([1.0 / width, 1.0 / height, 1.0], dtype=self.K.dtype, device=self.K.device)
        return self.K * scale[:, None]


@dataclass
class TrackPrediction:
    """Point tracks of the VGGT track head (pixels; ``N`` query points from frame 0).

    Attributes:
        tracks: ``[B, V, N, 2]`` (x, y) of the last iteration; ``tracks_list`` every iteration.
        visibility / confidence: ``[B, V, N]`` in ``[0, 1]`` (``confidence`` may be ``None``).
    """

    tracks: torch.Tensor
    tracks_list: list[torch.Tensor]
    visibility: torch.Tensor
    confidence: torch.Tensor | None


@dataclass
class VGGTOutput:
    """Output of :class:`vist3a.recon.VGGT`. Heads that are not built give ``None``.

    Attributes:
        cameras: :class:`CameraPrediction` (VGGT decoding: ``f = (size / 2) / tan(fov / 2)``).
        depth / depth_conf: ``[B, V, H, W]`` depth along +z (exp activation) and its confidence (``1 + exp``).
        world_points / world_points_conf: ``[B, V, H, W, 3]`` point map and ``[B, V, H, W]`` confidence.
        tracks: :class:`TrackPrediction` when query points were given.
        aggregator: the aggregator output (when requested).
    """

    cameras: CameraPrediction | None = None
    depth: torch.Tensor | None = None
    depth_conf: torch.Tensor | None = None
    world_points: torch.Tensor | None = None
    world_points_conf: torch.Tensor | None = None
    tracks: TrackPrediction | None = None
    aggregator: AggregatorOutput | None = None


def scene_pointmap(out: object) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The world pointmap ``[B, V, H, W, 3]`` and its confidence ``[B, V, H, W]`` that a pointmap scene is made of.

    Where the decoder predicts depth and cameras, the points are the depth unprojected through the predicted
    cameras (VGGT's "depth and camera" branch, the default of its demo: VGGT reports it more accurate than its
    point head) with the depth confidence, so that every point projects back onto the pixel its colour comes from
    and the fly-through, renders and ``points.ply`` agree with the cameras; a point head trained less than the
    depth and camera heads (the nano VGGT's) can be off by many pixels. Decoders without a depth head give their
    point head's map with its confidence: MV-DUSt3R, whose ``depth`` and ``cameras`` are recovered *from* that map
    (no ``depth_conf``). ``(None, None)`` for decoders with neither.
    """
    from vist3a.cameras import K_from_edge_convention
    from vist3a.recon.gaussian_ops import unproject_depth

    depth, cameras = getattr(out, "depth", None), getattr(out, "cameras", None)
    depth_conf = getattr(out, "depth_conf", None)
    if depth is not None and depth_conf is not None and cameras is not None \
            and getattr(out, "world_points", None) is not None:
        K = K_from_edge_convention(cameras.K.float())  # pixel centres at integer coordinates, as unproject_depth
        points = unproject_depth(depth.float(), cameras.w2c.float(), K)
        return points, depth_conf
    return getattr(out, "world_points", None), getattr(out, "world_points_conf", None)


@dataclass
class AnySplatOutput:
    """Output of :class:`vist3a.recon.AnySplat`.

    Attributes:
        gaussians: one :class:`~vist3a.splats.Gaussians` per batch element (padding removed).
        gaussians_official: the official batch-major dictionary (``means [B, N, 3]``, ``covariances``,
            ``harmonics [B, N, 3, K]``, ``opacities``, ``scales``, ``rotations`` xyzw), padded to the largest
            scene like the official code (padding rows come from features ``-1e10`` and points ``-1e4``).
        num_gaussians: real (unpadded) count per batch element.
        cameras: :class:`CameraPrediction` (AnySplat decoding with ``fov_eps = 1e-3``).
        depth / depth_conf: ``[B, V, H, W]``.
        points: ``[B, V, H, W, 3]`` per-pixel world points (depth unprojected with the predicted cameras).
        gaussian_raw: ``[B, V, D, H, W]`` raw Gaussian-head channels (density, scale, rotation, SH).
        gaussian_conf: ``[B, V, H, W]`` raw confidence channel of the Gaussian head (voxel-fusion weights).
        conf_valid_mask: ``[B, V, H, W]`` pixels that may become Gaussians.
        scene_scale: scalar tensor, mean norm of ``points``.
        voxelize_ratio: ``max(num_gaussians) / (V * H * W)``.
        aggregator: the aggregator output (when requested).
    """

    gaussians: list[Gaussians]
    gaussians_official: dict[str, torch.Tensor]
    num_gaussians: list[int]
    cameras: CameraPrediction
    depth: torch.Tensor
    depth_conf: torch.Tensor
    points: torch.Tensor
    gaussian_raw: torch.Tensor
    gaussian_conf: torch.Tensor
    conf_valid_mask: torch.Tensor
    scene_scale: torch.Tensor
    voxelize_ratio: float
    aggregator: AggregatorOutput | None = field(default=None, repr=False)
