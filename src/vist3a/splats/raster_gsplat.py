"""The gsplat backend: nerfstudio's fused CUDA rasteriser (optional dependency ``gsplat>=1.5``).

gsplat places pixel centres at half-integer coordinates while vist3a uses integer ones, so the principal
point is shifted by +0.5 px on the way in; with that, gsplat "classic" mode and the PyTorch reference
(:mod:`vist3a.splats.raster_torch`) render the same images. gsplat needs float32 CUDA tensors.
"""

from __future__ import annotations

import importlib.util
import logging
import time

import torch

from vist3a.errors import UserInputError
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.raster_torch import EPS2D

logger = logging.getLogger(__name__)

_first_call_done = False


def gsplat_available() -> bool:
    """True if the ``gsplat`` package can be imported (it is not imported here)."""
    return importlib.util.find_spec("gsplat") is not None


def render_gsplat(
    gaussians: Gaussians,
    w2c: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    background: torch.Tensor | None,
    sh_degree: int,
    near: float,
    far: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same contract as :func:`vist3a.splats.raster_torch.render_torch` (``w2c [C, 4, 4]``, ``Ks [C, 3, 3]``)."""
    global _first_call_done
    try:
        import gsplat
    except ImportError as exc:
        raise UserInputError(
            f"render backend 'gsplat' needs the gsplat package ({exc}); install it with pip install 'vist3a[cuda]' "
            "or use backend 'torch'"
        ) from None
    if not gaussians.means.is_cuda:
        raise ValueError(f"render backend 'gsplat' needs CUDA tensors, got gaussians on {gaussians.device}")

    in_dtype = gaussians.dtype
    g = gaussians.to(dtype=torch.float32)
    Ks = Ks.to(torch.float32).clone()
    Ks[:, :2, 2] += 0.5  # integer pixel centres (vist3a) -> half-integer ones (gsplat)
    if not _first_call_done:
        logger.warning(  # visible by default: the first call can block for a minute and a half
            "first gsplat call: unless gsplat's CUDA kernels are already built for this torch/CUDA, gsplat "
            "compiles them now (about 90 s, once per machine; later runs reuse the build cache)"
        )
        start = time.perf_counter()
    # a zero quaternion (e.g. a Gaussian head's MLP with every hidden unit off) is the identity, as in the torch
    # backend; gsplat's kernel divides by its norm and would put NaN into the image and the gradients
    zero = (g.quats.square().sum(-1, keepdim=True) < 1e-12).to(g.quats.dtype)
    colors, alphas, _ = gsplat.rasterization(
        means=g.means,
        quats=g.quats + zero * g.quats.new_tensor([1.0, 0.0, 0.0, 0.0]),
        scales=g.scales,
        opacities=g.opacities,
        colors=g.sh,
        viewmats=w2c.to(torch.float32),
        Ks=Ks,
        width=width,
        height=height,
        near_plane=near,
        far_plane=far,
        eps2d=EPS2D,
        sh_degree=sh_degree,
        render_mode="RGB+ED",
        rasterize_mode="classic",
    )
    if not _first_call_done:
        torch.cuda.synchronize(gaussians.device)
        logger.info("first gsplat call took %.1f s", time.perf_counter() - start)
        _first_call_done = True
    rgb, depth, alpha = colors[..., :3].to(in_dtype), colors[..., 3].to(in_dtype), alphas[..., 0].to(in_dtype)
    if background is not None:
        # blended here: gsplat 1.5.3 rejects `backgrounds` together with render_mode "RGB+ED"
        rgb = rgb + (1.0 - alpha)[..., None] * background[:, None, None, :]
    return rgb, depth, alpha
