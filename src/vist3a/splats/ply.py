"""3DGS ``.ply`` files in the INRIA layout (the de-facto exchange format of Gaussian splats).

One ``vertex`` element, binary little-endian float32, properties in this order::

    x y z  nx ny nz  f_dc_0 f_dc_1 f_dc_2  f_rest_0 .. f_rest_{3(K-1)-1}  opacity  scale_0..2  rot_0..3

- ``f_rest_*`` is **channel-major**: all ``K - 1`` higher-band coefficients of red, then green, then blue,
  i.e. ``f_rest[c * (K - 1) + j] = sh[j + 1, c]``.
- ``opacity`` is stored as a **logit** and ``scale_*`` as **log** standard deviations; :func:`load_ply`
  applies sigmoid / exp, so :class:`~vist3a.splats.gaussians.Gaussians` always holds activated values.
- ``rot_0..3`` is the quaternion **(w, x, y, z)**; normals are written as zeros (unused by splatting).

:func:`load_ply` also reads files from other tools: any property order, no normals, SH degree 0..4,
extra properties (ignored), other float types and unnormalised quaternions (normalised on load).
Anything else (not a PLY, no 3DGS properties, truncated, NaN/inf values, zero splats) is a
:class:`~vist3a.errors.UserInputError` that names the file and the problem.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.sh import DEFAULT_SH_DEGREE, SH_MAX_DEGREE, resolve_sh_degree

logger = logging.getLogger(__name__)

_POSITION = ("x", "y", "z")
_NORMAL = ("nx", "ny", "nz")
_DC = ("f_dc_0", "f_dc_1", "f_dc_2")
_SCALE = ("scale_0", "scale_1", "scale_2")
_ROT = ("rot_0", "rot_1", "rot_2", "rot_3")
_REQUIRED = (*_POSITION, *_DC, "opacity", *_SCALE, *_ROT)
_REST_RE = re.compile(r"^f_rest_(\d+)$")
# opacities are clamped into (eps, 1 - eps) before the logit so that 0 and 1 stay finite on disk
_OPACITY_EPS = 1e-7
_MIN_SCALE = 1e-30


def ply_property_names(sh_degree: int) -> list[str]:
    """The property names :func:`save_ply` writes for splats of ``sh_degree``, in file order."""
    num_rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return [
        *_POSITION,
        *_NORMAL,
        *_DC,
        *(f"f_rest_{i}" for i in range(num_rest)),
        "opacity",
        *_SCALE,
        *_ROT,
    ]


def save_ply(gaussians: Gaussians, path: str | os.PathLike, *, sh_degree: int | None = DEFAULT_SH_DEGREE) -> Path:
    """Write ``gaussians`` as an INRIA-layout 3DGS PLY (atomically); returns the path.

    ``sh_degree``: the highest SH band written (default 3, the most current viewers read; ``None`` keeps every
    band). Higher bands are dropped, the kept coefficients are written unchanged; see
    :func:`~vist3a.splats.sh.sh_truncation_report` for what is lost.
    Raises ``ValueError`` for zero splats or non-finite parameters (such a file could not be read back).
    """
    from plyfile import PlyData, PlyElement

    path = Path(path)
    n = len(gaussians)
    if n == 0:
        raise ValueError(f"save_ply: gaussians must contain at least one splat, got 0 (path {path})")
    bad = int((~gaussians.is_finite()).sum())
    if bad:
        raise ValueError(f"save_ply: {bad} of {n} splats have NaN or infinite parameters; filter them first")

    degree = resolve_sh_degree(sh_degree, gaussians.sh_degree)
    if degree < gaussians.sh_degree:
        logger.info("save_ply: writing SH degree %d of %d (bands above dropped)", degree, gaussians.sh_degree)
    g = gaussians.with_sh_degree(degree).detach().to(device="cpu", dtype=torch.float64)
    k = g.sh.shape[1]
    opacities = g.opacities.clamp(_OPACITY_EPS, 1.0 - _OPACITY_EPS)
    scales = g.scales.clamp_min(_MIN_SCALE)
    n_clamped = int((scales != g.scales).any(dim=1).sum())
    if n_clamped:
        logger.warning("save_ply: %d splats had scales <= %g; stored as log(%g)", n_clamped, _MIN_SCALE, _MIN_SCALE)
    columns = [
        g.means,
        torch.zeros(n, 3, dtype=torch.float64),
        g.sh[:, 0, :],
        g.sh[:, 1:, :].transpose(1, 2).reshape(n, 3 * (k - 1)),  # channel-major
        torch.logit(opacities)[:, None],
        torch.log(scales),
        g.quats,
    ]
    table = torch.cat(columns, dim=1).numpy().astype("<f4")
    names = ply_property_names(g.sh_degree)
    dtype = np.dtype([(name, "<f4") for name in names])
    vertices = np.ascontiguousarray(table).view(dtype).reshape(n)
    ply = PlyData([PlyElement.describe(vertices, "vertex")], text=False, byte_order="<")
    with atomic_path(path) as tmp:
        ply.write(str(tmp))
    logger.info("wrote %d splats (SH degree %d) to %s", n, g.sh_degree, path)
    return path


def _read_ply(path: Path):
    from plyfile import PlyData, PlyParseError

    if not path.exists():
        raise UserInputError(f"{path}: file does not exist")
    if not path.is_file():
        raise UserInputError(f"{path}: is not a file")
    try:
        with open(path, "rb") as handle:
            magic = handle.read(4)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be read ({exc.strerror})") from None
    if magic[:3] != b"ply":
        raise UserInputError(f"{path}: not a PLY file (it does not start with 'ply')")
    try:
        # memory-mapped (plyfile's default; its non-mmap path parses row by row and is ~1000x slower);
        # plyfile still checks the size, so truncated files fail here. Columns are copied out by load_ply.
        return PlyData.read(str(path))
    except (PlyParseError, ValueError, EOFError, UnicodeDecodeError, MemoryError) as exc:
        raise UserInputError(f"{path}: not a valid PLY file, it may be truncated or corrupt ({exc})") from None


def is_point_cloud_ply(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a PLY of plain points (``x, y, z``, no 3DGS properties), e.g. a pointmap preset's
    ``points.ply``; False for splat files and for anything that is not a readable PLY."""
    try:
        vertex = {el.name: el for el in _read_ply(Path(path)).elements}.get("vertex")
    except UserInputError:
        return False
    names = [prop.name for prop in vertex.properties] if vertex is not None else []
    return all(c in names for c in _POSITION) and not any(c in names for c in (*_DC, "opacity"))


def read_point_ply(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A point-cloud PLY -> ``(xyz [M, 3] float32, rgb [M, 3] uint8, confidence [M] | None)`` (grey without
    colours; ``confidence`` from a ``confidence`` property, as vist3a writes for pointmaps)."""
    path = Path(path)
    vertex = {el.name: el for el in _read_ply(path).elements}.get("vertex")
    names = vertex.data.dtype.names if vertex is not None else ()
    if not all(c in names for c in _POSITION):
        raise UserInputError(f"{path}: a PLY without x, y, z vertex properties is not a point cloud")
    data = vertex.data
    xyz = np.stack([data[c] for c in _POSITION], 1).astype(np.float32)
    if all(c in names for c in ("red", "green", "blue")):
        rgb = np.stack([data[c] for c in ("red", "green", "blue")], 1).astype(np.uint8)
    else:
        rgb = np.full_like(xyz, 200, dtype=np.uint8)
    conf = np.asarray(data["confidence"], dtype=np.float32) if "confidence" in names else None
    if len(xyz) == 0:
        raise UserInputError(f"{path}: the point cloud has zero points")
    if not np.isfinite(xyz).all():
        raise UserInputError(f"{path}: point positions contain NaN or inf values")
    return xyz, rgb, conf


def _rest_names(names: list[str], path: Path) -> list[str]:
    """``f_rest_*`` names sorted by their integer index; they must be ``0 .. M-1`` with ``M = 3 (K - 1)``."""
    indexed = sorted((int(m.group(1)), name) for name in names if (m := _REST_RE.match(name)))
    indices = [i for i, _ in indexed]
    if indices != list(range(len(indices))):
        raise UserInputError(f"{path}: f_rest_* properties must be numbered 0..M-1 without gaps, got {indices}")
    m = len(indices)
    allowed = [3 * ((d + 1) ** 2 - 1) for d in range(SH_MAX_DEGREE + 1)]
    if m not in allowed:
        raise UserInputError(
            f"{path}: {m} f_rest_* properties do not match an SH degree 0..{SH_MAX_DEGREE} (expected one of {allowed})"
        )
    return [name for _, name in indexed]


def load_ply(
    path: str | os.PathLike, *, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
) -> Gaussians:
    """Read a 3DGS PLY (INRIA layout or compatible) into activated :class:`Gaussians`.

    See the module docstring for what is accepted; every rejection is a ``UserInputError`` naming ``path``.
    """
    path = Path(path)
    ply = _read_ply(path)
    elements = {el.name: el for el in ply.elements}
    if "vertex" not in elements:
        raise UserInputError(f"{path}: has no 'vertex' element, so it is not a 3DGS splat file")
    vertex = elements["vertex"]
    names = [prop.name for prop in vertex.properties]
    missing = [name for name in _REQUIRED if name not in names]
    if missing:
        hint = " (it looks like a plain point cloud or mesh)" if all(c in names for c in _POSITION) else ""
        raise UserInputError(f"{path}: not a 3DGS splat file{hint}; missing properties: {', '.join(missing)}")
    rest = _rest_names(names, path)
    known = set(_REQUIRED) | set(_NORMAL) | set(rest)
    extra = [name for name in names if name not in known]
    if extra:
        logger.info("%s: ignoring extra PLY properties %s", path, extra)
    n = vertex.count
    if n == 0:
        raise UserInputError(f"{path}: contains zero splats")

    data = vertex.data

    def column(*cols: str) -> np.ndarray:
        return np.stack([np.asarray(data[c], dtype=np.float64) for c in cols], axis=1)

    k = len(rest) // 3 + 1
    means = column(*_POSITION)
    dc = column(*_DC)
    rest_values = column(*rest) if rest else np.zeros((n, 0))
    sh = np.concatenate([dc[:, None, :], rest_values.reshape(n, 3, k - 1).transpose(0, 2, 1)], axis=1)
    opacity_logits = column("opacity")[:, 0]
    log_scales = column(*_SCALE)
    quats = column(*_ROT)

    raw = np.concatenate([means, sh.reshape(n, -1), opacity_logits[:, None], log_scales, quats], axis=1)
    bad = int((~np.isfinite(raw).all(axis=1)).sum())
    if bad:
        raise UserInputError(f"{path}: {bad} of {n} splats contain NaN or infinite values")
    norms = np.linalg.norm(quats, axis=1)
    zero_rot = int((norms < 1e-12).sum())
    if zero_rot:
        raise UserInputError(f"{path}: {zero_rot} of {n} splats have a zero-length rotation quaternion")
    unnormalised = int((np.abs(norms - 1.0) > 1e-3).sum())
    if unnormalised:
        logger.info("%s: normalising %d of %d rotation quaternions", path, unnormalised, n)
    with np.errstate(over="ignore"):
        scales = np.exp(log_scales)
        opacities = 1.0 / (1.0 + np.exp(-opacity_logits))
    if not np.isfinite(scales).all():
        raise UserInputError(f"{path}: some log-scales are too large (exp overflows); max is {log_scales.max():.4g}")

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(device=device, dtype=dtype)

    return Gaussians(
        means=tensor(means),
        quats=tensor(quats / norms[:, None]),
        scales=tensor(scales),
        opacities=tensor(opacities),
        sh=tensor(sh),
    )


def save_point_ply(
    path: str | os.PathLike, xyz: torch.Tensor | np.ndarray, rgb: torch.Tensor | np.ndarray,
    conf: torch.Tensor | np.ndarray | None = None,
) -> Path:
    """Binary point-cloud PLY: ``x y z`` (float32) and ``red green blue`` (uint8) of ``xyz [M, 3]``, ``rgb [M, 3]``
    uint8, plus ``confidence`` (float32) when ``conf [M]`` is given (``vist3a view`` filters by it); written
    atomically. The one point-cloud writer (VGGT scenes and reconstructions)."""
    from plyfile import PlyData, PlyElement

    dtype = [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")]
    dtype += [("confidence", "<f4")] if conf is not None else []
    table = np.empty(xyz.shape[0], dtype=dtype)
    xyz_np, rgb_np = _numpy(xyz), _numpy(rgb)
    for i, name in enumerate(("x", "y", "z")):
        table[name] = xyz_np[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        table[name] = rgb_np[:, i]
    if conf is not None:
        table["confidence"] = _numpy(conf)
    path = Path(path)
    with atomic_path(path) as tmp:
        PlyData([PlyElement.describe(table, "vertex")], text=False, byte_order="<").write(str(tmp))
    return path


def _numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    return array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
