"""The compressed PLY of PlayCanvas / SuperSplat: 16 bytes per splat (plus 1 byte per SH coefficient), ~4-14x
smaller than a 3DGS PLY and read by SuperSplat, the PlayCanvas engine, splat-transform and gsply.

Written from the layout that PlayCanvas splat-transform (MIT) reads. Three elements, binary little endian:

- ``chunk`` (one per 256 splats, in file order): 18 floats ``min_x min_y min_z max_x max_y max_z``,
  ``min_scale_x .. max_scale_z`` (of the **log** scales, clamped to [-20, 20]) and ``min_r .. max_b`` (of the
  colour ``0.5 + SH_C0 * dc``);
- ``vertex``: 4 uints. ``packed_position`` and ``packed_scale``: 11-10-11 bit fractions (x in the top bits) of
  the chunk's range; ``packed_color``: 8-8-8-8 (r, g, b fractions of the chunk's colour range, then opacity);
  ``packed_rotation``: the unit quaternion in **PLY order (w, x, y, z)** as "smallest three": 2 bits index of the
  largest component (made positive), then the other three in index order, 10 bits each, ``q / sqrt(2) + 0.5``;
- ``sh`` (degree 1-3 only): uchar ``f_rest_*`` in the PLY's channel-major order, ``trunc((c / 8 + 0.5) * 256)``.

Fractions are rounded to the nearest level ``round(t * (2**bits - 1))``. Splats are sorted along a Morton (Z-order)
curve first, so each chunk is spatially compact and its ranges small. Axes: vist3a's OpenCV world unchanged, the
same frame as ``scene.ply`` (splat-transform's "PLY" space).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.splats.gaussians import SH_C0, Gaussians
from vist3a.splats.sh import DEFAULT_SH_DEGREE, resolve_sh_degree

logger = logging.getLogger(__name__)

CHUNK_SIZE = 256
CHUNK_PROPERTIES = (
    "min_x", "min_y", "min_z", "max_x", "max_y", "max_z",
    "min_scale_x", "min_scale_y", "min_scale_z", "max_scale_x", "max_scale_y", "max_scale_z",
    "min_r", "min_g", "min_b", "max_r", "max_g", "max_b",
)  # fmt: skip
VERTEX_PROPERTIES = ("packed_position", "packed_rotation", "packed_scale", "packed_color")
MAX_SH_DEGREE = 3  # the format has 9, 24 or 45 SH bytes per splat
_LOG_SCALE_CLAMP = 20.0
_ROT_NORM = math.sqrt(0.5)


def morton_order(means: np.ndarray, bits: int = 10) -> np.ndarray:
    """Indices sorting ``means [N, 3]`` along a 3D Z-order curve of ``2**bits`` cells per axis (stable)."""
    lo, hi = means.min(0), means.max(0)
    cells = np.clip((means - lo) / np.maximum(hi - lo, 1e-12) * ((1 << bits) - 1), 0, (1 << bits) - 1)
    cells = cells.astype(np.uint64)
    code = np.zeros(len(means), dtype=np.uint64)
    for bit in range(bits):
        for axis in range(3):
            code |= ((cells[:, axis] >> np.uint64(bit)) & np.uint64(1)) << np.uint64(3 * bit + 2 - axis)
    return np.argsort(code, kind="stable")


def _unorm(t: np.ndarray, bits: int) -> np.ndarray:
    top = (1 << bits) - 1
    return np.clip(np.floor(t * top + 0.5), 0, top).astype(np.uint32)


def _fraction(values: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``values [C, 256, 3]`` as fractions of per-chunk ranges ``[C, 1, 3]`` (0 where a range is empty)."""
    span = hi - lo
    t = np.where(span < 1e-5, 0.0, (values - lo) / np.where(span < 1e-5, 1.0, span))
    return np.clip(t, 0.0, 1.0)


def _pack_111011(t: np.ndarray) -> np.ndarray:
    return (_unorm(t[..., 0], 11) << 21) | (_unorm(t[..., 1], 10) << 11) | _unorm(t[..., 2], 11)


def _unpack_111011(v: np.ndarray) -> np.ndarray:
    return np.stack([(v >> 21) / 2047.0, ((v >> 11) & 0x3FF) / 1023.0, (v & 0x7FF) / 2047.0], axis=-1)


def _pack_rotations(quats: np.ndarray) -> np.ndarray:
    q = quats / np.linalg.norm(quats, axis=-1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=-1)
    q = np.where(np.take_along_axis(q, largest[..., None], axis=-1) < 0, -q, q)
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]
    rest = _unorm(np.take_along_axis(q, others, axis=-1) * _ROT_NORM + 0.5, 10)
    return (largest.astype(np.uint32) << 30) | (rest[..., 0] << 20) | (rest[..., 1] << 10) | rest[..., 2]


def _unpack_rotations(v: np.ndarray) -> np.ndarray:
    largest = (v >> 30).astype(np.int64)
    rest = (np.stack([(v >> 20) & 0x3FF, (v >> 10) & 0x3FF, v & 0x3FF], axis=-1) / 1023.0 - 0.5) / _ROT_NORM
    q = np.zeros((len(v), 4))
    others = np.array([[j for j in range(4) if j != i] for i in range(4)])[largest]
    np.put_along_axis(q, others, rest, axis=1)
    q[np.arange(len(v)), largest] = np.sqrt(np.clip(1.0 - (rest**2).sum(1), 0.0, None))
    return q


def save_compressed_ply(
    gaussians: Gaussians, path: str | os.PathLike, *, sh_degree: int | None = DEFAULT_SH_DEGREE
) -> Path:
    """Write ``gaussians`` as a PlayCanvas compressed PLY (atomically); returns the path.

    ``sh_degree``: highest band kept, at most 3 (the format's limit). Splats are reordered (Morton order).
    ``ValueError`` for zero splats or non-finite parameters.
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    n = len(gaussians)
    if n == 0:
        raise ValueError("save_compressed_ply: gaussians must contain at least one splat, got 0")
    bad = int((~gaussians.is_finite()).sum())
    if bad:
        raise ValueError(f"save_compressed_ply: {bad} of {n} splats have NaN or infinite parameters")
    degree = min(resolve_sh_degree(sh_degree, gaussians.sh_degree), MAX_SH_DEGREE)
    g = gaussians.with_sh_degree(degree).detach().to(device="cpu", dtype=torch.float64)
    order = morton_order(g.means.numpy())
    num_chunks = math.ceil(n / CHUNK_SIZE)
    padded = np.concatenate([order, np.full(num_chunks * CHUNK_SIZE - n, order[-1])])  # repeat the last splat

    def chunked(a: np.ndarray) -> np.ndarray:
        return a[padded].reshape(num_chunks, CHUNK_SIZE, *a.shape[1:])

    means = chunked(g.means.numpy())
    log_scales = chunked(np.log(np.clip(g.scales.numpy(), 1e-30, None)))
    rgb = chunked(g.sh[:, 0].numpy() * SH_C0 + 0.5)
    opacity = chunked(g.opacities.numpy())
    quats = chunked(g.quats.numpy())

    ranges = []
    for values, clamp in ((means, None), (log_scales, _LOG_SCALE_CLAMP), (rgb, None)):
        lo, hi = values.min(1, keepdims=True), values.max(1, keepdims=True)
        if clamp is not None:
            lo, hi = np.clip(lo, -clamp, clamp), np.clip(hi, -clamp, clamp)
        ranges.append((lo, hi))
    (p_lo, p_hi), (s_lo, s_hi), (c_lo, c_hi) = ranges
    colour = _fraction(rgb, c_lo, c_hi)
    packed_color = (
        (_unorm(colour[..., 0], 8) << 24) | (_unorm(colour[..., 1], 8) << 16)
        | (_unorm(colour[..., 2], 8) << 8) | _unorm(opacity, 8)
    )  # fmt: skip
    columns = {
        "packed_position": _pack_111011(_fraction(means, p_lo, p_hi)),
        "packed_rotation": _pack_rotations(quats),
        "packed_scale": _pack_111011(_fraction(log_scales, s_lo, s_hi)),
        "packed_color": packed_color,
    }
    chunk_table = np.concatenate([p_lo, p_hi, s_lo, s_hi, c_lo, c_hi], axis=-1)[:, 0].astype("<f4")  # [C, 18]
    chunk = np.empty(num_chunks, dtype=[(name, "<f4") for name in CHUNK_PROPERTIES])
    for i, name in enumerate(CHUNK_PROPERTIES):
        chunk[name] = chunk_table[:, i]
    vertex = np.empty(n, dtype=[(name, "<u4") for name in VERTEX_PROPERTIES])
    for name, values in columns.items():
        vertex[name] = values.reshape(-1)[:n]
    elements = [PlyElement.describe(chunk, "chunk"), PlyElement.describe(vertex, "vertex")]
    if degree > 0:
        rest = g.sh[:, 1:].numpy()[order].transpose(0, 2, 1).reshape(n, -1)  # channel-major, as f_rest_*
        quantized = np.clip(np.trunc((rest / 8.0 + 0.5) * 256.0), 0, 255).astype(np.uint8)
        sh = np.empty(n, dtype=[(f"f_rest_{i}", "u1") for i in range(quantized.shape[1])])
        for i in range(quantized.shape[1]):
            sh[f"f_rest_{i}"] = quantized[:, i]
        elements.append(PlyElement.describe(sh, "sh"))
    ply = PlyData(elements, text=False, byte_order="<", comments=["vist3a compressed ply (PlayCanvas layout)"])
    with atomic_path(path) as tmp:
        ply.write(str(tmp))
    logger.info("wrote %d splats (%d chunks, SH degree %d) to %s", n, num_chunks, degree, path)
    return path


def is_compressed_ply(path: str | os.PathLike) -> bool:
    """Whether the PLY header at ``path`` declares the ``chunk`` + packed ``vertex`` layout."""
    with open(path, "rb") as handle:
        header = handle.read(4096).split(b"end_header", 1)[0]
    return b"element chunk" in header and b"packed_position" in header


def load_compressed_ply(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Gaussians:
    """Read a compressed PLY (12 or 18 chunk properties, SH degree 0-3) into :class:`Gaussians`."""
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: file does not exist")
    try:
        ply = PlyData.read(str(path))
        chunk, vertex = ply["chunk"].data, ply["vertex"].data
    except (KeyError, ValueError, EOFError) as exc:
        raise UserInputError(f"{path}: not a compressed PLY ({exc})") from None
    n = len(vertex)
    if n == 0 or len(chunk) != math.ceil(n / CHUNK_SIZE):
        raise UserInputError(f"{path}: {len(chunk)} chunks do not match {n} splats of {CHUNK_SIZE} per chunk")
    ci = np.arange(n) // CHUNK_SIZE

    def lerp(prefix: str, axes: tuple[str, ...], t: np.ndarray) -> np.ndarray:
        lo = np.stack([chunk[f"min_{prefix}{a}"] for a in axes], 1)[ci].astype(np.float64)
        hi = np.stack([chunk[f"max_{prefix}{a}"] for a in axes], 1)[ci].astype(np.float64)
        return lo + (hi - lo) * t

    packed_color = vertex["packed_color"].astype(np.uint32)
    c = np.stack([(packed_color >> s) & 0xFF for s in (24, 16, 8, 0)], 1) / 255.0
    has_colour_range = "min_r" in chunk.dtype.names
    rgb = lerp("", ("r", "g", "b"), c[:, :3]) if has_colour_range else c[:, :3]
    dc = (rgb - 0.5) / SH_C0
    rest = np.zeros((n, 0, 3))
    if "sh" in ply:
        names = ply["sh"].data.dtype.names
        raw = np.stack([ply["sh"].data[f"f_rest_{i}"] for i in range(len(names))], 1).astype(np.float64)
        unit = np.where(raw == 0, 0.0, np.where(raw == 255, 1.0, (raw + 0.5) / 256.0))
        rest = ((unit - 0.5) * 8.0).reshape(n, 3, -1).transpose(0, 2, 1)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64)).to(device=device, dtype=dtype)

    return Gaussians(
        means=t(lerp("", ("x", "y", "z"), _unpack_111011(vertex["packed_position"].astype(np.uint32)))),
        quats=t(_unpack_rotations(vertex["packed_rotation"].astype(np.uint32))),
        scales=t(np.exp(lerp("scale_", ("x", "y", "z"), _unpack_111011(vertex["packed_scale"].astype(np.uint32))))),
        opacities=t(c[:, 3]),
        sh=t(np.concatenate([dc[:, None], rest], axis=1)),
    )
