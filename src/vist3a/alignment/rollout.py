"""DRTune rollouts: a full text-to-latent sampling run whose last steps carry gradients to the generator.

A rollout (Wu et al., "Deep Reward Supervision", as used by VIST3A) samples from pure noise with the same
solver as inference, but

- the step count is drawn per iteration from ``[min_steps, max_steps]`` (the full count every
  ``full_every``-th iteration, so some rollouts match inference exactly),
- the CFG scale is drawn from ``guidance_range`` with an empty negative prompt,
- the transformer input is detached at every step, and only ``num_grad_steps`` random steps plus the last one
  run with gradients; the solver updates stay in the graph, so the reward gradient reaches those steps'
  predictions through the chain of updates and nowhere else.

The loop itself is :func:`vist3a.video.sampler.sample` (``grad_steps`` / ``detach_input``); this module only
draws the plan and calls it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from vist3a.video.sampler import sample


@dataclass(frozen=True)
class RolloutPlan:
    """One rollout's random choices: ``num_steps`` solver steps, CFG ``guidance_scale``, and the sorted step
    indices ``grad_steps`` (0-based, the last step always included) whose transformer call records gradients."""

    num_steps: int
    guidance_scale: float
    grad_steps: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"num_steps": self.num_steps, "guidance_scale": self.guidance_scale, "grad_steps": list(self.grad_steps)}


def plan_rollout(
    rng: random.Random,
    iteration: int,
    *,
    min_steps: int = 10,
    max_steps: int = 50,
    full_every: int = 10,
    num_grad_steps: int = 2,
    guidance_range: tuple[float, float] = (4.0, 6.0),
) -> RolloutPlan:
    """Draw a :class:`RolloutPlan` with ``rng``.

    ``num_steps ~ U{min_steps..max_steps}``, replaced by ``max_steps`` when ``iteration % full_every == 0``
    (``full_every = 0`` never forces it); ``guidance_scale ~ U(guidance_range)``; ``num_grad_steps`` distinct
    steps drawn uniformly from all steps, plus the last one (so 1 to ``num_grad_steps + 1`` steps in total).
    The same number of values is drawn from ``rng`` whatever the outcome.
    """
    if isinstance(min_steps, bool) or not isinstance(min_steps, int) or min_steps < 1:
        raise ValueError(f"`min_steps` must be an int >= 1, got {min_steps!r}")
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < min_steps:
        raise ValueError(f"`max_steps` must be an int >= `min_steps` ({min_steps}), got {max_steps!r}")
    if full_every < 0:
        raise ValueError(f"`full_every` must be >= 0 (0 = never force the full count), got {full_every}")
    if num_grad_steps < 0:
        raise ValueError(f"`num_grad_steps` must be >= 0, got {num_grad_steps}")
    low, high = (float(v) for v in guidance_range)
    if not 0.0 <= low <= high:
        raise ValueError(f"`guidance_range` must be (low, high) with 0 <= low <= high, got {tuple(guidance_range)}")
    num_steps = rng.randint(min_steps, max_steps)
    if full_every and iteration % full_every == 0:
        num_steps = max_steps
    guidance = low + (high - low) * rng.random()
    chosen = rng.sample(range(num_steps), min(num_grad_steps, num_steps))
    return RolloutPlan(num_steps, guidance, tuple(sorted({*chosen, num_steps - 1})))


def drtune_rollout(
    transformer: torch.nn.Module,
    scheduler: Any,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    latent_shape: Sequence[int],
    plan: RolloutPlan,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    progress: bool = False,
) -> torch.Tensor:
    """Sample **normalised** latents ``[B, C, T_lat, h, w]`` (float32) following ``plan``.

    ``prompt_embeds`` ``[B, L, D]``; ``negative_embeds`` ``[B or 1, L, D]`` (the empty prompt) for CFG.
    Gradients reach the transformer only through the calls at ``plan.grad_steps``; every call sees a
    detached input. Initial noise is drawn with ``generator`` (CPU generators give device-independent noise).
    """
    return sample(
        transformer,
        scheduler,
        prompt_embeds,
        negative_embeds,
        latent_shape,
        num_steps=plan.num_steps,
        guidance_scale=plan.guidance_scale,
        generator=generator,
        dtype=dtype,
        device=device,
        grad_steps=plan.grad_steps,
        detach_input=True,
        progress=progress,
    )
