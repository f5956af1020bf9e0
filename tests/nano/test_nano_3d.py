"""Is the quickstart scene 3D? Checks that fail on a 2.5D sheet (issue 15).

Both failed on the round-4 weights (the camera head predicted one rotation for every view, docs/nano.md
§ Round 5). The round-5 weights (direction-canonical camera head, mirror-select, the circling template) passed the
camera span but not the turntable (seed 0 kept 12 % of the colours' pixels at +45°; mirror-select had decoded the
video's mirror image). With ``--direction motion`` (round 10: the turn read off the frames, which picks the right
way for ~95 % of held-out clips, against 60-70 % for mirror-select) seed 0 decodes as is and both pass; the
turntable judge passes for 7 of 8 seeds (``benchmarks/nano_camera_paths.py``).
"""

from __future__ import annotations

import pytest

from vist3a.nano.weights import nano_available

pytestmark = pytest.mark.skipif(not nano_available(), reason="no nano weights installed in this checkout")

PROMPT = "a red cube left of a blue sphere"
COLOURS = ("red", "blue")
#: The decoded quickstart video turns by tens of degrees (an orbit or arc); its cameras must follow.
MIN_SPAN_DEG = 30.0
#: Turntable at +-45 degrees around the objects: the named colours together keep at least this share of their
#: pixels in the view from the first camera (solid objects keep most, less what they hide of each other; a
#: sheet is foreshortened and smeared) ...
MIN_KEPT = 0.5
#: ... and each is visible from the first camera at all (share of the image).
MIN_VISIBLE = 0.005


@pytest.fixture(scope="module")
def quickstart_scene():
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano", device="cpu")
    return pipe(PROMPT, seed=0, progress=False)[0]


def test_predicted_cameras_follow_the_decoded_orbit(quickstart_scene):
    from vist3a.nano.scene3d import rotation_span_deg

    assert rotation_span_deg(quickstart_scene.w2c) >= MIN_SPAN_DEG


def test_turntable_keeps_both_objects(quickstart_scene):
    from vist3a.nano.scene3d import turntable_views

    views = turntable_views(quickstart_scene, COLOURS, (0.0, -45.0, 45.0), backend="torch")
    assert views is not None, "no Gaussian has a named colour"
    _assert_turntable_keeps(views, COLOURS)


def _assert_turntable_keeps(views, colours) -> None:
    from vist3a.nano.scene3d import colour_pixel_fraction

    for colour in colours:
        front = colour_pixel_fraction(views[0], colour)
        assert front >= MIN_VISIBLE, f"{colour} not visible from the first camera ({front:.4f})"
    front = sum(colour_pixel_fraction(views[0], c) for c in colours)
    for view in views[1:]:
        assert sum(colour_pixel_fraction(view, c) for c in colours) >= MIN_KEPT * front


def _ground_truth_scene(kind: str = "orbit"):
    """A Scene made of the world's own geometry: every valid pixel of a held-out clip unprojected with its true
    depth and camera into a small isotropic Gaussian of the pixel's colour (what a perfect decoder gives)."""
    import torch

    from vist3a.data import SyntheticClips
    from vist3a.recon.gaussian_ops import unproject_depth
    from vist3a.scene import Scene
    from vist3a.splats import Gaussians, rgb_to_sh_dc
    from vist3a.world import COLOURS

    for seed in range(50):
        clip = SyntheticClips(1, num_frames=13, size=64, seed=seed, split="heldout", camera_kinds=(kind,))[0]
        words = clip.meta["composition"].split()
        colours = [c for c in COLOURS if c in words]
        if len(colours) >= 2:
            break
    valid = torch.isfinite(clip.depth) & (clip.depth > 0)
    depth = torch.where(valid, clip.depth, torch.zeros_like(clip.depth))
    points = unproject_depth(depth.double(), clip.w2c.double(), clip.K.double()).float()[valid]  # [N, 3]
    rgb = clip.frames.permute(0, 2, 3, 1)[valid]
    scale = (depth[valid] / clip.K[0, 0, 0]).float()[:, None].expand(-1, 3).clone()
    n = points.shape[0]
    gaussians = Gaussians(points, torch.tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4).clone(), scale,
                          torch.ones(n), rgb_to_sh_dc(rgb)[:, None, :])
    scene = Scene(prompt=clip.meta["composition"], frames=clip.frames, w2c=clip.w2c.float(), K=clip.K.float(),
                  image_size=(64, 64), gaussians=gaussians)
    return scene, tuple(colours[:2])


def test_the_checks_pass_on_the_ground_truth_of_a_world_clip():
    """The two checks above tell 3D from a sheet: the world's own geometry of an orbit passes both."""
    from vist3a.nano.scene3d import rotation_span_deg, turntable_views

    scene, colours = _ground_truth_scene()
    assert rotation_span_deg(scene.w2c) >= MIN_SPAN_DEG
    _assert_turntable_keeps(turntable_views(scene, colours, (0.0, -45.0, 45.0), backend="torch"), colours)
