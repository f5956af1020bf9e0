"""The :class:`Scene` result of text-to-3D generation and its export to files.

A scene bundles everything a user wants from one prompt: the Gaussians (AnySplat decoders) and/or pointmaps
(VGGT decoders), the predicted cameras, the decoded video frames, the prompt and every setting. ``save_scene``
writes the standard file set into a folder *atomically*: the folder appears complete or not at all.
"""

from __future__ import annotations

import json
import logging
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vist3a.cameras import interpolate_poses, invert_rigid, save_cameras_json, to_homogeneous
from vist3a.io_utils import atomic_dir
from vist3a.splats import DEFAULT_SH_DEGREE, Gaussians, save_ply, save_point_ply, save_splat, sh_truncation_report
from vist3a.splats.points import POINT_SPLAT_FOOTPRINT, fuse_point_maps, point_cloud_splats
from vist3a.splats.sh import resolve_sh_degree

logger = logging.getLogger(__name__)


@dataclass
class Scene:
    """One generated 3D scene.

    Attributes:
        prompt: the user's prompt (before any camera-motion template).
        frames: ``[T, 3, H, W]`` decoded video frames in ``[0, 1]``.
        w2c: ``[V, 4, 4]`` predicted world-to-camera extrinsics (OpenCV), one per frame.
        K: ``[V, 3, 3]`` predicted pixel intrinsics for images of ``image_size`` (vist3a convention: pixel
            centres at integer coordinates, see :func:`vist3a.cameras.K_from_edge_convention`).
        image_size: ``(H, W)`` the intrinsics refer to (the 3D model's input size).
        gaussians: the 3D Gaussians (AnySplat decoders), else ``None``.
        depth: ``[V, H, W]`` predicted depth, if the decoder gives it.
        points / points_conf: ``[V, H, W, 3]`` world pointmaps and ``[V, H, W]`` confidences (VGGT decoders).
        settings: every setting that produced the scene (preset, seed, steps, ...).
        timings: seconds per stage.
    """

    prompt: str
    frames: torch.Tensor
    w2c: torch.Tensor
    K: torch.Tensor
    image_size: tuple[int, int]
    gaussians: Gaussians | None = None
    depth: torch.Tensor | None = None
    points: torch.Tensor | None = None
    points_conf: torch.Tensor | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)

    def flythrough_cameras(
        self, num_frames: int, size_hw: tuple[int, int] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A smooth path through the predicted cameras: ``(w2c [N, 4, 4], K [N, 3, 3])`` for images of
        ``size_hw`` (default ``image_size``; the intrinsics are rescaled, pixel centres kept at integers)."""
        c2w = to_homogeneous(invert_rigid(self.w2c[:, :3].float().cpu()))
        path_c2w = interpolate_poses(c2w, num_frames)
        path_w2c = to_homogeneous(invert_rigid(path_c2w))
        K = self.K.float().cpu().mean(0)
        if size_hw is not None and tuple(size_hw) != tuple(self.image_size):
            sy, sx = size_hw[0] / self.image_size[0], size_hw[1] / self.image_size[1]
            scale = torch.tensor([[sx, 0.0, 0.0], [0.0, sy, 0.0], [0.0, 0.0, 1.0]])
            K = scale @ K
            K[0, 2] += 0.5 * (sx - 1.0)  # integer-centre convention: c' = (c + 0.5) * s - 0.5
            K[1, 2] += 0.5 * (sy - 1.0)
        return path_w2c, K.expand(num_frames, 3, 3).clone()

    def mirrored(self) -> Scene:
        """The scene's mirror image across the world plane ``x = 0``, seen through mirrored cameras and images:
        ``w2c -> S w2c S`` (``S = diag(-1, 1, 1, 1)``, a proper rotation again), principal point
        ``cx -> W - 1 - cx``, frames / depth / confidences flipped left-right, points ``x -> -x``, Gaussians
        :meth:`~vist3a.splats.Gaussians.mirrored`. A world point ``X`` seen at pixel ``(u, v)`` becomes ``S X``
        seen at ``(W - 1 - u, v)``, so every view of the result is the mirror image of the original view.
        Applying it twice gives the scene back."""
        from dataclasses import replace

        flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=self.w2c.dtype))
        K = self.K.clone()
        K[..., 0, 2] = self.image_size[1] - 1 - self.K[..., 0, 2]
        flip_w = lambda t: None if t is None else t.flip(-1)
        points = None
        if self.points is not None:
            points = self.points.flip(-2) * torch.tensor([-1.0, 1.0, 1.0], dtype=self.points.dtype)
        return replace(self, frames=self.frames.flip(-1), w2c=flip @ self.w2c @ flip, K=K,
                       gaussians=None if self.gaussians is None else self.gaussians.mirrored(),
                       depth=flip_w(self.depth), points=points, points_conf=flip_w(self.points_conf),
                       settings=dict(self.settings), timings=dict(self.timings))

    def fused_points(self, keep_fraction: float = 0.5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The point cloud of the pointmaps: the ``keep_fraction`` most confident pixels
        (:func:`~vist3a.splats.points.fuse_point_maps`), coloured from the decoded frames. Returns
        ``(xyz [M, 3], rgb [M, 3] uint8, conf [M] or None)`` on the CPU; what ``points.ply`` holds."""
        if self.points is None:
            raise ValueError("this scene has no pointmaps (the decoder gives Gaussians)")
        conf = self.points_conf.float().cpu() if self.points_conf is not None else None
        xyz, rgb, kept = fuse_point_maps(self.points.float().cpu(), conf, self.frames.float().cpu(), keep_fraction,
                                         return_conf=True)
        return xyz, rgb, kept if conf is not None else None

    def point_splats(self, keep_fraction: float = 0.5, footprint: float = POINT_SPLAT_FOOTPRINT) -> Gaussians:
        """Splats of :meth:`fused_points` for rendering the point cloud: each point a round splat whose standard
        deviation is ``footprint`` x the size of one pointmap pixel at its distance from the nearest predicted
        camera (:func:`~vist3a.splats.points.point_cloud_splats`)."""
        xyz, rgb, _ = self.fused_points(keep_fraction)
        return point_cloud_splats(xyz, rgb, self.w2c.cpu(), self.K.cpu(), footprint)

    def render_splats(self, keep_fraction: float = 0.5) -> Gaussians:
        """What renders this scene: its Gaussians, or for a pointmap scene its :meth:`point_splats` (so fly-throughs,
        renders at the predicted cameras and their scores treat both kinds of decoder alike)."""
        if self.gaussians is not None:
            return self.gaussians
        if self.points is None:
            raise ValueError("this scene has neither Gaussians nor pointmaps to render")
        return self.point_splats(keep_fraction)

    def render_flythrough(
        self,
        num_frames: int = 48,
        backend: str = "auto",
        device: str | torch.device | None = None,
        size_hw: tuple[int, int] | None = None,
        points_keep_fraction: float = 0.5,
    ) -> torch.Tensor:
        """Render the Gaussians (of a pointmap scene: its :meth:`point_splats`) along :meth:`flythrough_cameras`:
        ``[N, H, W, 3]`` in ``[0, 1]`` (CPU).

        Renders on ``device`` (default: CUDA when available) at ``size_hw`` (default ``image_size``). gsplat
        renders all views in one call; the CPU reference renderer goes one view at a time to keep its memory
        flat. ``points_keep_fraction``: the share of pointmap pixels rendered (as in ``points.ply``).
        """
        from vist3a.splats import resolve_backend
        from vist3a.splats.flythrough import render_frames

        splats = self.render_splats(points_keep_fraction)
        w2c, K = self.flythrough_cameras(num_frames, size_hw)
        height, width = size_hw or self.image_size
        device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        g = splats.detach().to(device)
        batch = num_frames if resolve_backend(backend, g.device) == "gsplat" else 1
        frames = render_frames(g, w2c.to(device), K.to(device), width, height, backend=backend,
                               batch_size=batch, progress=False)
        return torch.from_numpy(frames.colors).float() / 255.0


def _versions() -> dict[str, str]:
    import vist3a

    versions = {"vist3a": vist3a.__version__, "torch": torch.__version__, "python": platform.python_version()}
    for name in ("diffusers", "transformers", "gsplat"):
        try:
            module = __import__(name)
            versions[name] = getattr(module, "__version__", "?")
        except ImportError:
            continue
    return versions


def save_scene(
    scene: Scene,
    out_dir: str | os.PathLike,
    *,
    flythrough_frames: int | None = None,
    fps: float = 12.0,
    render_backend: str = "auto",
    extra_meta: dict[str, Any] | None = None,
    depth_pngs: bool | None = None,
    points_keep_fraction: float = 0.5,
    sh_degree: int | None = DEFAULT_SH_DEGREE,
    formats: tuple[str, ...] | list[str] = (),
) -> Path:
    """Write ``scene.ply``, ``scene.splat``, ``flythrough.mp4``, ``frames.mp4``, ``cameras.json``, ``meta.json``.

    ``scene.ply`` keeps SH bands up to ``sh_degree`` (default 3, what current viewers read; ``None``: all);
    ``meta.json["sh"]`` reports what was dropped (:func:`~vist3a.splats.sh_truncation_report`).
    ``formats``: extra exports written into the same folder (:mod:`vist3a.exports`: spz, compressed-ply, glb,
    nerfstudio, colmap, all), from the frames before video compression.

    Pointmap-only scenes write ``points.ply`` instead of the splat files, and their fly-through renders that point
    cloud (:meth:`Scene.point_splats`). The folder is built beside ``out_dir`` and moved into place at the end, so
    a failure (or Ctrl-C) never leaves half-written output.
    ``flythrough_frames = 0`` skips the fly-through video. Default: 48 frames at the 3D model's resolution with
    CUDA (gsplat), else 16 frames at the video's resolution (the CPU reference renderer takes ~0.1-0.2 s per
    64 px view of 100k splats, see docs/benchmarks.md). ``depth_pngs``: also ``depth/000.png ...`` (colour-mapped
    depth); default (None): for scenes with pointmaps. ``points_keep_fraction``: the most confident share of
    pointmap pixels kept in ``points.ply`` (and rendered in a pointmap scene's fly-through).
    """
    from vist3a.media import write_video

    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        height, width = scene.image_size
        if scene.gaussians is not None:
            degree = resolve_sh_degree(sh_degree, scene.gaussians.sh_degree)
            save_ply(scene.gaussians, tmp / "scene.ply", sh_degree=degree)
            save_splat(scene.gaussians, tmp / "scene.splat")
        if scene.gaussians is not None or scene.points is not None:
            on_gpu = torch.cuda.is_available()
            frames_n = flythrough_frames if flythrough_frames is not None else (48 if on_gpu else 16)
            size_hw = None if on_gpu else tuple(int(s) for s in scene.frames.shape[-2:])
            if frames_n > 0:
                video = scene.render_flythrough(frames_n, render_backend, size_hw=size_hw,
                                                points_keep_fraction=points_keep_fraction)
                write_video(tmp / "flythrough.mp4", video, fps)
        num_points = _save_points(scene, tmp / "points.ply", points_keep_fraction) if scene.points is not None else None
        if depth_pngs is None:
            depth_pngs = scene.points is not None
        if depth_pngs and scene.depth is not None:
            _save_depth_pngs(tmp / "depth", scene.depth)
        write_video(tmp / "frames.mp4", scene.frames.permute(0, 2, 3, 1).clamp(0, 1).cpu(), fps)
        save_cameras_json(tmp / "cameras.json", scene.w2c.float().cpu(), scene.K.float().cpu(), width, height)
        meta = {
            "prompt": scene.prompt,
            "settings": scene.settings,
            "timings_s": scene.timings,
            "num_gaussians": len(scene.gaussians) if scene.gaussians is not None else None,
            **({"num_points": num_points} if num_points is not None else {}),
            "sh": sh_truncation_report(scene.gaussians.sh, degree) if scene.gaussians is not None else None,
            "image_size": list(scene.image_size),
            "versions": _versions(),
            **(extra_meta or {}),
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if formats:
            from vist3a.exports import export_scene_data, parse_formats, scene_data_from_scene

            extra = [name for name in parse_formats(formats) if name != "splat"]  # scene.splat is written above
            export_scene_data(scene_data_from_scene(scene), tmp, extra, sh_degree=sh_degree, skip_unsupported=True)
    logger.info("wrote scene to %s", out_dir)
    return out_dir


def _save_points(scene: Scene, path: Path, keep_fraction: float) -> int:
    """Fused coloured point cloud of the pointmaps (:meth:`Scene.fused_points`, with their confidence when the
    scene has one, for `vist3a view`); its size."""
    xyz, rgb, conf = scene.fused_points(keep_fraction)
    save_point_ply(path, xyz, rgb, conf)
    return int(xyz.shape[0])


def _save_depth_pngs(folder: Path, depth: torch.Tensor) -> None:
    """``folder/000.png ...``: depth ``[V, H, W]`` colour-mapped with one range for all views (near = bright)."""
    import imageio.v3 as iio

    from vist3a.media import depth_to_colormap

    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(depth_to_colormap(depth.float().cpu())):
        iio.imwrite(folder / f"{i:03d}.png", image)
