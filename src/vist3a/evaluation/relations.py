"""Left/right accuracy of generated nano scenes, read from pixels, with no image-text model involved.

The nano image-text models barely tell "left of" from "right of" (pairwise accuracy 0.57-0.62 on real world
frames), so CLIP-R-precision cannot say whether a generator honours spatial relations. For two objects of
well-separated world colours the first frame, the canonical view every nano camera path starts from
(:mod:`vist3a.world.vocab`), shows the relation directly: compare the horizontal centroids of the pixels
of each colour. A pixel counts for a colour when that colour is the nearest of the world's palette and closer
than ``tolerance``, so shading and the soft edges of small models do not leak one object into the other.
Point clouds (the ``nano-vggt`` preset's ``points.ply``) are judged the same way in the first camera's frame
(:func:`judge_left_right_points`).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass

import torch

#: Colours far apart in RGB and from the grey/green/blue tints of ground and sky.
LEFT_RIGHT_COLOURS = ("red", "green", "blue", "yellow")


@dataclass(frozen=True)
class LeftRightCase:
    """A two-object prompt whose truth is a left/right arrangement in the first frame."""

    prompt: str
    subject_colour: str
    reference_colour: str
    relation: str  # "left of" or "right of": the subject's side of the reference


def left_right_cases(num: int, seed: int = 0) -> list[LeftRightCase]:
    """``num`` distinct cases (every ordered colour pair of :data:`LEFT_RIGHT_COLOURS` × both relations, at most
    24), in canonical world wording with seeded shapes: "a red cube to the left of a blue sphere"."""
    from vist3a.world import SHAPES, Composition, describe_composition

    rng = random.Random(seed)
    pairs = [(a, b, rel) for a, b in itertools.permutations(LEFT_RIGHT_COLOURS, 2) for rel in ("left of", "right of")]
    if not 1 <= num <= len(pairs):
        raise ValueError(f"`num` must be in [1, {len(pairs)}], got {num}")
    rng.shuffle(pairs)
    cases = []
    for a, b, rel in pairs[:num]:
        composition = Composition.of((a, rng.choice(SHAPES)), rel, (b, rng.choice(SHAPES)))
        cases.append(LeftRightCase(describe_composition(composition), a, b, rel))
    return cases


def colour_mask(colors: torch.Tensor, colour: str, tolerance: float = 0.35) -> torch.Tensor:
    """``[...]`` where ``colors [..., 3]`` (values in [0, 1]) are world colour ``colour``: it is the nearest of the
    world's palette and closer than ``tolerance``."""
    from vist3a.world import COLOURS

    names = list(COLOURS)
    palette = torch.tensor([COLOURS[n] for n in names], dtype=torch.float32, device=colors.device)  # [P, 3]
    distance = (colors.float()[..., None, :] - palette).norm(dim=-1)  # [..., P]
    best, nearest = distance.min(dim=-1)
    return (nearest == names.index(colour)) & (best < tolerance)


def colour_centroid_x(image: torch.Tensor, colour: str, tolerance: float = 0.35, min_pixels: int = 5
                      ) -> float | None:
    """Mean column of the pixels of world colour ``colour`` in ``image [3, H, W]`` (values in [0, 1]); None when
    fewer than ``min_pixels`` pixels have it."""
    mask = colour_mask(image.permute(1, 2, 0), colour, tolerance)  # [H, W]
    if int(mask.sum()) < min_pixels:
        return None
    columns = torch.arange(image.shape[-1], dtype=torch.float32).expand_as(mask)
    return float(columns[mask].mean())


def judge_left_right(image: torch.Tensor, case: LeftRightCase) -> bool | None:
    """True when ``image`` shows the case's arrangement, False when it shows the mirror one, None when one of
    the two colours is not visible."""
    subject = colour_centroid_x(image, case.subject_colour)
    reference = colour_centroid_x(image, case.reference_colour)
    if subject is None or reference is None:
        return None
    return (subject < reference) == (case.relation == "left of")


def judge_left_right_points(points: torch.Tensor, colors: torch.Tensor, w2c: torch.Tensor, case: LeftRightCase,
                            tolerance: float = 0.35, min_points: int = 5) -> bool | None:
    """:func:`judge_left_right` for a point cloud: the mean x of each colour's points in the camera frame of
    ``w2c`` (``[4, 4]`` or ``[3, 4]`` world-to-camera, OpenCV: x to the right; the first camera of a nano scene).

    ``points [M, 3]`` world points, ``colors [M, 3]`` in [0, 1] (or uint8). None when either colour has fewer than
    ``min_points`` points in front of the camera.
    """
    colors = colors.float() / 255.0 if colors.dtype == torch.uint8 else colors.float()
    cam = points.float() @ w2c[:3, :3].float().T + w2c[:3, 3].float()
    front = cam[:, 2] > 0
    sides = []
    for colour in (case.subject_colour, case.reference_colour):
        mask = colour_mask(colors, colour, tolerance) & front
        if int(mask.sum()) < min_points:
            return None
        sides.append(float(cam[mask, 0].mean()))
    return (sides[0] < sides[1]) == (case.relation == "left of")


def left_right_summary(judgements: list[bool | None]) -> dict[str, float | None]:
    """``accuracy`` over the scenes where both objects are visible (chance 0.5; None when there is none) and the
    ``visible`` fraction."""
    seen = [j for j in judgements if j is not None]
    return {"accuracy": sum(seen) / len(seen) if seen else None,
            "visible": len(seen) / len(judgements) if judgements else None,
            "num_scenes": len(judgements)}


__all__ = ["LEFT_RIGHT_COLOURS", "LeftRightCase", "colour_centroid_x", "colour_mask", "judge_left_right",
           "judge_left_right_points", "left_right_cases", "left_right_summary"]
