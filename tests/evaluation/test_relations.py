"""Left/right judged from pixel colours, checked on ground-truth renders of the nano world."""

from __future__ import annotations

import pytest
import torch

from vist3a.evaluation.relations import (
    LeftRightCase,
    colour_centroid_x,
    judge_left_right,
    judge_left_right_points,
    left_right_cases,
    left_right_summary,
)


def test_cases_are_distinct_canonical_and_seeded():
    cases = left_right_cases(24, seed=3)
    assert len({c.prompt for c in cases}) == 24
    assert {c.relation for c in cases} == {"left of", "right of"}
    assert all(f"a {c.subject_colour} " in c.prompt and f"to the {c.relation.split()[0]} of a {c.reference_colour}"
               in c.prompt for c in cases)
    assert left_right_cases(5, seed=3) == cases[:5] and left_right_cases(5, seed=4) != cases[:5]
    with pytest.raises(ValueError, match=r"\[1, 24\]"):
        left_right_cases(25)


def test_centroid_of_painted_blocks():
    image = torch.full((3, 16, 16), 0.5)
    image[:, 4:8, 2:6] = torch.tensor([0.86, 0.10, 0.10]).view(3, 1, 1)  # red, columns 2..5
    image[:, 4:8, 10:12] = torch.tensor([0.12, 0.30, 0.88]).view(3, 1, 1)  # blue, columns 10..11
    assert colour_centroid_x(image, "red") == pytest.approx(3.5)
    assert colour_centroid_x(image, "blue") == pytest.approx(10.5)
    assert colour_centroid_x(image, "green") is None
    case = LeftRightCase("a red cube to the left of a blue sphere", "red", "blue", "left of")
    assert judge_left_right(image, case) is True
    assert judge_left_right(image.flip(-1), case) is False
    assert judge_left_right(image, LeftRightCase("x", "red", "green", "left of")) is None
    assert left_right_summary([True, False, None, True]) == {"accuracy": 2 / 3, "visible": 0.75, "num_scenes": 4}
    assert left_right_summary([None]) == {"accuracy": None, "visible": 0.0, "num_scenes": 1}


@pytest.mark.parametrize("kind", ["orbit", "dolly_in", "pan"])
def test_ground_truth_first_frames_are_judged_right(kind):
    """The world's own renders of every case are judged correct in the first frame (the canonical view)."""
    from vist3a.world import Composition, render_clip, sample_camera_path, scene_from_composition

    for index, case in enumerate(left_right_cases(8, seed=1)):
        words = case.prompt.split()
        composition = Composition.of((case.subject_colour, words[2]), case.relation, (case.reference_colour, words[-1]))
        scene = scene_from_composition(composition, index)
        w2c, K = sample_camera_path(kind, 2, index, height=48, width=48, target=scene.centre,
                                    scene_radius=scene.radius)
        frames, _ = render_clip(scene, w2c, K, 48, 48)
        assert judge_left_right(frames[0], case) is True, case.prompt


@pytest.mark.parametrize("kind", ["orbit", "arc"])
def test_ground_truth_point_clouds_are_judged_right(kind):
    """The world's own geometry (every pixel of the first two frames unprojected with its true depth, coloured by
    its pixel) puts each colour on its side in the first camera's frame; mirrored, on the other side."""
    from vist3a.recon.gaussian_ops import unproject_depth
    from vist3a.world import Composition, render_clip, sample_camera_path, scene_from_composition

    for index, case in enumerate(left_right_cases(6, seed=2)):
        words = case.prompt.split()
        composition = Composition.of((case.subject_colour, words[2]), case.relation, (case.reference_colour, words[-1]))
        scene = scene_from_composition(composition, index)
        w2c, K = sample_camera_path(kind, 2, index, height=48, width=48, target=scene.centre,
                                    scene_radius=scene.radius)
        frames, depth = render_clip(scene, w2c, K, 48, 48)
        valid = torch.isfinite(depth) & (depth > 0)
        points = unproject_depth(torch.where(valid, depth, 1.0), w2c, K)[valid]
        colors = frames.permute(0, 2, 3, 1)[valid]
        assert judge_left_right_points(points, colors, w2c[0], case) is True, case.prompt
        flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=w2c.dtype))  # x -> -x in the first camera frame
        assert judge_left_right_points(points, colors, flip @ w2c[0], case) is False, case.prompt
    assert judge_left_right_points(points, colors, w2c[0], LeftRightCase("x", "red", "purple", "left of")) is None
