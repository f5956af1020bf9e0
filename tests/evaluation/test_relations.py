"""Left/right judged from pixel colours, checked on ground-truth renders of the nano world."""

from __future__ import annotations

import pytest
import torch

from vist3a.evaluation.relations import (
    LeftRightCase,
    colour_centroid_x,
    judge_left_right,
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
