"""Is a generated scene 3D? Camera span and turntable checks that tell a scene from a 2.5D sheet.

A sheet (every view's splats at about the same depth from a camera that hardly moves) passes checks made at
the frames' own cameras: renders there resemble every frame. What it cannot do is turn:

- :func:`rotation_span_deg`: how far the predicted cameras turn (largest geodesic angle from the first
  camera); a decoded orbit or arc must give tens of degrees, a sheet gives ~2°.
- :func:`turntable_w2c` + :func:`colour_pixel_fraction`: render the Gaussians from the first camera moved
  around the objects' centre by ±θ about the scene's up axis and count the pixels of the named colours.
  Solid objects keep their area when the turntable turns; a sheet is foreshortened and breaks up.

Conventions: OpenCV world-to-camera ``[4, 4]`` (camera ``-y`` is up in the image), images ``[3, H, W]``
in [0, 1]; colours are the nano world's palette (:data:`vist3a.world.COLOURS`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch


def geodesic_deg(r_a: torch.Tensor, r_b: torch.Tensor) -> torch.Tensor:
    """Angle in degrees between rotations ``[..., 3, 3]``."""
    rel = r_a.transpose(-1, -2) @ r_b
    cos = (rel.diagonal(dim1=-2, dim2=-1).sum(-1) - 1.0) / 2.0
    return torch.rad2deg(torch.arccos(cos.clamp(-1.0, 1.0)))


def rotation_span_deg(w2c: torch.Tensor) -> float:
    """Largest rotation (degrees) of any camera of ``w2c [V, 3|4, 4]`` from the first one."""
    rot = w2c[:, :3, :3].double()
    return float(geodesic_deg(rot[:1].expand_as(rot), rot).max())


def colour_mask(image: torch.Tensor, colour: str, tolerance: float = 0.35) -> torch.Tensor:
    """``[H, W]`` bool: pixels of ``image [3, H, W]`` whose nearest palette colour is ``colour`` (within
    ``tolerance``), the judge of :func:`vist3a.evaluation.relations.colour_centroid_x`."""
    from vist3a.world import COLOURS

    names = list(COLOURS)
    palette = torch.tensor([COLOURS[n] for n in names], dtype=torch.float32)
    distance = (image.float().permute(1, 2, 0)[:, :, None, :] - palette).norm(dim=-1)
    best, nearest = distance.min(dim=-1)
    return (nearest == names.index(colour)) & (best < tolerance)


def colour_pixel_fraction(image: torch.Tensor, colour: str) -> float:
    """Share of ``image``'s pixels that show ``colour``."""
    return float(colour_mask(image, colour).float().mean())


def colour_centre(gaussians, colours: Sequence[str], tolerance: float = 0.35) -> torch.Tensor | None:
    """World point ``[3]``: coordinate-wise median of the means of the Gaussians whose base colour is one of
    ``colours`` (None when none is); the centre a turntable should turn around."""
    from vist3a.splats import sh_dc_to_rgb

    rgb = sh_dc_to_rgb(gaussians.sh[:, 0].float()).clamp(0.0, 1.0)  # [N, 3]
    keep = torch.zeros(rgb.shape[0], dtype=torch.bool)
    for colour in colours:
        keep |= colour_mask(rgb.T[:, :, None], colour)[:, 0]
    if int(keep.sum()) == 0:
        return None
    return gaussians.means[keep].float().median(dim=0).values


def turntable_w2c(w2c0: torch.Tensor, centre: torch.Tensor, angles_deg: Sequence[float]) -> torch.Tensor:
    """``[A, 4, 4]``: camera ``w2c0 [4, 4]`` carried around ``centre [3]`` by each angle about the camera's up
    axis (its ``-y`` in world coordinates), still looking the same way relative to the centre.

    Equivalent to turning the scene by ``-angle`` in front of a fixed camera.
    """
    w2c0 = w2c0.double()
    centre = centre.double()
    up = -w2c0[1, :3]  # camera -y axis (image up) in world coordinates: row 1 of R, negated
    up = up / up.norm()
    out = []
    for angle in angles_deg:
        a = math.radians(angle)
        k = torch.tensor([[0.0, -up[2], up[1]], [up[2], 0.0, -up[0]], [-up[1], up[0], 0.0]], dtype=torch.float64)
        rot = torch.eye(3, dtype=torch.float64) + math.sin(a) * k + (1 - math.cos(a)) * (k @ k)  # Rodrigues
        move = torch.eye(4, dtype=torch.float64)  # world -> world: rotate by -angle about the centre
        move[:3, :3] = rot.T
        move[:3, 3] = centre - rot.T @ centre
        out.append(w2c0 @ move)
    return torch.stack(out)


def turntable_views(scene, colours: Sequence[str], angles_deg: Sequence[float], size: int | None = None,
                    backend: str = "auto") -> torch.Tensor | None:
    """Renders ``[A, 3, S, S]`` of ``scene``'s Gaussians from its first camera carried around the centre of the
    ``colours``' Gaussians (:func:`turntable_w2c`); ``size`` defaults to the decoded frames' width. None when
    no Gaussian has one of the colours."""
    from vist3a.nano.train_recon import render_intrinsics
    from vist3a.splats import render

    gaussians = scene.gaussians.to(torch.float32)
    centre = colour_centre(gaussians, colours)
    if centre is None:
        return None
    size = int(scene.frames.shape[-1]) if size is None else int(size)
    w2c = turntable_w2c(scene.w2c[0].float(), centre, angles_deg).float()
    K = render_intrinsics(scene.K[0].float(), int(scene.image_size[1]), size).expand(len(angles_deg), 3, 3)
    return render(gaussians, w2c, K, size, size, backend=backend).colors.permute(0, 3, 1, 2).clamp(0.0, 1.0)
