"""The native 7-Scenes / ETH3D / ScanNet loaders on tiny fake datasets written here in each release layout.

Every fake scene is one textured plane seen by known cameras: depth is the analytic ray-plane distance (7-Scenes and
ScanNet as millimetre PNGs; ETH3D as laser points splatted into its distorted camera, sparsely, like ETH3D's
ground-truth creator), frames are the plane's texture. Loaded clips must put every valid depth pixel back on the plane
through the loaded cameras, and the geometry benchmark must score the analytic scene as (nearly) perfect.
"""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch

from vist3a.benchmark.datasets import eth3d, scannet_clips, seven_scenes_clips
from vist3a.benchmark.datasets.common import keyframes, pick_frames
from vist3a.benchmark.datasets.eth3d import (
    ColmapCamera,
    eth3d_clips,
    project,
    read_colmap_images,
    sample_depth,
)
from vist3a.benchmark.decoders import Decoder, Prediction
from vist3a.benchmark.geometry import GeometryConfig, evaluate_geometry
from vist3a.cameras import look_at_w2c, rotmat_to_quat
from vist3a.errors import UserInputError
from vist3a.recon.gaussian_ops import unproject_depth

NORMAL = np.array([0.3, -0.2, -1.0]) / np.linalg.norm([0.3, -0.2, -1.0])
OFFSET = float(NORMAL @ np.array([0.0, 0.0, 4.0]))  # the plane n . X = OFFSET passes through (0, 0, 4)


def cameras(count: int) -> torch.Tensor:
    """World-to-camera ``[count, 4, 4]`` float64 of cameras near the origin looking at the plane."""
    out = []
    for i in range(count):
        a = 0.7 * i
        eye = torch.tensor([0.3 * math.cos(a), 0.2 * math.sin(a), 0.1 * i])
        target = torch.tensor([0.2 * i - 0.5, 0.1, 4.0])
        out.append(look_at_w2c(eye, target, torch.tensor([0.0, -1.0, 0.0])))
    return torch.stack(out).double()


def K_matrix(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def rays(K: np.ndarray, height: int, width: int) -> np.ndarray:
    """Camera rays ``[H, W, 3]`` (z = 1) through the integer pixel centres."""
    v, u = np.meshgrid(np.arange(height, dtype=np.float64), np.arange(width, dtype=np.float64), indexing="ij")
    return np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(K).T


def plane_depth(w2c: torch.Tensor, cam_rays: np.ndarray) -> np.ndarray:
    """Z-depth of the plane along camera rays ``[..., 3]`` (z = 1) of the camera ``w2c``."""
    c2w = np.linalg.inv(w2c.numpy())
    centre, world_rays = c2w[:3, 3], cam_rays @ c2w[:3, :3].T
    return (OFFSET - NORMAL @ centre) / (world_rays @ NORMAL)


def texture(points: np.ndarray) -> np.ndarray:
    """Smooth RGB in [0.15, 0.85] of world points ``[..., 3]``."""
    x, y, z = points[..., 0], points[..., 1], points[..., 2]
    return np.stack([0.5 + 0.35 * np.sin(1.3 * x + 0.7 * y), 0.5 + 0.35 * np.cos(0.9 * y - 0.5 * z),
                     0.5 + 0.35 * np.sin(0.6 * x + 1.1 * z)], -1)


def render(w2c: torch.Tensor, K: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """``(uint8 frame [H, W, 3], depth [H, W])`` of the plane."""
    cam_rays = rays(K, height, width)
    depth = plane_depth(w2c, cam_rays)
    c2w = np.linalg.inv(w2c.numpy())
    points = (cam_rays * depth[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]
    return (texture(points) * 255).round().astype(np.uint8), depth


def plane_error(clip) -> torch.Tensor:
    """``|n . X - offset|`` of the loaded clip's valid depth pixels, unprojected with its own cameras."""
    mask = clip.depth > 0
    points = unproject_depth(torch.where(mask, clip.depth, torch.zeros_like(clip.depth)).double(), clip.w2c.double(),
                             clip.K.double())
    return (points[mask] @ torch.from_numpy(NORMAL) - OFFSET).abs()


class AnalyticDecoder(Decoder):
    """The true scene (plane pointmaps from the true cameras), moved by a similarity, as a decoder would predict it."""

    name = "analytic"

    def __init__(self, w2c: torch.Tensor, K: torch.Tensor) -> None:
        self.w2c, self.K = w2c, K

    def __call__(self, frames: torch.Tensor) -> Prediction:
        height, width = frames.shape[-2:]
        scale, turn = 2.5, torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
        points, w2c = [], []
        for w2c_i, K_i in zip(self.w2c, self.K, strict=True):
            cam_rays = rays(K_i.numpy(), height, width)
            c2w = np.linalg.inv(w2c_i.numpy())
            world = (cam_rays * plane_depth(w2c_i, cam_rays)[..., None]) @ c2w[:3, :3].T + c2w[:3, 3]
            points.append(scale * torch.from_numpy(world) @ turn.T)
            moved = torch.from_numpy(c2w).clone()
            moved[:3, :3] = turn @ moved[:3, :3]
            moved[:3, 3] = scale * turn @ moved[:3, 3]
            w2c.append(torch.linalg.inv(moved))
        return Prediction(torch.stack(w2c).float(), self.K.float(), torch.stack(points).float())


# ----------------------------------------------------------------------------------------------- frame selection
def test_keyframes_follow_the_protocols_and_spread_num_frames_evenly():
    assert pick_frames(1000, 5, stride=200) == [0, 200, 400, 600, 800]  # CUT3R's sparse 7-Scenes views
    assert pick_frames(500, 5, stride=200) is None  # 3 keyframes: too few for 5 views
    assert pick_frames(9, 5) == [0, 2, 4, 6, 8]
    window = keyframes(5000, stride=3, span=270)  # MonST3R / CUT3R's ScanNet pose window
    assert len(window) == 90 and window[-1] == 267
    assert pick_frames(5000, 13, stride=3, span=270) == [window[i] for i in
                                                          (0, 7, 15, 22, 30, 37, 44, 52, 59, 67, 74, 82, 89)]
    with pytest.raises(UserInputError):
        keyframes(10, stride=0)


# ----------------------------------------------------------------------------------------------- 7-Scenes
SEVEN_H, SEVEN_W = 24, 32  # 640x480 / 20


def seven_K(focal: float, width: int = SEVEN_W) -> np.ndarray:
    """The release's intrinsics (stated for 640x480) for ``width`` px wide frames."""
    s = width / 640
    return K_matrix(focal * s, focal * s, (320 + 0.5) * s - 0.5, (240 + 0.5) * s - 0.5)


def write_seven_scenes(root: Path, registered: bool, frames: int = 9, height: int = SEVEN_H,
                       width: int = SEVEN_W) -> torch.Tensor:
    """chess/seq-01 (train, 5 frames) and chess/seq-02 (test, ``frames`` frames); returns seq-02's w2c."""
    scene = root / "chess"
    (scene / "TestSplit.txt").parent.mkdir(parents=True)
    (scene / "TestSplit.txt").write_text("sequence2\n")
    (scene / "TrainSplit.txt").write_text("sequence1\n")
    out = None
    for seq, count in (("seq-01", 5), ("seq-02", frames)):
        folder = scene / seq
        folder.mkdir()
        w2c = cameras(count)
        for i in range(count):
            image, _ = render(w2c[i], seven_K(525.0, width), height, width)
            depth_K = seven_K(525.0 if registered else 585.0, width)
            depth = plane_depth(w2c[i], rays(depth_K, height, width))
            mm = np.round(depth * 1000).astype(np.uint16)
            if i == 0:
                mm[5, 10], mm[6, 11] = 65535, 0  # no reading
            stem = f"frame-{i:06d}"
            iio.imwrite(folder / f"{stem}.color.png", image)
            iio.imwrite(folder / (f"{stem}.depth.proj.png" if registered else f"{stem}.depth.png"), mm)
            np.savetxt(folder / f"{stem}.pose.txt", np.linalg.inv(w2c[i].numpy()), fmt="%.9f")
        out = w2c
    return out


def test_seven_scenes_registered_depth_and_frames_match_the_analytic_plane(tmp_path):
    w2c = write_seven_scenes(tmp_path, registered=True)
    clips = seven_scenes_clips(tmp_path, num_clips=4, num_frames=5, size=24)
    assert len(clips) == 1  # the test split only: chess/seq-02
    clip = clips[0]
    assert clip.meta["sequence"] == "chess/seq-02" and clip.frames.shape == (5, 3, 24, 24)
    assert clip.meta["frames"] == [f"frame-{i:06d}" for i in (0, 2, 4, 6, 8)]
    torch.testing.assert_close(clip.w2c.double(), w2c[[0, 2, 4, 6, 8]], atol=1e-6, rtol=0)
    K = seven_K(525.0)
    K[0, 2] -= 4  # centre crop 32 -> 24 columns
    torch.testing.assert_close(clip.K[0].double(), torch.from_numpy(K), atol=1e-5, rtol=0)
    assert clip.depth[0, 5, 6] == 0 and clip.depth[0, 6, 7] == 0  # 65535 and 0 read as no depth
    assert float((clip.depth > 0).float().mean()) > 0.99
    assert float(plane_error(clip).max()) < 1e-3  # millimetre PNGs
    for v, w2c_v in zip(range(5), w2c[[0, 2, 4, 6, 8]], strict=True):  # frames line up with the cameras
        image, _ = render(w2c_v, K, 24, 24)
        assert np.abs(clip.frames[v].permute(1, 2, 0).numpy() - image / 255.0).max() < 1e-6
    result = evaluate_geometry(GeometryConfig(num_clips=1, direction="as-is", progress=False), "cpu",
                               decoders=[AnalyticDecoder(w2c[[0, 2, 4, 6, 8]], clip.K.double())], clips=clips)
    row = result["rows"]["analytic"]
    assert row["rra@5"] == 1.0 and row["rta@5"] == 1.0 and row["auc@30"] > 0.99 and row["ate"] < 1e-4
    assert row["acc"] < 1e-3 and row["comp"] < 1e-3 and row["nc"] > 0.99


def test_seven_scenes_raw_depth_is_registered_to_the_colour_camera(tmp_path):
    height, width = 96, 128  # the registration rounds to pixels: errors scale with the pixel footprint
    w2c = write_seven_scenes(tmp_path, registered=False, height=height, width=width)
    clip = seven_scenes_clips(tmp_path / "chess" / "seq-02", num_clips=1, num_frames=5, size=None)[0]
    assert clip.frames.shape == (5, 3, height, width) and "registered" in clip.meta["depth"]
    truth, raw = (torch.stack([torch.from_numpy(plane_depth(w, rays(seven_K(focal, width), height, width))).float()
                               for w in w2c[[0, 2, 4, 6, 8]]]) for focal in (525.0, 585.0))
    valid = clip.depth > 0
    assert float(valid.float().mean()) > 0.75  # the narrower depth camera leaves a border without depth
    registered, unregistered = (clip.depth - truth).abs()[valid], (raw - truth).abs()[valid]
    assert float(registered.max()) < 0.04 and float(unregistered.mean()) > 8 * float(registered.mean())
    assert float(plane_error(clip).max()) < 0.02
    # the border without depth leaves the normals next to it undefined, not wrong: NC stays ~1
    result = evaluate_geometry(GeometryConfig(num_clips=1, direction="as-is", progress=False), "cpu", clips=[clip],
                               decoders=[AnalyticDecoder(w2c[[0, 2, 4, 6, 8]], clip.K.double())])
    assert result["rows"]["analytic"]["nc"] > 0.995


def test_seven_scenes_split_stride_and_folder_errors(tmp_path):
    write_seven_scenes(tmp_path, registered=True)
    train = seven_scenes_clips(tmp_path, num_clips=4, num_frames=5, size=24, split="train")
    assert [c.meta["sequence"] for c in train] == ["chess/seq-01"]
    with pytest.raises(UserInputError, match=r"no sequence with 5 keyframes; expected SCENE/TestSplit\.txt"):
        seven_scenes_clips(tmp_path, num_clips=4, num_frames=5, size=24, stride=4)  # keyframes 0, 4, 8
    with pytest.raises(UserInputError, match=r"expected SCENE/TestSplit\.txt"):
        seven_scenes_clips(tmp_path / "nowhere", 1, 5, 24)


# ----------------------------------------------------------------------------------------------- ETH3D
UND = ColmapCamera("PINHOLE", 40, 30, (36.0, 36.0, 20.0, 15.0))  # COLMAP's cx, cy: pixel centres at +0.5
DIST = ColmapCamera("THIN_PRISM_FISHEYE", 160, 120,
                    (150.0, 150.0, 80.0, 60.0, -0.1, 0.01, 0.001, -0.001, 0.002, 0.0, 0.002, -0.001))


def thin_prism(xy: np.ndarray, params: tuple[float, ...]) -> np.ndarray:
    """COLMAP's THIN_PRISM_FISHEYE, pixel coordinates with centres at +0.5 (as cameras.txt), written out again."""
    fx, fy, cx, cy, k1, k2, p1, p2, k3, k4, sx1, sy1 = params
    r = np.hypot(xy[..., 0], xy[..., 1])
    u, v = xy[..., 0] * np.arctan(r) / r, xy[..., 1] * np.arctan(r) / r
    r2 = u * u + v * v
    radial = k1 * r2 + k2 * r2**2 + k3 * r2**3 + k4 * r2**4
    du = u * radial + 2 * p1 * u * v + p2 * (r2 + 2 * u * u) + sx1 * r2
    dv = v * radial + 2 * p2 * u * v + p1 * (r2 + 2 * v * v) + sy1 * r2
    return np.stack([fx * (u + du) + cx, fy * (v + dv) + cy], -1)


def splat_depth(w2c: torch.Tensor, keep: float, rng: np.random.Generator) -> np.ndarray:
    """ETH3D-style ground truth: plane points splatted into the distorted image (nearest z per pixel), ``+inf``
    elsewhere, then only a fraction ``keep`` of the pixels kept (the scan is sparse at full resolution)."""
    ty, tx = np.meshgrid(np.linspace(-0.62, 0.62, 700), np.linspace(-0.75, 0.75, 900), indexing="ij")
    cam_rays = np.stack([tx, ty, np.ones_like(tx)], -1)
    z = plane_depth(w2c, cam_rays).reshape(-1)
    pix = np.round(thin_prism(cam_rays[..., :2], DIST.params).reshape(-1, 2) - 0.5).astype(int)
    inside = (pix[:, 0] >= 0) & (pix[:, 0] < DIST.width) & (pix[:, 1] >= 0) & (pix[:, 1] < DIST.height)
    depth = np.full(DIST.height * DIST.width, np.inf)
    np.minimum.at(depth, pix[inside, 1] * DIST.width + pix[inside, 0], z[inside])
    depth[rng.random(depth.size) > keep] = np.inf
    return depth.reshape(DIST.height, DIST.width)


def colmap_image_line(index: int, w2c: torch.Tensor, name: str) -> str:
    q = rotmat_to_quat(w2c[:3, :3])
    values = [*q.tolist(), *w2c[:3, 3].tolist()]
    return f"{index} " + " ".join(f"{v:.12f}" for v in values) + f" 1 {name}\n"


def write_eth3d(root: Path, count: int = 6, depth: bool = True) -> torch.Tensor:
    scene = root / "courtyard"
    undist, dist = scene / "dslr_calibration_undistorted", scene / "dslr_calibration_jpg"
    for folder in (undist, dist, scene / "images" / "dslr_images_undistorted", scene / "ground_truth_depth" /
                   "dslr_images"):
        folder.mkdir(parents=True)
    header = "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
    for folder, cam in ((undist, UND), (dist, DIST)):
        params = " ".join(f"{p:g}" for p in cam.params)
        (folder / "cameras.txt").write_text(f"{header}1 {cam.model} {cam.width} {cam.height} {params}\n")
    w2c = cameras(count)
    rng = np.random.default_rng(0)
    und_lines, dist_lines = ["# Image list with two lines of data per image:\n"], []
    for i in reversed(range(count)):  # file order need not be name order
        name = f"DSC_{i:04d}.JPG"
        und_lines += [colmap_image_line(i + 1, w2c[i], f"dslr_images_undistorted/{name}"), "1.5 2.5 -1\n"]
        dist_lines += [colmap_image_line(i + 1, w2c[i], f"dslr_images/{name}"), "\n"]
        K = K_matrix(36.0, 36.0, 19.5, 14.5)
        image, _ = render(w2c[i], K, UND.height, UND.width)
        iio.imwrite(scene / "images" / "dslr_images_undistorted" / name, image, extension=".jpg", quality=95)
        splat_depth(w2c[i], keep=0.25, rng=rng).astype("<f4").tofile(scene / "ground_truth_depth" / "dslr_images" /
                                                                     name)
    (undist / "images.txt").write_text("".join(und_lines))
    (dist / "images.txt").write_text("".join(dist_lines))
    if not depth:
        for f in (scene / "ground_truth_depth" / "dslr_images").iterdir():
            f.unlink()
        (scene / "ground_truth_depth" / "dslr_images").rmdir()
    return w2c


def test_colmap_text_model_conventions(tmp_path):
    (tmp_path / "images.txt").write_text("# comment\n7 0.7071067811865476 0.7071067811865476 0 0 1 2 3 4 a/b.JPG\n"
                                         "10.0 20.0 -1\n\n8 1 0 0 0 0 0 0 4 c.JPG\n\n")
    first, second = read_colmap_images(tmp_path / "images.txt")
    rot_x90 = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], dtype=torch.float64)  # QW first, world-to-camera
    torch.testing.assert_close(first.w2c[:3, :3], rot_x90, atol=1e-12, rtol=0)
    assert first.w2c[:3, 3].tolist() == [1.0, 2.0, 3.0] and first.camera_id == 4 and first.name == "a/b.JPG"
    assert second.name == "c.JPG" and torch.equal(second.w2c, torch.eye(4, dtype=torch.float64))
    assert eth3d.pinhole_K(UND)[0, 2] == 19.5  # COLMAP's +0.5 pixel centres -> vist3a's integer ones
    # THIN_PRISM_FISHEYE with k1 only is the equidistant fisheye theta_d = theta (1 + k1 theta^2) (Kannala-Brandt)
    cam = ColmapCamera("THIN_PRISM_FISHEYE", 100, 100, (50.0, 40.0, 50.0, 50.0, 0.1, *[0.0] * 7))
    theta = math.atan(0.5)
    scale = theta * (1 + 0.1 * theta**2) / 0.5
    expected = [50.0 * 0.3 * scale + 49.5, 40.0 * 0.4 * scale + 49.5]
    xy = torch.tensor([0.3, 0.4], dtype=torch.float64)
    torch.testing.assert_close(project(cam, xy), torch.tensor(expected, dtype=torch.float64))
    prism = ColmapCamera("THIN_PRISM_FISHEYE", 100, 100, (50.0, 40.0, 50.0, 50.0, *[0.0] * 6, 0.2, 0.0))
    u, v = 0.3 * theta / 0.5, 0.4 * theta / 0.5  # sx1 shifts x by sx1 * r^2 (r^2 = theta^2 here)
    torch.testing.assert_close(project(prism, xy),
                               torch.tensor([50.0 * (u + 0.2 * theta**2) + 49.5, 40.0 * v + 49.5], dtype=torch.float64))


def test_eth3d_depth_through_the_distorted_camera_lands_on_the_plane(tmp_path):
    w2c = write_eth3d(tmp_path)
    clips = eth3d_clips(tmp_path, num_clips=2, num_frames=5, size=30)
    clip = clips[0]
    assert len(clips) == 1 and clip.meta["scene"] == "courtyard"
    picks = [0, 1, 2, 4, 5]  # 5 of 6 images, evenly
    assert clip.meta["frames"] == [f"DSC_{i:04d}.JPG" for i in picks]
    torch.testing.assert_close(clip.w2c.double(), w2c[picks], atol=1e-6, rtol=0)
    assert clip.frames.shape == (5, 3, 30, 30) and float(clip.K[0, 0, 2]) == pytest.approx(14.5)  # 19.5 - crop 5
    assert float((clip.depth > 0).float().mean()) > 0.9  # pooled over ~25 samples of a 25 %-dense scan
    # z ~ 4: an output pixel spans ~0.11 and its depth varies by up to ~0.03 across the image; a pixel whose valid
    # samples all lie on one side of its footprint is off by about that
    error = plane_error(clip)
    assert float(error.mean()) < 0.012 and float(error.max()) < 0.06
    # the same depth read as if the distorted camera were a pinhole lands off the plane away from the centre
    pinhole = ColmapCamera("PINHOLE", DIST.width, DIST.height, DIST.params[:4])
    wrong = clip.select(range(5))
    wrong.depth = torch.stack([sample_depth(eth3d.read_depth(tmp_path / "courtyard" / "ground_truth_depth" /
                                                             "dslr_images" / name, DIST), pinhole, K, (30, 30))
                               for name, K in zip(clip.meta["frames"], clip.K, strict=True)])
    assert float(plane_error(wrong).max()) > 3 * float(error.max())
    result = evaluate_geometry(GeometryConfig(num_clips=1, direction="as-is", progress=False), "cpu",
                               decoders=[AnalyticDecoder(w2c[picks], clip.K.double())], clips=clips)
    row = result["rows"]["analytic"]
    assert row["rra@5"] == 1.0 and row["acc"] < 0.01 and row["comp"] < 0.01


def test_eth3d_without_the_depth_archive_gives_cameras_only(tmp_path):
    write_eth3d(tmp_path, depth=False)
    clip = eth3d_clips(tmp_path / "courtyard", num_clips=1, num_frames=5, size=None)[0]
    assert clip.depth is None and clip.frames.shape == (5, 3, 30, 40) and float(clip.K[0, 0, 2]) == 19.5
    with pytest.raises(UserInputError, match=r"no scene with 9 keyframes; expected SCENE/images/dslr_images_undist"):
        eth3d_clips(tmp_path, num_clips=1, num_frames=9, size=None)


# ----------------------------------------------------------------------------------------------- ScanNet
SCAN_K = K_matrix(28.0, 28.0, 15.5, 11.5)  # depth camera of 32x24 depth maps


def write_scannet(scene: Path, count: int = 12) -> torch.Tensor:
    for sub in ("color", "depth", "pose", "intrinsic"):
        (scene / sub).mkdir(parents=True)
    color_K = K_matrix(56.0, 56.0, 31.5, 23.5)  # the same camera at 64x48
    w2c = cameras(count)
    for i in range(count):
        image, _ = render(w2c[i], color_K, 48, 64)
        iio.imwrite(scene / "color" / f"{i}.jpg", image, extension=".jpg", quality=95)
        depth = plane_depth(w2c[i], rays(SCAN_K, 24, 32))
        iio.imwrite(scene / "depth" / f"{i}.png", np.round(depth * 1000).astype(np.uint16))
        pose = np.full((4, 4), -np.inf) if i == 3 else np.linalg.inv(w2c[i].numpy())  # tracking lost at frame 3
        np.savetxt(scene / "pose" / f"{i}.txt", pose, fmt="%f")
    for name, K in (("intrinsic_depth", SCAN_K), ("intrinsic_color", color_K)):
        mat = np.eye(4)
        mat[:3, :3] = K
        np.savetxt(scene / "intrinsic" / f"{name}.txt", mat, fmt="%f")
    return w2c


def test_scannet_export_skips_lost_poses_and_lands_on_the_plane(tmp_path):
    w2c = write_scannet(tmp_path / "scans" / "scene0707_00")
    clips = scannet_clips(tmp_path, num_clips=1, num_frames=5, size=24, stride=1, span=None)
    clip = clips[0]
    assert clip.meta["scene"] == "scene0707_00" and clip.meta["frames"] == [0, 2, 6, 9, 11]  # 3 has no pose
    torch.testing.assert_close(clip.w2c.double(), w2c[[0, 2, 6, 9, 11]], atol=1e-5, rtol=0)
    assert clip.frames.shape == (5, 3, 24, 24) and float(clip.K[0, 0, 2]) == pytest.approx(11.5)  # 15.5 - crop 4
    assert float((clip.depth > 0).float().mean()) == 1.0 and float(plane_error(clip).max()) < 1e-3
    image, _ = render(w2c[0], clip.K[0].double().numpy(), 24, 24)  # colour resized to the depth camera's grid
    assert np.abs(clip.frames[0].permute(1, 2, 0).numpy() - image / 255.0).mean() < 0.03
    with pytest.raises(UserInputError, match=r"no scene with 5 posed keyframes; expected SCENE/color/N\.jpg"):
        scannet_clips(tmp_path, num_clips=1, num_frames=5, size=24)  # the protocol window: 0, 6, 9 (3 is lost)


# ----------------------------------------------------------------------------------------------- vist3a eval
def test_eval_geometry_reads_the_release_folders(tmp_path, monkeypatch, capsys):
    from vist3a.benchmark import decoders as decoder_module
    from vist3a.cli.main import run

    write_seven_scenes(tmp_path / "7scenes", registered=True)

    class Fixed(Decoder):
        name = "stitched"

        def __call__(self, frames):
            views, _, height, width = frames.shape
            gen = torch.Generator().manual_seed(0)
            w2c = torch.eye(4).repeat(views, 1, 1)
            w2c[:, :3, 3] = torch.randn(views, 3, generator=gen)
            K = torch.tensor([[30.0, 0, 31.5], [0, 30.0, 31.5], [0, 0, 1]]).repeat(views, 1, 1)
            return Prediction(w2c, K, torch.randn(views, height, width, 3, generator=gen))

    monkeypatch.setattr(decoder_module, "load_decoders", lambda preset, names, device: [Fixed()])

    assert run(["eval", "geometry", "--data", f"7scenes:{tmp_path / '7scenes'}", "--num-clips", "1", "--frames", "5",
                "--compare", "none", "--direction", "as-is", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"Geometry on 7scenes:{tmp_path / '7scenes'} (1 clips)" in out and "Acc ↓" in out and "RRA@5" in out
    assert run(["eval", "geometry", "--data", f"scannet:{tmp_path / '7scenes'}", "--compare", "none"]) == 2
    err = capsys.readouterr().err
    assert "expected SCENE/color/N.jpg" in err and len(err.strip().splitlines()) == 1
    assert run(["eval", "geometry", "--data", "nano", "--keyframe-every", "3"]) == 2
    assert "--keyframe-every applies to" in capsys.readouterr().err
