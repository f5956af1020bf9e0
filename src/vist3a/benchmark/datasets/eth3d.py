"""ETH3D high-resolution multi-view (DSLR) scenes as posed clips with depth, in the release layout.

Layout (per scene, the release's archives unpacked into one folder; ``ROOT`` is a scene or a folder of scenes)::

    SCENE/images/dslr_images_undistorted/DSC_0286.JPG      <SCENE>_dslr_undistorted.7z: the frames
    SCENE/dslr_calibration_undistorted/cameras.txt          PINHOLE cameras   (COLMAP text model)
    SCENE/dslr_calibration_undistorted/images.txt           world-to-camera poses
    SCENE/dslr_calibration_jpg/cameras.txt, images.txt      <SCENE>_dslr_jpg.7z: the original (distorted) cameras
    SCENE/ground_truth_depth/dslr_images/DSC_0286.JPG       <SCENE>_dslr_depth.7z: depth (despite the name)

COLMAP's text model: ``cameras.txt`` lines ``CAMERA_ID MODEL WIDTH HEIGHT PARAMS...`` (pixel centres at +0.5, so
vist3a's ``cx`` is COLMAP's minus 0.5); ``images.txt`` two lines per image, ``IMAGE_ID QW QX QY QZ TX TY TZ
CAMERA_ID NAME`` (the world-to-camera rotation as a quaternion and translation, OpenCV axes) and its 2D points.

The ground-truth depth is what ETH3D's ``ground_truth_creator`` writes: raw little-endian float32, row-major, at the
*original* image's size, the z of the laser-scan points seen there (each point splatted to one pixel, nearest kept),
``+inf`` where there is none. It belongs to the original, distorted cameras (``THIN_PRISM_FISHEYE``), not to the
undistorted frames. This loader shows the undistorted frames with their pinhole cameras and samples the depth for
every output pixel through the distorted camera model (COLMAP's ``THIN_PRISM_FISHEYE`` forward projection): the
pixel's footprint is supersampled (about one sample per original pixel) and the median of the valid depths kept
(the scan is sparse at full resolution). Undistortion keeps each camera's pose, so the z values carry over.
Without the depth archive the clips have cameras only (pose columns).

Frames: the images of a scene in name order (DSC numbers); the Pi3 protocol takes every 5th (VGGT's ETH3D point
maps: a random subset per scene); vist3a takes ``num_frames`` evenly over a scene's keyframes (every ``stride``-th
image, default all). Only ETH3D's 13 training scenes have ground truth.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from vist3a.benchmark.datasets.common import first_clips, intrinsics, make_clip, no_sequences, pick_frames
from vist3a.cameras import invert_rigid, quat_to_rotmat, to_homogeneous
from vist3a.data.clip import MultiViewClip, resize_and_crop
from vist3a.data.media import natural_key, read_image
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

LAYOUT = ("SCENE/images/dslr_images_undistorted/*.JPG with SCENE/dslr_calibration_undistorted/{cameras,images}.txt, "
          "and for depth SCENE/ground_truth_depth/dslr_images/ with SCENE/dslr_calibration_jpg/{cameras,images}.txt "
          "(the ETH3D high-res multi-view release)")
UNDISTORTED = "dslr_calibration_undistorted"
DISTORTED = "dslr_calibration_jpg"
DEPTH_DIR = Path("ground_truth_depth") / "dslr_images"
MAX_SUPERSAMPLE = 16


@dataclass
class ColmapCamera:
    """One line of COLMAP's ``cameras.txt``: ``model`` name, image ``width`` / ``height``, ``params`` as written."""

    model: str
    width: int
    height: int
    params: tuple[float, ...]


@dataclass
class ColmapImage:
    """An image of COLMAP's ``images.txt``: ``name`` (relative to the image folder), ``w2c [4, 4]`` float64."""

    name: str
    w2c: Tensor
    camera_id: int


PARAM_COUNTS = {"SIMPLE_PINHOLE": 3, "PINHOLE": 4, "THIN_PRISM_FISHEYE": 12}


def read_colmap_cameras(path: Path) -> dict[int, ColmapCamera]:
    """COLMAP ``cameras.txt`` -> ``{camera_id: ColmapCamera}`` (models of :data:`PARAM_COUNTS`)."""
    cameras = {}
    for line in _data_lines(path):
        fields = line.split()
        try:
            cam_id, model, width, height = int(fields[0]), fields[1], int(fields[2]), int(fields[3])
            params = tuple(float(v) for v in fields[4:])
        except (IndexError, ValueError) as exc:
            raise UserInputError(f"{path}: cannot read the camera line {line!r}") from exc
        if PARAM_COUNTS.get(model) != len(params):
            raise UserInputError(f"{path}: camera {cam_id} is {model} with {len(params)} parameters; vist3a reads "
                                 + ", ".join(f"{m} ({n})" for m, n in PARAM_COUNTS.items()))
        cameras[cam_id] = ColmapCamera(model, width, height, params)
    return cameras


def read_colmap_images(path: Path) -> list[ColmapImage]:
    """COLMAP ``images.txt`` -> its images in file order (each image line is followed by its 2D-points line)."""
    if not path.is_file():
        raise UserInputError(f"{path} does not exist")
    lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
    images, i = [], 0
    while i < len(lines):
        fields = lines[i].split()
        if not fields:  # a stray blank line where an image line belongs
            i += 1
            continue
        try:
            qvec = torch.tensor([float(v) for v in fields[1:5]], dtype=torch.float64)
            tvec = torch.tensor([float(v) for v in fields[5:8]], dtype=torch.float64)
            camera_id, name = int(fields[8]), fields[9]
        except (IndexError, ValueError) as exc:
            raise UserInputError(f"{path}: cannot read the image line {lines[i]!r}") from exc
        w2c = to_homogeneous(torch.cat([quat_to_rotmat(qvec), tvec[:, None]], -1))
        images.append(ColmapImage(name, w2c, camera_id))
        i += 2
    return images


def _data_lines(path: Path) -> list[str]:
    if not path.is_file():
        raise UserInputError(f"{path} does not exist")
    return [line for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def pinhole_K(camera: ColmapCamera) -> Tensor:
    """``K [3, 3]`` (vist3a's integer pixel centres) of a PINHOLE / SIMPLE_PINHOLE camera."""
    if camera.model == "PINHOLE":
        fx, fy, cx, cy = camera.params
    elif camera.model == "SIMPLE_PINHOLE":
        fx, cx, cy = camera.params
        fy = fx
    else:
        raise UserInputError(f"expected an undistorted (PINHOLE) camera, got {camera.model}")
    return intrinsics(fx, fy, cx - 0.5, cy - 0.5)


def project(camera: ColmapCamera, xy: Tensor) -> Tensor:
    """Pixel coordinates ``[..., 2]`` (vist3a's integer pixel centres) of normalised camera rays ``xy [..., 2]``
    (``x / z``, ``y / z``) through ``camera``. ``THIN_PRISM_FISHEYE`` is COLMAP's: ``theta = atan(r)`` scales the
    ray to ``(u, v)``, then with ``r2 = u^2 + v^2``, ``radial = k1 r2 + k2 r2^2 + k3 r2^3 + k4 r2^4``:
    ``u' = u + u radial + 2 p1 u v + p2 (r2 + 2 u^2) + sx1 r2`` (``v'`` with p1 / p2 swapped and sy1), pixel
    ``fx u' + cx`` (params ``fx fy cx cy k1 k2 p1 p2 k3 k4 sx1 sy1``). Computed in ``xy``'s floating dtype."""
    xy = xy if xy.is_floating_point() else xy.double()
    x, y = xy[..., 0], xy[..., 1]
    p = camera.params
    if camera.model == "THIN_PRISM_FISHEYE":
        fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1 = p
        r = torch.sqrt(x * x + y * y)
        scale = torch.where(r > 1e-12, torch.atan(r) / r.clamp_min(1e-12), torch.ones_like(r))
        u, v = x * scale, y * scale
        r2 = u * u + v * v
        radial = k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
        x = u + u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u) + sx1 * r2
        y = v + v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v) + sy1 * r2
    elif camera.model == "PINHOLE":
        fx, fy, cx, cy = p
    elif camera.model == "SIMPLE_PINHOLE":
        fx, cx, cy = p
        fy = fx
    else:
        raise UserInputError(f"cannot project through a {camera.model} camera")
    return torch.stack([fx * x + cx - 0.5, fy * y + cy - 0.5], -1)


def read_depth(path: Path, camera: ColmapCamera) -> Tensor:
    """ETH3D's raw float32 depth of an image taken by ``camera`` -> ``[H, W]`` (``+inf``: no ground truth)."""
    raw = np.fromfile(path, dtype="<f4")
    if raw.size != camera.width * camera.height:
        raise UserInputError(f"{path}: {raw.size} floats, expected {camera.width}x{camera.height} for its camera")
    return torch.from_numpy(raw.reshape(camera.height, camera.width).copy())


def sample_depth(depth: Tensor, camera: ColmapCamera, K: Tensor, out_hw: tuple[int, int],
                 supersample: int | None = None, rows_per_chunk: int = 32) -> Tensor:
    """Depth ``[H, W]`` for a pinhole camera ``K`` (same pose as ``camera``) from ``depth`` taken by ``camera``.

    Each output pixel shoots ``supersample^2`` rays over its footprint (default: about one per source pixel,
    ``ceil(f_source / f_out)``), projects them through ``camera`` and keeps the median of the valid depths they hit
    (nearest source pixel); pixels with none are 0. Rays are computed in float32 (a hundredth of a pixel at 6000 px).
    """
    K = K.double()
    if float(K[0, 1]) != 0.0:
        raise ValueError(f"`K` must have no skew, got {K.tolist()}")
    if supersample is None:
        ratio = float(camera.params[0]) / float(K[0, 0])
        supersample = int(min(MAX_SUPERSAMPLE, max(1, np.ceil(ratio - 1e-6))))
    s = supersample
    height, width = out_hw
    offsets = (torch.arange(s, dtype=torch.float64) + 0.5) / s - 0.5
    xs = (((torch.arange(width, dtype=torch.float64)[:, None] + offsets).reshape(-1) - K[0, 2]) / K[0, 0]).float()
    flat = depth.float().reshape(-1)
    out = torch.zeros(height, width)
    for start in range(0, height, rows_per_chunk):
        stop = min(start + rows_per_chunk, height)
        rows = (torch.arange(start, stop, dtype=torch.float64)[:, None] + offsets).reshape(-1)
        ys = ((rows - K[1, 2]) / K[1, 1]).float()
        pix = project(camera, torch.stack(torch.broadcast_tensors(xs[None, :], ys[:, None]), -1)).round().long()
        col, row = pix[..., 0], pix[..., 1]
        inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
        values = flat[row.clamp(0, camera.height - 1) * camera.width + col.clamp(0, camera.width - 1)]
        values = torch.where(inside & torch.isfinite(values) & (values > 0), values, float("nan"))
        blocks = values.reshape(stop - start, s, width, s).permute(0, 2, 1, 3).reshape(stop - start, width, s * s)
        out[start:stop] = torch.nan_to_num(torch.nanmedian(blocks, dim=-1).values, nan=0.0)
    return out


def find_scenes(root: Path) -> list[Path]:
    """Scene folders: ``root`` itself or its sub-folders holding ``dslr_calibration_undistorted/images.txt``."""
    if (root / UNDISTORTED / "images.txt").is_file():
        return [root]
    return sorted((p for p in root.iterdir() if (p / UNDISTORTED / "images.txt").is_file()), key=natural_key)


def _image_path(scene: Path, name: str) -> Path:
    path = scene / "images" / name
    return path if path.is_file() else scene / "images" / "dslr_images_undistorted" / Path(name).name


def load_frames(paths: list[Path], K: Tensor, size: int | None) -> tuple[Tensor, Tensor, list | None]:
    """Frames ``[T, 3, S, S]``, their ``K [T, 3, 3]`` and the crop ``[x0, y0, side, size]`` of the first one, each
    image centre-cropped and resized to ``size`` as soon as it is read (a 24-megapixel DSLR frame is 300 MB as
    floats); ``size`` None keeps them as read (one size)."""
    frames, Ks, crop = [], [], None
    for path, K_i in zip(paths, K, strict=True):
        if not path.is_file():
            raise UserInputError(f"{path} does not exist (listed in images.txt)")
        one = MultiViewClip(frames=read_image(path)[None], w2c=torch.eye(4)[None], K=K_i[None].float())
        if size is not None:
            one = resize_and_crop(one, size)
            crop = crop or one.meta["crop_resize"]
        frames.append(one.frames[0])
        Ks.append(one.K[0])
    if len({tuple(f.shape) for f in frames}) > 1:
        raise UserInputError(f"the frames of {paths[0].parent} differ in size; pass a size to crop and resize them")
    return torch.stack(frames), torch.stack(Ks), crop


def load_scene(scene: Path, picks: list[int], size: int | None) -> MultiViewClip:
    """The images ``picks`` (positions in name order) of one ETH3D scene, with depth when the scene has it."""
    cameras = read_colmap_cameras(scene / UNDISTORTED / "cameras.txt")
    images = sorted(read_colmap_images(scene / UNDISTORTED / "images.txt"), key=lambda im: natural_key(im.name))
    chosen = [images[i] for i in picks]
    K = torch.stack([pinhole_K(cameras[im.camera_id]) for im in chosen])
    frames, K, crop = load_frames([_image_path(scene, im.name) for im in chosen], K, size)
    names = [Path(im.name).name for im in chosen]
    meta = {"source": "eth3d", "scene": scene.name, "frames": names}
    if crop is not None:
        meta["crop_resize"] = crop
    depth = None
    depth_dir = scene / DEPTH_DIR
    if depth_dir.is_dir():
        distorted_cameras = read_colmap_cameras(scene / DISTORTED / "cameras.txt")
        distorted = {Path(im.name).name: im for im in read_colmap_images(scene / DISTORTED / "images.txt")}
        depths = []
        for name, K_i in zip(names, K, strict=True):
            if name not in distorted:
                raise UserInputError(f"{scene / DISTORTED / 'images.txt'} lists no {name}")
            camera = distorted_cameras[distorted[name].camera_id]
            depths.append(sample_depth(read_depth(depth_dir / name, camera), camera, K_i, tuple(frames.shape[-2:])))
        depth = torch.stack(depths)
        meta["depth"] = f"{DEPTH_DIR.as_posix()} through {DISTORTED}"
    else:
        logger.info("%s has no %s: cameras only", scene, DEPTH_DIR)
    w2c = torch.stack([im.w2c for im in chosen])
    return make_clip(frames, invert_rigid(w2c), K, depth, None, meta)


def eth3d_clips(root: str | Path, num_clips: int, num_frames: int, size: int | None,
                stride: int = 1) -> list[MultiViewClip]:
    """Up to ``num_clips`` clips, one per scene in natural order, each of ``num_frames`` images picked as the module
    docstring says, centre-cropped and resized to ``size``; scenes with too few keyframes are skipped."""
    root = Path(root)
    if not root.is_dir():
        raise no_sequences("eth3d", root, LAYOUT, "not a folder")
    scenes = find_scenes(root)
    clips = first_clips(
        scenes, lambda scene: pick_frames(len(read_colmap_images(scene / UNDISTORTED / "images.txt")), num_frames,
                                          stride),
        lambda scene, picks: load_scene(scene, picks, size), num_clips)
    if not clips:
        raise no_sequences("eth3d", root, LAYOUT, "no scene found" if not scenes else
                           f"no scene with {num_frames} keyframes")
    return clips

