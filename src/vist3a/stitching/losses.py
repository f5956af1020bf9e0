"""Distillation losses of stitched fine-tuning: the student (stitched decoder on latents) copies the teacher
(the frozen original model on RGB frames), term by term.

A loss is a dict of :class:`LossTerm` (``name -> target, kind, weight``). Every term compares one *distillation
target* (a named tensor, see :meth:`vist3a.stitching.adapters.ReconAdapter.distill_targets`) of student and
teacher with

- ``"l1"``: mean absolute difference,
- ``"grad"``: the multi-scale gradient-matching loss of :func:`gradient_loss_multiscale` (on dense maps).

The default terms and weights are per model (:meth:`ReconAdapter.loss_terms`): the VIST3A release's for AnySplat,
the paper's for VGGT (DESIGN.md §3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

LOSS_KINDS = ("l1", "grad")
GRAD_CLAMP = 100.0
"""Per-pixel gradient differences are clamped at this value (the release's gradient loss)."""


@dataclass(frozen=True)
class LossTerm:
    """One weighted term: ``weight * kind(student[target], teacher[target])``."""

    target: str
    weight: float
    kind: str = "l1"

    def __post_init__(self) -> None:
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"LossTerm.kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        if not self.weight >= 0:
            raise ValueError(f"LossTerm.weight must be >= 0, got {self.weight}")


def _as_nhwc(x: torch.Tensor) -> torch.Tensor:
    """``[B, V, H, W]`` or ``[B, V, H, W, C]`` -> ``[B·V, H, W, C]``."""
    if x.ndim == 4:
        return x.reshape(-1, *x.shape[2:], 1)
    if x.ndim == 5:
        return x.reshape(-1, *x.shape[2:])
    raise ValueError(f"gradient loss needs a dense map [B, V, H, W(, C)], got shape {list(x.shape)}")


def gradient_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient matching on ``[N, H, W, C]``: ``Σ |∂x d| + Σ |∂y d|`` over ``d = pred − target``, ``/ (N·H·W)``.

    Differences are clamped at :data:`GRAD_CLAMP`, as in the release.
    """
    diff = pred - target
    grad_x = (diff[:, :, 1:] - diff[:, :, :-1]).abs().clamp(max=GRAD_CLAMP)
    grad_y = (diff[:, 1:] - diff[:, :-1]).abs().clamp(max=GRAD_CLAMP)
    n, h, w = diff.shape[:3]
    return (grad_x.sum() + grad_y.sum()) / (n * h * w)


def gradient_loss_multiscale(pred: torch.Tensor, target: torch.Tensor, scales: int = 4) -> torch.Tensor:
    """Mean of :func:`gradient_loss` over ``scales`` strides ``1, 2, 4, ...`` of dense maps ``[B, V, H, W(, C)]``.

    The release applies the same formula to its ``[B, V, H, W, 1]`` depth as if it were ``[B, H, W, C]`` (so its
    "x" axis is the image rows and its "y" axis the views); here the gradients are taken along the image axes
    of every view.
    """
    if pred.shape != target.shape:
        raise ValueError(f"gradient loss: pred {list(pred.shape)} and target {list(target.shape)} differ")
    p, t = _as_nhwc(pred), _as_nhwc(target)
    total = p.new_zeros(())
    for scale in range(scales):
        step = 2**scale
        total = total + gradient_loss(p[:, ::step, ::step], t[:, ::step, ::step])
    return total / scales


def distillation_loss(
    student: Mapping[str, torch.Tensor],
    teacher: Mapping[str, torch.Tensor],
    terms: Mapping[str, LossTerm],
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Weighted sum of every term; returns ``(total, {term: weighted value})`` (values keep their graph).

    Raises ``ValueError`` when a term's target is missing or shaped differently in student and teacher
    (e.g. voxelised Gaussians, whose count differs: train with ``voxelize=False``).
    """
    if not terms:
        raise ValueError("terms must name at least one loss term")
    parts: dict[str, torch.Tensor] = {}
    for name, term in terms.items():
        if term.target not in student or term.target not in teacher:
            raise ValueError(
                f"loss term {name!r} needs target {term.target!r}, but the outputs have {sorted(student)} "
                f"(student) and {sorted(teacher)} (teacher)"
            )
        s, t = student[term.target], teacher[term.target].detach()
        if s.shape != t.shape:
            raise ValueError(
                f"loss term {name!r}: student {term.target} {list(s.shape)} and teacher {list(t.shape)} differ "
                "(voxelised Gaussians cannot be compared: run both models with voxelize=False)"
            )
        s, t = s.float(), t.float()
        value = F.l1_loss(s, t) if term.kind == "l1" else gradient_loss_multiscale(s, t)
        parts[name] = value * term.weight
    total = torch.stack(list(parts.values())).sum()
    return total, parts
