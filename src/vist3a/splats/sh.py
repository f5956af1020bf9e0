"""Real spherical harmonics as used by 3D Gaussian splatting (degrees 0..4).

The basis is the real SH with the Condon–Shortley phase kept, ordered by band ``l`` and then
``m = -l .. l``: index ``l * l + l + m``. This is the convention of the INRIA 3DGS rasteriser and of
gsplat, so SH coefficients in PLY files written by those tools render identically here. For example the
degree-1 functions are ``(-c1 y, c1 z, -c1 x)`` with ``c1 = sqrt(3 / (4 pi))``.

The colour of a splat seen along the unit direction ``d`` (from the camera centre *to* the splat) is
``max(0, sum_k basis_k(d) * sh[k] + 0.5)``, per channel.
"""

from __future__ import annotations

import math

import torch

SH_MAX_DEGREE = 4

_PI = math.pi
# normalisation constants of the real SH, written from their closed forms
_C0 = 0.5 / math.sqrt(_PI)
_C1 = math.sqrt(3.0 / (4.0 * _PI))
_C2_XY = 0.5 * math.sqrt(15.0 / _PI)  # xy, yz, xz
_C2_Z = 0.25 * math.sqrt(5.0 / _PI)  # 3z^2 - 1
_C2_XX = 0.25 * math.sqrt(15.0 / _PI)  # x^2 - y^2
_C3_3 = 0.25 * math.sqrt(35.0 / (2.0 * _PI))
_C3_2 = 0.5 * math.sqrt(105.0 / _PI)
_C3_1 = 0.25 * math.sqrt(21.0 / (2.0 * _PI))
_C3_0 = 0.25 * math.sqrt(7.0 / _PI)
_C3_2B = 0.25 * math.sqrt(105.0 / _PI)
_C4_4 = 0.75 * math.sqrt(35.0 / _PI)
_C4_3 = 0.75 * math.sqrt(35.0 / (2.0 * _PI))
_C4_2 = 0.75 * math.sqrt(5.0 / _PI)
_C4_1 = 0.75 * math.sqrt(5.0 / (2.0 * _PI))
_C4_0 = (3.0 / 16.0) / math.sqrt(_PI)
_C4_2B = (3.0 / 8.0) * math.sqrt(5.0 / _PI)
_C4_4B = (3.0 / 16.0) * math.sqrt(35.0 / _PI)


def num_sh_coeffs(degree: int) -> int:
    """``(degree + 1) ** 2``, the number of basis functions up to ``degree``."""
    return (degree + 1) ** 2


def sh_basis(dirs: torch.Tensor, degree: int) -> torch.Tensor:
    """Evaluate the real SH basis at directions ``dirs [..., 3]`` -> ``[..., (degree + 1) ** 2]``.

    ``dirs`` is normalised here, so any non-zero vector works.
    """
    if dirs.shape[-1] != 3:
        raise ValueError(f"dirs must have shape [..., 3], got {list(dirs.shape)}")
    d = torch.nn.functional.normalize(dirs, dim=-1)
    return torch.stack(sh_basis_terms(*d.unbind(-1), degree=degree), -1)


def sh_basis_terms(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor, degree: int) -> list[torch.Tensor]:
    """The ``(degree + 1) ** 2`` basis functions at the *unit* directions ``(x, y, z)`` (tensors of one shape),
    as a list in basis order.

    Separate components let callers work on contiguous ``[N]`` vectors (the CPU rasteriser does: elementwise
    ops on ``[N, 3]`` tensors are several times slower there).
    """
    if not 0 <= degree <= SH_MAX_DEGREE:
        raise ValueError(f"degree must be in [0, {SH_MAX_DEGREE}], got {degree}")
    out = [torch.full_like(x, _C0)]
    if degree >= 1:
        out += [-_C1 * y, _C1 * z, -_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        out += [
            _C2_XY * x * y,
            -_C2_XY * y * z,
            _C2_Z * (3.0 * zz - 1.0),
            -_C2_XY * x * z,
            _C2_XX * (xx - yy),
        ]
    if degree >= 3:
        out += [
            -_C3_3 * y * (3.0 * xx - yy),
            _C3_2 * x * y * z,
            -_C3_1 * y * (5.0 * zz - 1.0),
            _C3_0 * z * (5.0 * zz - 3.0),
            -_C3_1 * x * (5.0 * zz - 1.0),
            _C3_2B * z * (xx - yy),
            -_C3_3 * x * (xx - 3.0 * yy),
        ]
    if degree >= 4:
        out += [
            _C4_4 * x * y * (xx - yy),
            -_C4_3 * y * z * (3.0 * xx - yy),
            _C4_2 * x * y * (7.0 * zz - 1.0),
            -_C4_1 * y * z * (7.0 * zz - 3.0),
            _C4_0 * (35.0 * zz * zz - 30.0 * zz + 3.0),
            -_C4_1 * x * z * (7.0 * zz - 3.0),
            _C4_2B * (xx - yy) * (7.0 * zz - 1.0),
            -_C4_3 * x * z * (xx - 3.0 * yy),
            _C4_4B * (xx * (xx - 3.0 * yy) - yy * (3.0 * xx - yy)),
        ]
    return out


def sh_to_color(sh: torch.Tensor, dirs: torch.Tensor, degree: int | None = None) -> torch.Tensor:
    """Colour of splats with SH coefficients ``sh [..., K, 3]`` seen along ``dirs [..., 3]`` -> ``[..., 3]``.

    Only the bands up to ``degree`` are used (default: all that ``sh`` holds); the result is
    ``max(0, basis . sh + 0.5)`` like 3DGS and gsplat (no upper clamp).
    """
    available = math.isqrt(sh.shape[-2]) - 1
    if (available + 1) ** 2 != sh.shape[-2]:
        raise ValueError(f"sh must have a square number of coefficients on dim -2, got shape {list(sh.shape)}")
    degree = available if degree is None else degree
    if not 0 <= degree <= available:
        raise ValueError(f"degree must be in [0, {available}] for SH with {sh.shape[-2]} coefficients, got {degree}")
    basis = sh_basis(dirs, degree)  # [..., k]
    k = basis.shape[-1]
    color = (basis[..., None] * sh[..., :k, :]).sum(-2)
    return (color + 0.5).clamp_min(0.0)


# ----------------------------------------------------------------------------- writing lower degrees
DEFAULT_SH_DEGREE = 3
"""The highest SH degree vist3a writes unless asked otherwise. Degree 4 (72 ``f_rest``, as AnySplat predicts) is
rejected by current splat viewers and converters (PlayCanvas splat-transform, Spark, gsply, spz-js); degree <= 3
files open everywhere. See docs/formats.md."""


def resolve_sh_degree(requested: int | None, available: int) -> int:
    """The degree to write: ``min(requested, available)``; ``None`` keeps every band (``available``).

    Raises ``ValueError`` unless ``requested`` is in ``[0, SH_MAX_DEGREE]``. A request above ``available`` is not
    padded with zero bands: the file gets ``available``.
    """
    if requested is None:
        return available
    if not 0 <= int(requested) <= SH_MAX_DEGREE:
        raise ValueError(f"sh_degree must be in [0, {SH_MAX_DEGREE}] (or None to keep all bands), got {requested}")
    return min(int(requested), available)


def sh_truncation_report(sh: torch.Tensor, degree: int) -> dict[str, float | int]:
    """What keeping bands ``0..degree`` of ``sh [N, K, 3]`` drops, as plain JSON numbers.

    - ``dropped_energy_fraction``: sum of squares of the dropped coefficients over that of all view-dependent
      (band >= 1) coefficients (0 when there is nothing view-dependent).
    - ``dropped_rms_color``: root-mean-square change of the colour (before the ``max(0, .)`` clamp), over all
      splats, channels and view directions. The basis is orthonormal on the sphere, so the mean over directions
      of the squared change is ``sum(dropped ** 2) / (4 pi)``: exact, no sampling.
    """
    n, k, _ = sh.shape
    available = math.isqrt(k) - 1
    keep = num_sh_coeffs(min(degree, available))
    sq = sh.detach().double().pow(2)
    dropped = float(sq[:, keep:].sum())
    view_dependent = float(sq[:, 1:].sum())
    return {
        "sh_degree_in": available,
        "sh_degree_out": min(degree, available),
        "dropped_energy_fraction": dropped / view_dependent if view_dependent > 0 else 0.0,
        "dropped_rms_color": math.sqrt(dropped / (4.0 * _PI) / max(n * 3, 1)),
    }
