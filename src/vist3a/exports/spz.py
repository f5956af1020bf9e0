"""Niantic's ``.spz`` (version 3): gzip-compressed, about 10x smaller than a 3DGS PLY.

Written from the format's public description (nianticlabs/spz, MIT). The gzip stream holds a 16-byte header
``<u4 magic 0x5053474e, u4 version, u4 num_points, u1 sh_degree, u1 fractional_bits, u1 flags, u1 reserved>``
then one array per attribute, in this order, each for all splats:

- positions: 3 x 24-bit signed fixed point (little endian), ``value * 2**fractional_bits`` (12: ~0.25 mm per unit
  metre; fewer when a coordinate exceeds +-2047 so it still fits);
- alphas: ``u1 = round(opacity * 255)``;
- colours: ``u1 = round(dc * 0.15 * 255 + 127.5)``, ``dc`` the SH DC coefficient (not the RGB colour);
- scales: ``u1 = round((log(scale) + 10) * 16)``, so ``log(scale)`` in [-10, 5.94];
- rotations (v3): the unit quaternion in **(x, y, z, w)** order, "smallest three": 2 bits index of the largest
  component (made positive), then for each other component in index order 10 bits ``sign << 9 | round(511 *
  |q| / sqrt(1/2))``, the first one in the highest bits; (v2, read only: 3 bytes ``(x, y, z) * 127.5 + 127.5``);
- SH bands 1.. (degree 0-3 written by default): ``u1 = round(c * 128) + 128``, coefficient-major with the colour
  channel fastest; band 1 rounded to 5 significant bits, higher bands to 4 (Niantic's defaults).

Axes: positions, rotations and SH are stored **unconverted**, in vist3a's OpenCV world (x right, y down, z forward),
as Niantic's library does for the ``UNSPECIFIED`` coordinate system and as PlayCanvas splat-transform reads and
writes them, so ``scene.spz`` opens in the same orientation as ``scene.ply``. (The format's nominal RUB frame
would be ``(x, -y, -z)``.)
"""

from __future__ import annotations

import gzip
import itertools
import logging
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.sh import DEFAULT_SH_DEGREE, resolve_sh_degree

logger = logging.getLogger(__name__)

MAGIC = 0x5053474E  # "NGSP" little endian
VERSION = 3
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
FRACTIONAL_BITS = 12
SH1_BITS, SH_REST_BITS = 5, 4
FLAG_ANTIALIASED = 0x1
_SQRT_HALF = math.sqrt(0.5)
_OTHERS = np.array([[j for j in range(4) if j != i] for i in range(4)])  # [4, 3] non-largest indices in order


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def _fractional_bits(means: np.ndarray) -> int:
    """12, or fewer so that every coordinate fits 24-bit signed fixed point."""
    extent = float(np.abs(means).max(initial=0.0))
    bits = FRACTIONAL_BITS
    while bits > 0 and extent * (1 << bits) >= (1 << 23) - 1:
        bits -= 1
    if extent * (1 << bits) >= (1 << 23) - 1:
        raise ValueError(f"save_spz: coordinates up to {extent:.4g} do not fit 24-bit fixed point")
    return bits


def _pack_rotations(quats_wxyz: np.ndarray) -> np.ndarray:
    q = quats_wxyz[:, [1, 2, 3, 0]]  # -> (x, y, z, w)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    largest = np.argmax(np.abs(q), axis=1)
    q = np.where(q[np.arange(len(q)), largest][:, None] < 0, -q, q)
    rest = np.take_along_axis(q, _OTHERS[largest], axis=1)  # [N, 3]
    mag = np.minimum(np.floor(511.0 * np.abs(rest) / _SQRT_HALF + 0.5), 511).astype(np.uint32)
    fields = ((rest < 0).astype(np.uint32) << 9) | mag
    packed = (largest.astype(np.uint32) << 30) | (fields[:, 0] << 20) | (fields[:, 1] << 10) | fields[:, 2]
    return packed.astype("<u4")


def _unpack_rotations(packed: np.ndarray) -> np.ndarray:
    """v3 smallest-three -> ``[N, 4]`` (w, x, y, z)."""
    packed = packed.astype(np.uint32)
    largest = (packed >> 30).astype(np.int64)
    fields = np.stack([(packed >> 20) & 0x3FF, (packed >> 10) & 0x3FF, packed & 0x3FF], axis=1)
    rest = _SQRT_HALF * (fields & 0x1FF) / 511.0 * np.where(fields >> 9, -1.0, 1.0)
    q = np.zeros((len(packed), 4))
    np.put_along_axis(q, _OTHERS[largest], rest, axis=1)
    q[np.arange(len(q)), largest] = np.sqrt(np.clip(1.0 - (rest**2).sum(1), 0.0, None))
    return q[:, [3, 0, 1, 2]]


def _quantize_sh(values: np.ndarray, bits: int) -> np.ndarray:
    q = np.round(values * 128.0) + 128.0
    bucket = 1 << (8 - bits)
    q = np.floor((q + bucket // 2) / bucket) * bucket
    return np.clip(q, 0, 255).astype(np.uint8)


def encode_spz(
    gaussians: Gaussians, *, sh_degree: int | None = DEFAULT_SH_DEGREE, antialiased: bool = False
) -> bytes:
    """The uncompressed ``.spz`` payload (header + arrays) of ``gaussians``; :func:`save_spz` gzips it."""
    n = len(gaussians)
    if n == 0:
        raise ValueError("save_spz: gaussians must contain at least one splat, got 0")
    bad = int((~gaussians.is_finite()).sum())
    if bad:
        raise ValueError(f"save_spz: {bad} of {n} splats have NaN or infinite parameters; filter them first")
    degree = resolve_sh_degree(sh_degree, gaussians.sh_degree)
    g = gaussians.with_sh_degree(degree).detach().to(device="cpu", dtype=torch.float64)
    means = g.means.numpy()
    bits = _fractional_bits(means)
    fixed = np.round(means * (1 << bits)).astype(np.int64).reshape(-1)
    positions = (fixed & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3]
    alphas = _u8(g.opacities.numpy() * 255.0)
    colors = _u8(g.sh[:, 0].numpy() * (COLOR_SCALE * 255.0) + 127.5)
    scales = _u8((np.log(np.clip(g.scales.numpy(), 1e-30, None)) + 10.0) * 16.0)
    rotations = _pack_rotations(g.quats.numpy())
    rest = g.sh[:, 1:].numpy()  # [N, K-1, 3]: coefficient-major, channel fastest
    sh = np.concatenate(
        [_quantize_sh(rest[:, :3], SH1_BITS).reshape(n, -1), _quantize_sh(rest[:, 3:], SH_REST_BITS).reshape(n, -1)],
        axis=1,
    )
    header = HEADER.pack(MAGIC, VERSION, n, degree, bits, FLAG_ANTIALIASED if antialiased else 0, 0)
    arrays = (positions, alphas, colors, scales, rotations.view(np.uint8), sh)
    return header + b"".join(np.ascontiguousarray(a).tobytes() for a in arrays)


def save_spz(
    gaussians: Gaussians,
    path: str | os.PathLike,
    *,
    sh_degree: int | None = DEFAULT_SH_DEGREE,
    antialiased: bool = False,
) -> Path:
    """Write ``gaussians`` as a version-3 ``.spz`` file (atomically); returns the path.

    ``sh_degree`` as in :func:`~vist3a.splats.save_ply` (default 3). ``antialiased`` sets the header flag for
    splats trained with Mip-Splatting's antialiasing. ``ValueError`` for zero splats or non-finite parameters.
    """
    path = Path(path)
    payload = encode_spz(gaussians, sh_degree=sh_degree, antialiased=antialiased)
    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(payload, compresslevel=6, mtime=0))
    logger.info("wrote %d splats to %s", len(gaussians), path)
    return path


def decode_spz(payload: bytes, name: str = "spz") -> Gaussians:
    """Parse an uncompressed ``.spz`` payload (versions 2 and 3) into float64 :class:`Gaussians`."""
    if len(payload) < HEADER.size:
        raise UserInputError(f"{name}: too short for an .spz header")
    magic, version, n, degree, bits, flags, _ = HEADER.unpack_from(payload)
    if magic != MAGIC:
        raise UserInputError(f"{name}: not an .spz file (magic {magic:#x}, expected {MAGIC:#x})")
    if version not in (2, 3):
        raise UserInputError(f"{name}: .spz version {version} is not supported (versions 2 and 3 are)")
    if not 0 <= degree <= 4:
        raise UserInputError(f"{name}: SH degree {degree} is out of range 0..4")
    if n == 0:
        raise UserInputError(f"{name}: contains zero splats")
    rest = (degree + 1) ** 2 - 1
    rot_bytes = 4 if version >= 3 else 3
    sizes = [9 * n, n, 3 * n, 3 * n, rot_bytes * n, 3 * rest * n]
    if len(payload) < HEADER.size + sum(sizes):
        raise UserInputError(f"{name}: truncated ({len(payload)} bytes, {n} splats need {HEADER.size + sum(sizes)})")
    offsets = np.cumsum([HEADER.size, *sizes])
    buf = np.frombuffer(payload, dtype=np.uint8)
    pos_b, alpha_b, color_b, scale_b, rot_b, sh_b = (buf[a:b] for a, b in itertools.pairwise(offsets))

    b = pos_b.reshape(-1, 3).astype(np.int32)
    fixed = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = (fixed.astype(np.float64) / (1 << bits)).reshape(n, 3)
    if version >= 3:
        quats = _unpack_rotations(rot_b.view("<u4"))
    else:
        xyz = rot_b.reshape(n, 3) / 127.5 - 1.0
        quats = np.concatenate([np.sqrt(np.clip(1.0 - (xyz**2).sum(1, keepdims=True), 0, None)), xyz], axis=1)
    dc = (color_b.reshape(n, 3) / 255.0 - 0.5) / COLOR_SCALE
    sh_rest = (sh_b.reshape(n, rest, 3).astype(np.float64) - 128.0) / 128.0
    if flags & FLAG_ANTIALIASED:
        logger.info("%s: splats were trained with antialiasing (flag kept only as this note)", name)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))

    return Gaussians(
        means=t(means),
        quats=t(quats),
        scales=t(np.exp(scale_b.reshape(n, 3) / 16.0 - 10.0)),
        opacities=t(alpha_b / 255.0),
        sh=t(np.concatenate([dc[:, None, :], sh_rest], axis=1)),
    )


def load_spz(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Gaussians:
    """Read a ``.spz`` file (versions 2 and 3) into :class:`Gaussians`; ``UserInputError`` for bad files."""
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"{path}: file does not exist")
    try:
        payload = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as exc:
        raise UserInputError(f"{path}: not a gzip-compressed .spz file ({exc})") from None
    return decode_spz(payload, str(path)).to(device=device, dtype=dtype)
