"""``vist3a view``: an interactive web viewer of a scene (viser; ``pip install viser``, its client ships in the wheel).

Shows the Gaussians (viser renders the DC colour; higher SH bands are not shown), the predicted cameras as frustums
carrying their decoded frames, pointmap point clouds with a confidence slider, and plays a smooth fly-through along
the cameras. Everything is in vist3a's world frame (OpenCV: y down), so the viewer's up direction is set to -y.
The server binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from pathlib import Path

import numpy as np
import torch

from vist3a.errors import UserInputError
from vist3a.exports.source import SceneData

logger = logging.getLogger(__name__)

SPLAT_FILE_SUFFIXES = (".ply", ".splat", ".spz")
VIEW_FOV = 1.309  # viser's default vertical field of view (75 degrees), which the viewer keeps
VIEW_HEIGHT_PX = 720  # a nominal browser canvas height, for the splat size factor


def load_view_data(path: str | os.PathLike) -> SceneData:
    """A scene folder, a splat file (``.ply`` 3DGS or compressed, ``.splat``, ``.spz``) or a point-cloud ``.ply``."""
    from vist3a.exports.source import load_scene_dir
    from vist3a.splats.ply import read_point_ply

    path = Path(path)
    if path.is_dir():
        return load_scene_dir(path)
    if not path.is_file():
        raise UserInputError(f"{path}: no such file or folder")
    if path.suffix.lower() not in SPLAT_FILE_SUFFIXES:
        raise UserInputError(f"{path}: expected a scene folder or a {', '.join(SPLAT_FILE_SUFFIXES)} file")
    no_cameras = dict(w2c=np.zeros((0, 4, 4)), K=np.zeros((0, 3, 3)), width=1, height=1)
    gaussians = _load_splats(path)
    if gaussians is not None:
        return SceneData(gaussians=gaussians, points=None, colors=None, **no_cameras)
    xyz, rgb, conf = read_point_ply(path)
    return SceneData(gaussians=None, points=xyz, colors=rgb, confidence=conf, **no_cameras)


def _load_splats(path: Path):
    """Gaussians of a splat file, or ``None`` for a PLY that is a plain point cloud."""
    from vist3a.exports.compressed_ply import is_compressed_ply, load_compressed_ply
    from vist3a.exports.spz import load_spz
    from vist3a.splats import load_gaussians

    suffix = path.suffix.lower()
    if suffix == ".spz":
        return load_spz(path)
    if suffix == ".ply":
        if is_compressed_ply(path):
            return load_compressed_ply(path)
        from vist3a.splats.ply import is_point_cloud_ply

        if is_point_cloud_ply(path):
            return None
    return load_gaussians(path)


def splat_covariances(quats: torch.Tensor, scales: torch.Tensor) -> np.ndarray:
    """``[N, 3, 3]`` world covariances ``R diag(s^2) R^T`` from (w, x, y, z) quaternions and linear scales."""
    from vist3a.cameras import quat_to_rotmat

    rot = quat_to_rotmat(quats.double())
    return (rot * scales.double()[:, None, :] ** 2 @ rot.transpose(1, 2)).numpy()


def default_size_factor(gaussians, eye: np.ndarray, fov: float = VIEW_FOV, height_px: int = VIEW_HEIGHT_PX,
                        min_pixels: float = 1.5, max_factor: float = 20.0) -> float:
    """A display enlargement so that the median splat (largest axis, one sigma) covers at least ``min_pixels``
    seen from ``eye [3]`` with a vertical field of view ``fov`` (radians) on a canvas ``height_px`` pixels tall;
    1 when it already does, at most ``max_factor``.

    Feed-forward models predict many splats below a pixel of a browser window at the distance a viewer starts
    from (real AnySplat scenes above all: per-pixel splats of 448-px frames); the web renderer drops those, so the
    scene would look empty at its true splat size.
    """
    focal = height_px / 2 / math.tan(fov / 2)
    g = gaussians[: 200_000]
    distance = (g.means.double() - torch.as_tensor(np.asarray(eye), dtype=torch.float64)).norm(dim=1).clamp_min(1e-9)
    footprint = float((focal * g.scales.double().amax(1) / distance).median())
    if footprint <= 0:
        return 1.0
    return float(min(max(1.0, min_pixels / footprint), max_factor))


def flythrough_path(w2c: np.ndarray, num_frames: int) -> np.ndarray:
    """``[num_frames, 4, 4]`` camera-to-world poses on a smooth path through the cameras (as ``flythrough.mp4``)."""
    from vist3a.cameras import interpolate_poses, invert_rigid, to_homogeneous

    c2w = to_homogeneous(invert_rigid(torch.from_numpy(w2c[:, :3]).double()))
    return to_homogeneous(interpolate_poses(c2w, num_frames)).numpy()


def _wxyz(rot: np.ndarray) -> np.ndarray:
    from vist3a.cameras import rotmat_to_quat

    return rotmat_to_quat(torch.from_numpy(np.asarray(rot, dtype=np.float64))).numpy()


def build_viewer(data: SceneData, *, host: str = "127.0.0.1", port: int = 8080, max_splats: int = 1_000_000):
    """Start a viser server showing ``data``; returns it (``server.stop()`` ends it). See the module docstring."""
    import viser

    from vist3a.exports.glb import frustum_depth
    from vist3a.splats.gaussians import sh_dc_to_rgb

    server = viser.ViserServer(host=host, port=port, verbose=False)
    server.scene.set_up_direction("-y")  # OpenCV world: y points down
    eye, look_at, up = initial_view(data)
    server.initial_camera.position, server.initial_camera.look_at, server.initial_camera.up = eye, look_at, up
    server.initial_camera.fov = VIEW_FOV
    server.scene.set_background_image(np.zeros((1, 1, 3), np.uint8))  # black, as the app's 3D view
    gui = server.gui
    gui.add_markdown("**vist3a** scene viewer")
    if data.gaussians is not None:
        g = data.gaussians.detach().to(device="cpu", dtype=torch.float32)
        if len(g) > max_splats:
            g = g[torch.argsort(g.opacities, descending=True)[:max_splats]]
            logger.warning("showing the %d most opaque of %d splats", max_splats, len(data.gaussians))
        covariances = splat_covariances(g.quats, g.scales).astype(np.float32)
        factor = default_size_factor(g, eye)
        splats = server.scene.add_gaussian_splats(
            "/gaussians",
            centers=g.means.numpy(),
            covariances=covariances * factor**2,
            rgbs=sh_dc_to_rgb(g.sh[:, 0]).clamp(0, 1).numpy(),
            opacities=g.opacities[:, None].numpy(),
        )
        show_splats = gui.add_checkbox("Gaussians", True)
        show_splats.on_update(lambda _: setattr(splats, "visible", show_splats.value))
        size = gui.add_slider(
            "Splat size x", 1.0, 20.0, 0.5, round(factor * 2) / 2,
            hint="Enlarge splats for display (the browser renderer drops splats smaller than a pixel).",
        )
        size.on_update(lambda _: setattr(splats, "covariances", covariances * size.value**2))
    if data.points is not None:
        _add_point_cloud(server, data)
    num_cams = len(data.w2c)
    if num_cams:
        _add_cameras(server, data, frustum_depth(data))
    return server


def _add_point_cloud(server, data: SceneData) -> None:
    extent = float(np.linalg.norm(np.ptp(data.points, axis=0))) or 1.0
    cloud = server.scene.add_point_cloud(
        "/points", points=data.points, colors=data.colors, point_size=extent / 400, precision="float32"
    )
    size = server.gui.add_slider("Point size", 0.1, 5.0, 0.1, 1.0)
    size.on_update(lambda _: setattr(cloud, "point_size", extent / 400 * size.value))
    if data.confidence is None:
        return
    order = np.argsort(-data.confidence, kind="stable")
    keep = server.gui.add_slider(
        "Keep most confident %", 1, 100, 1, 100, hint="Hide the least confident pointmap pixels."
    )

    def update(_) -> None:
        count = max(1, round(len(order) * keep.value / 100))
        cloud.points = data.points[order[:count]]
        cloud.colors = data.colors[order[:count]]

    keep.on_update(update)


def _add_cameras(server, data: SceneData, depth: float) -> None:
    c2w = np.linalg.inv(data.w2c)
    frustums = []
    for i in range(len(c2w)):
        fy = data.K[i, 1, 1]
        image = None
        if data.frames is not None:
            image = data.frames[i]
        frustums.append(
            server.scene.add_camera_frustum(
                f"/cameras/{i:03d}",
                fov=2 * math.atan(data.height / 2 / fy),
                aspect=data.width / data.height,
                scale=depth,
                image=image,
                wxyz=_wxyz(c2w[i, :3, :3]),
                position=c2w[i, :3, 3],
                color=(255, 120, 0),
                thickness=2.0,
                thickness_units="screen",
            )
        )
    gui = server.gui
    show = gui.add_checkbox("Cameras", True)

    def toggle(_) -> None:
        for frustum in frustums:
            frustum.visible = show.value

    show.on_update(toggle)
    path = flythrough_path(data.w2c, 96)
    step = gui.add_slider("Fly-through", 0, len(path) - 1, 1, 0, hint="Move the view along the camera path.")
    play = gui.add_button("Play fly-through")

    def go_to(index: int) -> None:
        pose = path[index]
        for client in server.get_clients().values():
            with client.atomic():
                client.camera.wxyz = _wxyz(pose[:3, :3])
                client.camera.position = pose[:3, 3]

    step.on_update(lambda _: go_to(int(step.value)))

    def run(_) -> None:
        def loop() -> None:
            for index in range(len(path)):
                step.value = index  # moves the camera through step.on_update
                time.sleep(1 / 24)

        threading.Thread(target=loop, daemon=True).start()

    play.on_click(run)


def orbit_target(w2c: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, float]:
    """``(target [3], depth)``: the point on the optical axis of the camera ``w2c [4, 4]`` (OpenCV) at the median
    depth of ``points [N, 3]`` in front of it (all behind: their median distance; none: 1). The viewer and the
    app's 3D view turn the scene about it: the centre of the first decoded frame, at the scene's depth."""
    w2c = np.asarray(w2c, dtype=np.float64)
    cam = np.asarray(points, dtype=np.float64) @ w2c[:3, :3].T + w2c[:3, 3]
    ahead = cam[cam[:, 2] > 0, 2]
    if len(ahead):
        depth = float(np.median(ahead))
    else:
        depth = float(np.median(np.linalg.norm(cam, axis=1))) if len(cam) else 1.0
    depth = depth if depth > 0 else 1.0
    c2w = np.linalg.inv(w2c)
    return c2w[:3, 3] + depth * c2w[:3, 2], depth


def initial_view(data: SceneData) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(eye, look_at, up)`` of the viewer's first view: behind, beside and above the first predicted camera,
    looking at :func:`orbit_target`, so that the frustums and their frames show beside the scene; without cameras,
    the content's median point seen from -z (y down). ``up`` is the scene's up (-y) in both cases, not the first
    camera's: viser orbits about the camera's up, so a rolled first camera would tilt the turns."""
    xyz, _ = data.point_cloud(max_points=20_000)
    scene_up = np.array([0.0, -1.0, 0.0])
    if len(data.w2c):
        c2w = np.linalg.inv(data.w2c[0])
        target, depth = orbit_target(data.w2c[0], xyz)
        offset = -c2w[:3, 2] * 0.25 + c2w[:3, 0] * 0.7 - c2w[:3, 1] * 0.4  # back, right, up (camera axes)
        return c2w[:3, 3] + offset * depth, target, scene_up
    centre = np.median(xyz, axis=0)
    radius = float(np.linalg.norm(np.percentile(xyz, 95, axis=0) - np.percentile(xyz, 5, axis=0))) or 1.0
    return centre + np.array([0.0, -0.3, -1.2]) * radius, centre, scene_up


def serve(path: str | os.PathLike, *, host: str = "127.0.0.1", port: int = 8080) -> None:  # pragma: no cover
    """Load ``path``, start the viewer, print its URL and block until Ctrl-C."""
    import typer

    server = build_viewer(load_view_data(path), host=host, port=port)
    shown = "127.0.0.1" if host in ("127.0.0.1", "localhost") else host
    typer.echo(f"vist3a viewer of {path}: http://{shown}:{server.get_port()}  (Ctrl-C to stop)")
    try:
        while True:
            time.sleep(3600)
    finally:
        server.stop()
