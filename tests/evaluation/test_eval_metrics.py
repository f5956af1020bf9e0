"""CLIP-R-precision on constructed scorers, tie handling, and the 3D-consistency PSNR on analytic cases."""

from __future__ import annotations

import math

import pytest
import torch

from vist3a.evaluation.metrics import clip_r_precision, consistency_psnr, prompt_scores, top1_hit

PROMPTS = [f"prompt {i}" for i in range(10)]


class ColourScorer:
    """Knows which prompt an image shows: image i is filled with value i / 10, prompt "prompt i" matches it."""

    def score(self, images, prompts):
        index = torch.tensor([float(p.split()[1]) for p in prompts])
        return -(images.mean(dim=(1, 2, 3)) * 10 - index).abs()


class ConstantScorer:
    def score(self, images, prompts):
        return torch.zeros(images.shape[0])


class RecordingScorer:
    def __init__(self):
        self.calls = []

    def score(self, images, prompts):
        self.calls.append((images.shape[0], list(prompts)))
        return images.mean(dim=(1, 2, 3)) + torch.tensor([float(p.split()[1]) for p in prompts])


def _scene(i: int, views: int = 3) -> torch.Tensor:
    return torch.full((views, 3, 8, 8), i / 10)


def test_a_perfect_scorer_retrieves_every_prompt():
    hits = [clip_r_precision(ColourScorer(), _scene(i), PROMPTS[i], PROMPTS[:i] + PROMPTS[i + 1 :]) for i in range(10)]
    assert hits == [1.0] * 10


def test_a_constant_scorer_is_at_chance():
    hits = [clip_r_precision(ConstantScorer(), _scene(i), PROMPTS[i], PROMPTS[:i] + PROMPTS[i + 1 :])
            for i in range(10)]
    assert sum(hits) / len(hits) == pytest.approx(1 / len(PROMPTS))


def test_a_wrong_scorer_scores_zero():
    # it always prefers "prompt 9", so only scene 9 is retrieved
    class Prefers9:
        def score(self, images, prompts):
            return torch.tensor([float(p == "prompt 9") for p in prompts])

    hits = [clip_r_precision(Prefers9(), _scene(i), PROMPTS[i], PROMPTS[:i] + PROMPTS[i + 1 :]) for i in range(10)]
    assert hits == [0.0] * 9 + [1.0]


def test_top1_hit_splits_ties():
    assert top1_hit(torch.tensor([0.5, 0.5, 0.1, 0.5])) == pytest.approx(1 / 3)
    assert top1_hit(torch.tensor([0.2, 0.5, 0.1]), true_index=1) == 1.0
    assert top1_hit(torch.tensor([0.2, 0.5, 0.1])) == 0.0
    with pytest.raises(ValueError, match="true_index"):
        top1_hit(torch.tensor([0.2, 0.5]), true_index=2)


def test_prompt_scores_average_views_in_one_scorer_call():
    scorer = RecordingScorer()
    images = torch.stack([torch.full((3, 4, 4), v) for v in (0.0, 0.5, 1.0)])  # 3 views, means 0, 0.5, 1
    scores = prompt_scores(scorer, images, ["p 0", "p 2"])
    torch.testing.assert_close(scores, torch.tensor([0.5, 2.5]))
    assert scorer.calls == [(6, ["p 0"] * 3 + ["p 2"] * 3)]
    with pytest.raises(ValueError, match="images"):
        prompt_scores(scorer, torch.rand(3, 4, 4), ["p 0"])


def test_consistency_psnr_analytic():
    decoded = torch.full((2, 4, 3, 8, 8), 0.5)
    torch.testing.assert_close(consistency_psnr(decoded, decoded + 0.1), torch.full((2, 4), 20.0))  # MSE 0.01
    assert consistency_psnr(decoded, decoded.clone()).min() == pytest.approx(100.0)  # MSE floored at 1e-10
    half = decoded.clone()
    half[..., :4] = 0.0  # half the pixels off by 0.5: MSE 0.125
    assert float(consistency_psnr(decoded, half)[0, 0]) == pytest.approx(-10 * math.log10(0.125), rel=1e-5)
    # renders are clamped to [0, 1] like images
    torch.testing.assert_close(consistency_psnr(decoded, decoded + 2.0), torch.full((2, 4), -10 * math.log10(0.25)))
    with pytest.raises(ValueError, match="one shape"):
        consistency_psnr(decoded, decoded[..., :4])
