"""Signed distance functions of the world's shapes, and their extents.

Every shape is defined in its *local frame*: centred on its bounding box, ``y`` up, standing on the plane
``y = -half_height``, of half-extent ``s`` (the object's size). Functions take the three coordinates as
separate tensors (``x, y, z`` of any equal shape), which keeps the ray-marcher's element-wise maths
contiguous; ``s`` is a float or a tensor broadcastable to them (one size per ray when a batch of scenes
is rendered together). Distances are exact for sphere, cube, cylinder, cone and torus; the pyramid uses the largest
signed distance to its five face planes, which is exact inside and a lower bound outside (it is
1-Lipschitz and never overshoots, so sphere tracing stays correct, only a little slower near edges).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from vist3a.world.vocab import SHAPES
from vist3a.world.vocab import check_word as _check

Size = float | Tensor  # a scalar, or one value per point

# Shape proportions relative to the half-extent ``s``.
_CUBE_HALF = 0.8  # half side
_CYL_RADIUS, _CYL_HALF_H = 0.8, 1.0
_CONE_RADIUS, _CONE_HALF_H = 1.0, 1.0
_PYR_HALF_BASE, _PYR_HALF_H = 0.85, 1.0
_TORUS_MAJOR, _TORUS_MINOR = 0.7, 0.3


@dataclass(frozen=True)
class ShapeExtent:
    """Extent of a shape of size ``s`` in its local frame.

    ``half_height``: half its height (its centre sits this high above what it stands on);
    ``footprint``: radius of the vertical cylinder around the y axis that contains it (used for layout);
    ``bound``: radius of the sphere around its centre that contains it (used to skip empty rays).
    """

    half_height: float
    footprint: float
    bound: float


def shape_extent(shape: str, s: float) -> ShapeExtent:
    """:class:`ShapeExtent` of ``shape`` with half-extent ``s``."""
    _check(shape, SHAPES, "shape")
    if shape == "sphere":
        return ShapeExtent(s, s, s)
    if shape == "cube":
        a = _CUBE_HALF * s
        return ShapeExtent(a, a * math.sqrt(2.0), a * math.sqrt(3.0))
    if shape == "cylinder":
        r, h = _CYL_RADIUS * s, _CYL_HALF_H * s
        return ShapeExtent(h, r, math.hypot(r, h))
    if shape == "cone":
        r, h = _CONE_RADIUS * s, _CONE_HALF_H * s
        return ShapeExtent(h, r, math.hypot(r, h))
    if shape == "pyramid":
        b, h = _PYR_HALF_BASE * s, _PYR_HALF_H * s
        return ShapeExtent(h, b * math.sqrt(2.0), math.sqrt(2.0 * b * b + h * h))
    # torus, lying flat
    big, small = _TORUS_MAJOR * s, _TORUS_MINOR * s
    return ShapeExtent(small, big + small, big + small)


def _length2(a: Tensor, b: Tensor) -> Tensor:
    return torch.sqrt(a * a + b * b)


def _sphere(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    return torch.sqrt(x * x + y * y + z * z) - s


def _cube(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    a = _CUBE_HALF * s
    qx, qy, qz = x.abs() - a, y.abs() - a, z.abs() - a
    outside = torch.sqrt(qx.clamp_min(0) ** 2 + qy.clamp_min(0) ** 2 + qz.clamp_min(0) ** 2)
    inside = torch.maximum(torch.maximum(qx, qy), qz).clamp_max(0)
    return outside + inside


def _cylinder(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    r, h = _CYL_RADIUS * s, _CYL_HALF_H * s
    dq = _length2(x, z) - r
    dy = y.abs() - h
    return _length2(dq.clamp_min(0), dy.clamp_min(0)) + torch.maximum(dq, dy).clamp_max(0)


def _segment_distance(px: Tensor, py: Tensor, ax: Size, ay: Size, bx: Size, by: Size) -> Tensor:
    """Euclidean distance from 2D points ``(px, py)`` to the segment a-b."""
    ex, ey = bx - ax, by - ay
    t = (((px - ax) * ex + (py - ay) * ey) / (ex * ex + ey * ey)).clamp(0.0, 1.0)
    return _length2(px - ax - t * ex, py - ay - t * ey)


def _cone(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    # Solid of revolution of the triangle (0, h) - (r, -h) - (0, -h) in the (radial q, y) half-plane; its
    # boundary there is the slant edge and the base edge (the axis edge is interior to the solid).
    r, h = _CONE_RADIUS * s, _CONE_HALF_H * s
    q = _length2(x, z)
    dist = torch.minimum(_segment_distance(q, y, 0.0, h, r, -h), _segment_distance(q, y, r, -h, 0.0, -h))
    inside = (y >= -h) & (q <= r * (h - y) / (2.0 * h))
    return torch.where(inside, -dist, dist)


def _pyramid(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    b, h = _PYR_HALF_BASE * s, _PYR_HALF_H * s
    # face through (b, -h) and (0, h) in the x-y plane: 2h*x + b*y - b*h = 0, outward normal (2h, b) / norm
    norm = (4.0 * h * h + b * b) ** 0.5  # works for float and per-ray tensor sizes alike
    side_x = (2.0 * h * x.abs() + b * y - b * h) / norm
    side_z = (2.0 * h * z.abs() + b * y - b * h) / norm
    return torch.maximum(torch.maximum(side_x, side_z), -(y + h))


def _torus(x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    big, small = _TORUS_MAJOR * s, _TORUS_MINOR * s
    return _length2(_length2(x, z) - big, y) - small


_SDF = {
    "sphere": _sphere,
    "cube": _cube,
    "cylinder": _cylinder,
    "cone": _cone,
    "pyramid": _pyramid,
    "torus": _torus,
}


def shape_sdf(shape: str, x: Tensor, y: Tensor, z: Tensor, s: Size) -> Tensor:
    """Signed distance (negative inside) from local points ``(x, y, z)`` to ``shape`` of half-extent ``s``."""
    return _SDF[_check(shape, SHAPES, "shape")](x, y, z, s)
