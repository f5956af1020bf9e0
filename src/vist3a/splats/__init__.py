"""3D Gaussian splats: the container, file formats and rendering (no model code here).

- :class:`Gaussians` holds N splats with activated parameters (wxyz quaternions, linear scales, opacities in [0, 1]).
- Files: :func:`save_ply` / :func:`load_ply` (3DGS INRIA layout), :func:`save_splat` / :func:`load_splat`
  (antimatter15 ``.splat``), :func:`load_gaussians` / :func:`save_gaussians` (by suffix).
- :func:`render` -> :class:`RenderOutput` (colours, expected depth, alpha) with the ``gsplat`` or ``torch`` backend;
  :func:`orbit_cameras` / :func:`render_frames` for fly-through videos; :func:`summarize` for ``vist3a info``.
"""

from vist3a.splats.flythrough import Frames, orbit_cameras, render_frames
from vist3a.splats.gaussians import SH_C0, Gaussians, rgb_to_sh_dc, sh_dc_to_rgb, sh_degree_from_coeffs
from vist3a.splats.io import load_gaussians, save_gaussians
from vist3a.splats.ply import load_ply, save_ply, save_point_ply
from vist3a.splats.render import BACKENDS, RenderOutput, render, resolve_backend
from vist3a.splats.sh import DEFAULT_SH_DEGREE, SH_MAX_DEGREE, sh_basis, sh_to_color, sh_truncation_report
from vist3a.splats.splat_file import load_splat, save_splat
from vist3a.splats.stats import SplatSummary, scene_center_radius, summarize

__all__ = [
    "BACKENDS",
    "DEFAULT_SH_DEGREE",
    "SH_C0",
    "SH_MAX_DEGREE",
    "Frames",
    "Gaussians",
    "RenderOutput",
    "SplatSummary",
    "load_gaussians",
    "load_ply",
    "load_splat",
    "orbit_cameras",
    "render",
    "render_frames",
    "resolve_backend",
    "rgb_to_sh_dc",
    "save_gaussians",
    "save_ply",
    "save_point_ply",
    "save_splat",
    "scene_center_radius",
    "sh_basis",
    "sh_dc_to_rgb",
    "sh_degree_from_coeffs",
    "sh_to_color",
    "sh_truncation_report",
    "summarize",
]
