"""The :class:`Gaussians` container: N 3D Gaussian splats with *activated* parameters.

Conventions (shared by every package of vist3a):

- ``means``      ``[N, 3]`` world coordinates (OpenCV world: whatever frame the cameras use).
- ``quats``      ``[N, 4]`` rotations as unit quaternions **(w, x, y, z)**.
- ``scales``     ``[N, 3]`` standard deviations along the local axes, **linear** (not log).
- ``opacities``  ``[N]`` in ``[0, 1]`` (not logits).
- ``sh``         ``[N, K, 3]`` spherical-harmonics colour coefficients, ``K = (degree + 1) ** 2``;
  ``sh[:, 0]`` is the DC term (colour = ``0.5 + SH_C0 * sh[:, 0]`` for a view-independent splat).

Raw (pre-activation) parametrisations appear only at file boundaries (PLY stores ``log_scales`` and
``opacity_logits``) and are named as such there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

SH_C0 = 0.28209479177387814  # Y_0^0 = 1 / (2 sqrt(pi))


def sh_degree_from_coeffs(num_coeffs: int) -> int:
    """Degree d such that ``(d + 1) ** 2 == num_coeffs``; ValueError otherwise."""
    degree = math.isqrt(num_coeffs) - 1
    if (degree + 1) ** 2 != num_coeffs or degree < 0:
        raise ValueError(f"number of SH coefficients must be a square (1, 4, 9, 16, 25), got {num_coeffs}")
    return degree


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """Colour in [0, 1] -> the DC SH coefficient that reproduces it."""
    return (rgb - 0.5) / SH_C0


def sh_dc_to_rgb(dc: torch.Tensor) -> torch.Tensor:
    """DC SH coefficient -> colour (not clamped)."""
    return dc * SH_C0 + 0.5


@dataclass
class Gaussians:
    """N Gaussian splats; see the module docstring for shapes and conventions."""

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    sh: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        expected = {
            "means": (n, 3),
            "quats": (n, 4),
            "scales": (n, 3),
            "opacities": (n,),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"Gaussians.{name} must have shape {list(shape)}, got {list(got)}")
        if self.sh.ndim != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh must have shape [N, K, 3] with N={n}, got {list(self.sh.shape)}")
        sh_degree_from_coeffs(self.sh.shape[1])

    # ------------------------------------------------------------------ basic properties
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_from_coeffs(self.sh.shape[1])

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def _map(self, fn) -> Gaussians:
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def to(self, *args, **kwargs) -> Gaussians:
        """Move/cast every tensor, like ``torch.Tensor.to``."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def detach(self) -> Gaussians:
        return self._map(lambda t: t.detach())

    def __getitem__(self, index) -> Gaussians:
        """Select splats by a boolean mask, an index tensor or a slice."""
        return self._map(lambda t: t[index])

    @staticmethod
    def cat(items: list[Gaussians]) -> Gaussians:
        """Concatenate splat sets; SH degrees must match."""
        if not items:
            raise ValueError("Gaussians.cat needs at least one Gaussians object")
        degrees = {g.sh_degree for g in items}
        if len(degrees) != 1:
            raise ValueError(f"cannot concatenate Gaussians with different SH degrees {sorted(degrees)}")
        return Gaussians(**{f.name: torch.cat([getattr(g, f.name) for g in items]) for f in fields(Gaussians)})

    # ------------------------------------------------------------------ helpers
    def with_sh_degree(self, degree: int) -> Gaussians:
        """The same splats with SH bands ``0..degree`` only (a view of the kept coefficients, no copy).

        The kept coefficients are unchanged: the real SH basis is orthonormal, so dropping bands is the best
        lower-degree fit of each splat's colour over all view directions. ``degree`` above ``sh_degree`` is an error.
        """
        if not 0 <= degree <= self.sh_degree:
            raise ValueError(f"degree must be in [0, {self.sh_degree}] for these Gaussians, got {degree}")
        return Gaussians(self.means, self.quats, self.scales, self.opacities, self.sh[:, : (degree + 1) ** 2])

    def mirrored(self) -> Gaussians:
        """The mirror image across the plane ``x = 0`` (``S = diag(-1, 1, 1)``): means ``x -> -x``, rotations
        ``S R S`` (quaternion ``(w, x, -y, -z)``), scales and opacities unchanged, and every SH basis function
        that is odd in ``x`` negated, so that the colour seen along ``d`` is the old colour along ``S d``. Real SH
        ``Y_l^m`` (bands ordered ``m = -l..l``) go to ``(-1)^m Y_l^m`` for ``m >= 0`` and ``(-1)^(m+1) Y_l^m`` for
        ``m < 0`` under ``x -> -x`` (azimuth ``phi -> pi - phi``). Used to map a scene decoded from a mirrored
        video back to the video's own frame. Applying it twice gives the splats back."""
        signs = []
        for degree in range(self.sh_degree + 1):
            signs += [(-1.0) ** (m if m >= 0 else m + 1) for m in range(-degree, degree + 1)]
        sign_x = torch.tensor([-1.0, 1.0, 1.0], dtype=self.means.dtype, device=self.device)
        sign_q = torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=self.quats.dtype, device=self.device)
        sh_signs = torch.tensor(signs, dtype=self.sh.dtype, device=self.device)[None, :, None]
        return Gaussians(self.means * sign_x, self.quats * sign_q, self.scales, self.opacities, self.sh * sh_signs)

    def filter_opacity(self, min_opacity: float) -> Gaussians:
        """Keep splats with opacity >= ``min_opacity``."""
        return self[self.opacities >= min_opacity]

    def bounding_box(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Axis-aligned box ``(min [3], max [3])`` of the means; ValueError for zero splats."""
        if len(self) == 0:
            raise ValueError("bounding box of zero Gaussians is undefined")
        return self.means.amin(0), self.means.amax(0)

    def is_finite(self) -> torch.Tensor:
        """Boolean ``[N]``: every parameter of the splat is finite."""
        ok = torch.ones(len(self), dtype=torch.bool, device=self.device)
        for f in fields(self):
            t = getattr(self, f.name)
            ok &= torch.isfinite(t.reshape(len(self), -1)).all(dim=1)
        return ok

    @staticmethod
    def from_rgb(
        means: torch.Tensor,
        rgb: torch.Tensor,
        scales: torch.Tensor,
        opacities: torch.Tensor,
        quats: torch.Tensor | None = None,
        sh_degree: int = 0,
    ) -> Gaussians:
        """Build view-independent splats from colours in [0, 1] (higher SH bands zero)."""
        n = means.shape[0]
        if quats is None:
            quats = torch.zeros(n, 4, dtype=means.dtype, device=means.device)
            quats[:, 0] = 1.0
        sh = torch.zeros(n, (sh_degree + 1) ** 2, 3, dtype=means.dtype, device=means.device)
        sh[:, 0] = rgb_to_sh_dc(rgb)
        return Gaussians(means=means, quats=quats, scales=scales, opacities=opacities, sh=sh)
