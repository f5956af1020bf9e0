"""3D Gaussian splats: the container, file formats and rendering (no model code here)."""

from vist3a.splats.gaussians import SH_C0, Gaussians, rgb_to_sh_dc, sh_dc_to_rgb, sh_degree_from_coeffs

__all__ = ["SH_C0", "Gaussians", "rgb_to_sh_dc", "sh_dc_to_rgb", "sh_degree_from_coeffs"]
