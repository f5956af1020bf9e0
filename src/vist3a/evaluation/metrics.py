"""Evaluation metrics of generated scenes: CLIP-R-precision, 3D-consistency PSNR, and image PSNR / SSIM.

CLIP-R-precision (Park et al., 2021, as used by text-to-3D papers) asks an image-text model to retrieve the
prompt a scene was generated from among ``K`` candidate prompts; the score is the fraction of scenes whose true
prompt ranks first. Here the candidates differ from the truth in one attribute each
(:func:`vist3a.evaluation.prompts.r_precision_prompts`), so the metric measures *compositional* fidelity, and
a scene's score for a prompt is the mean over its views. Chance level is ``1 / K``.

3D consistency compares what the video model decoded with what the 3D model made of it: the PSNR between
each decoded frame and the render of the predicted Gaussians at that frame's predicted camera.

Everything here is a plain function of tensors (and, for R-precision, of any object with the
:class:`~vist3a.alignment.scorers.ImageTextScorer` method ``score(images, prompts) -> [N]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F


def prompt_scores(scorer: Any, images: torch.Tensor, prompts: Sequence[str]) -> torch.Tensor:
    """Score of each prompt for one scene: the mean over its views, ``[K]`` (no gradient).

    Args:
        scorer: ``score(images [N, 3, H, W] in [0, 1], prompts: N strings) -> [N]``.
        images: ``[V, 3, H, W]`` views of one scene in ``[0, 1]``.
        prompts: ``K`` candidate prompts.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"`images` must be the [V, 3, H, W] views of one scene, got {tuple(images.shape)}")
    if isinstance(prompts, str) or not prompts:
        raise ValueError(f"`prompts` must be a non-empty list of strings, got {prompts!r:.120}")
    views, k = images.shape[0], len(prompts)
    with torch.no_grad():
        scores = scorer.score(images.repeat(k, 1, 1, 1), [p for p in prompts for _ in range(views)])
    return scores.float().view(k, views).mean(1)


def top1_hit(scores: torch.Tensor, true_index: int = 0) -> float:
    """1 if candidate ``true_index`` has the highest score, ``1 / m`` if it ties with ``m - 1`` others, else 0.

    Splitting ties keeps a constant scorer at exactly chance (``1 / K``) instead of rewarding it.
    ``scores``: ``[K]``.
    """
    if scores.ndim != 1 or not 0 <= true_index < scores.numel():
        raise ValueError(f"need scores [K] and 0 <= true_index < K, got {tuple(scores.shape)} and {true_index}")
    best = scores.max()
    if scores[true_index] < best:
        return 0.0
    return 1.0 / int((scores == best).sum())


def clip_r_precision(scorer: Any, images: torch.Tensor, prompt: str, distractors: Sequence[str]) -> float:
    """Top-1 retrieval of ``prompt`` among ``[prompt, *distractors]`` for one scene's views (see
    :func:`prompt_scores` and :func:`top1_hit`); the mean over scenes is the CLIP-R-precision.

    Example::

        candidates = r_precision_prompts(composition)            # truth first, 9 one-attribute variants
        hit = clip_r_precision(scorer, renders, candidates[0], candidates[1:])   # renders [V, 3, H, W]
    """
    if not distractors:
        raise ValueError("`distractors` must hold at least one prompt")
    return top1_hit(prompt_scores(scorer, images, [prompt, *distractors]), 0)


def consistency_psnr(decoded: torch.Tensor, rendered: torch.Tensor) -> torch.Tensor:
    """PSNR in dB between decoded frames and renders at the predicted cameras, per image.

    Args:
        decoded: ``[..., 3, H, W]`` VAE-decoded frames in ``[0, 1]`` (the reference).
        rendered: renders of the same shape (clamped to ``[0, 1]``).

    Returns:
        ``[...]`` PSNR per image (identical images give 100 dB: the MSE is floored at 1e-10).
    """
    if decoded.shape != rendered.shape or decoded.ndim < 3 or decoded.shape[-3] != 3:
        raise ValueError(f"`decoded` and `rendered` must both be [..., 3, H, W] of one shape, got "
                         f"{tuple(decoded.shape)} and {tuple(rendered.shape)}")
    return psnr(rendered.float(), decoded.float())


def psnr(pred: torch.Tensor, target: torch.Tensor, dims: tuple[int, ...] = (-3, -2, -1)) -> torch.Tensor:
    """PSNR in dB of images in [0, 1] (``pred`` clamped), reduced over ``dims`` (per image by default)."""
    mse = (pred.clamp(0, 1) - target).square().mean(dim=dims)
    return -10.0 * torch.log10(mse.clamp_min(1e-10))


def ssim(pred: torch.Tensor, target: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of ``[N, 3, H, W]`` images in [0, 1] (Gaussian window, constants K1 = 0.01, K2 = 0.03),
    per image ``[N]``; windows are evaluated where they fit entirely inside the image ("valid")."""
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(
            f"ssim needs two [N, C, H, W] tensors of one shape, got {list(pred.shape)} and {list(target.shape)}"
        )
    window = min(window, pred.shape[-1], pred.shape[-2])
    coords = torch.arange(window, dtype=pred.dtype, device=pred.device) - (window - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    channels = pred.shape[1]
    kernel = (g[:, None] * g[None, :]).expand(channels, 1, window, window).contiguous()
    blur = lambda x: F.conv2d(x, kernel, groups=channels)
    x, y = pred.clamp(0, 1), target
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    value = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return value.mean(dim=(1, 2, 3))
