"""Camera paths framed on a scene and frame-by-frame rendering for videos (``vist3a render``, pipelines)."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from vist3a.cameras import intrinsics_from_fov, orbit_trajectory
from vist3a.splats.gaussians import Gaussians
from vist3a.splats.render import render, resolve_backend
from vist3a.splats.stats import scene_center_radius
from vist3a.threads import map_single_threaded

logger = logging.getLogger(__name__)

ORBIT_MARGIN = 1.05  # the scene's robust bounding sphere fills the view up to this factor


@dataclass
class Frames:
    """Rendered frames on the CPU: ``colors [T, H, W, 3]`` uint8, ``depths`` and ``alphas`` ``[T, H, W]`` float32."""

    colors: np.ndarray
    depths: np.ndarray
    alphas: np.ndarray


def orbit_cameras(
    gaussians: Gaussians,
    num_frames: int,
    width: int,
    height: int,
    *,
    fov_deg: float = 50.0,
    elevation_deg: float = 20.0,
    radius: float | None = None,
    up: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Turntable around the scene's robust centre -> (``w2c [T, 4, 4]``, ``K [3, 3]``), float64 on the CPU.

    ``fov_deg`` is the horizontal field of view. With ``radius=None`` the camera distance is chosen so that
    the robust bounding sphere of the splats (:func:`~vist3a.splats.stats.scene_center_radius`) fits into
    the narrower field of view. ``up`` defaults to ``-y`` (see :func:`vist3a.cameras.orbit_trajectory`).
    """
    center, scene_radius = scene_center_radius(gaussians)
    K = intrinsics_from_fov(fov_deg, width, height, dtype=torch.float64)
    if radius is None:
        half_fov = math.atan(min(width, height) / 2.0 / float(K[0, 0]))
        radius = ORBIT_MARGIN * scene_radius / math.sin(half_fov)
        logger.info(
            "orbit: scene centre %s, scene radius %.4g -> camera distance %.4g", center.tolist(), scene_radius, radius
        )
    w2c = orbit_trajectory(center, radius, elevation_deg, num_frames, up=up)
    return w2c, K


@torch.no_grad()
def render_frames(
    gaussians: Gaussians,
    w2c: torch.Tensor,
    Ks: torch.Tensor,
    width: int,
    height: int,
    *,
    backend: str = "auto",
    background: torch.Tensor | None = None,
    sh_degree: int | None = None,
    batch_size: int = 1,
    progress: bool = True,
    workers: int | None = None,
) -> Frames:
    """Render ``w2c [T, 4, 4]`` views (``Ks [T, 3, 3]`` or ``[3, 3]``) a few at a time, collecting on the CPU.

    Colours are clipped to [0, 1] and stored as uint8, so long videos do not hold float frames on the GPU.
    ``workers`` batches are rendered at once in threads. The default is one per torch CPU thread for the
    torch backend on the CPU, each batch then running single-threaded: the CPU rasteriser's many small ops
    gain more from rendering views side by side than from splitting each op, and single-threaded ops do not
    stall when other processes share the cores (:func:`vist3a.threads.map_single_threaded`). Elsewhere it is 1.
    """
    num = w2c.shape[0]
    if Ks.ndim == 2:
        Ks = Ks.expand(num, 3, 3)
    if workers is None:
        on_cpu_torch = gaussians.device.type == "cpu" and resolve_backend(backend, gaussians.device) == "torch"
        workers = torch.get_num_threads() if on_cpu_torch else 1
    batches = [slice(start, min(start + batch_size, num)) for start in range(0, num, batch_size)]

    def render_batch(sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        with torch.no_grad():  # grad mode is per thread
            out = render(
                gaussians, w2c[sl], Ks[sl], width, height, backend=backend, background=background, sh_degree=sh_degree
            )
        colors = (out.colors.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return colors, out.depths.float().cpu().numpy(), out.alphas.float().cpu().numpy()

    with tqdm(total=num, desc="rendering", unit="frame", disable=not progress) as bar:
        results = map_single_threaded(render_batch, batches, workers,
                                      on_result=lambda sl, _: bar.update(sl.stop - sl.start))
    colors, depths, alphas = zip(*results, strict=True)
    return Frames(colors=np.concatenate(colors), depths=np.concatenate(depths), alphas=np.concatenate(alphas))
