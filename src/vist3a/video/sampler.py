"""The flow-matching sampling loop that vist3a owns (inference *and* DRTune reward alignment).

Wan is a flow-matching model: with ``x_sigma = (1 - sigma) * x0 + sigma * eps`` the transformer predicts the
velocity ``eps - x0`` at timestep ``1000 * sigma``, and a diffusers scheduler (UniPC in flow-prediction mode,
or flow-matching Euler) turns velocities into updates from pure noise (sigma = 1) to data (sigma = 0).

Classifier-free guidance runs the conditional and unconditional passes as **one** transformer call on a
batch of ``2B`` (cond first, uncond second): ``v = v_uncond + g * (v_cond - v_uncond)``. At ``g == 1`` the
formula is the conditional prediction, so the unconditional pass is skipped.

Step caches (:mod:`vist3a.video.step_cache`, diffusers' cache hooks on a ``CacheMixin`` transformer): when the
transformer has one enabled, every call runs inside ``transformer.cache_context`` (one context: the batched CFG
call is one trajectory for the hooks) and the hooks' state is reset before the first step, so nothing cached for
an earlier call is reused.

Training (DRTune): ``grad_steps`` lists the step indices whose transformer call records gradients; at
every step the transformer input is detached (``detach_input``), while the scheduler updates stay in the
graph, so gradients reach the chosen steps' predictions through the solver chain only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

logger = logging.getLogger(__name__)

#: ``callback(step_index, timestep, latents)`` after each update; ``latents`` are normalised, float32. A tensor
#: returned by the callback replaces the latents (``None`` keeps them).
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor | None]

SCHEDULERS = ("unipc", "euler")


def compute_dtype(transformer: torch.nn.Module) -> torch.dtype:
    """The dtype a video transformer's inputs must have: its first parameter's is not it, since diffusers keeps
    some modules in float32 (``_keep_in_fp32_modules``: Wan's ``scale_shift_table``, time embedder and norms) when a
    checkpoint loads in bf16; ``ModelMixin.dtype`` skips those."""
    dtype = getattr(transformer, "dtype", None)
    if isinstance(dtype, torch.dtype):
        return dtype
    return next(p.dtype for p in transformer.parameters() if p.is_floating_point())


def make_scheduler(name: str = "unipc", shift: float = 5.0, num_train_timesteps: int = 1000) -> Any:
    """A diffusers flow-matching scheduler: ``"unipc"`` (Wan's default solver) or ``"euler"``.

    ``shift`` is the flow shift ``sigma' = shift * sigma / (1 + (shift - 1) * sigma)`` that spends more steps
    at high noise (the release: 5.0 for generation, 3.0 in alignment rollouts).
    """
    if not shift > 0:
        raise ValueError(f"`shift` must be positive, got {shift}")
    from diffusers import FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler

    builders = {
        "unipc": lambda: UniPCMultistepScheduler(
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=float(shift),
            num_train_timesteps=num_train_timesteps,
        ),
        "euler": lambda: FlowMatchEulerDiscreteScheduler(shift=float(shift), num_train_timesteps=num_train_timesteps),
    }
    key = name.lower() if isinstance(name, str) else name
    if key not in builders:
        raise ValueError(f"`name` (scheduler) must be one of {list(builders)}, got {name!r}")
    return builders[key]()


def scheduler_timesteps(scheduler: Any, num_steps: int, device: torch.device | str | None = None) -> torch.Tensor:
    """The timesteps ``sample`` will visit for ``num_steps`` (resets the scheduler, as ``sample`` does)."""
    _check_steps(num_steps)
    scheduler.set_timesteps(num_steps, device=device)
    return scheduler.timesteps.clone()


def _check_steps(num_steps: int) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ValueError(f"`num_steps` must be a positive int, got {num_steps!r}")


def _resolve_grad_steps(grad_steps: Iterable[int] | None, num_steps: int) -> frozenset[int]:
    if grad_steps is None:
        return frozenset()
    resolved = set()
    for step in grad_steps:
        if not -num_steps <= int(step) < num_steps:
            raise ValueError(f"`grad_steps` entries must be in [-{num_steps}, {num_steps - 1}], got {step}")
        resolved.add(int(step) % num_steps)
    return frozenset(resolved)


def _batch_embeds(embeds: torch.Tensor, batch: int, name: str) -> torch.Tensor:
    if embeds.ndim != 3:
        raise ValueError(f"`{name}` must be shaped [B, L, D], got {tuple(embeds.shape)}")
    if embeds.shape[0] == batch:
        return embeds
    if embeds.shape[0] == 1:
        return embeds.expand(batch, -1, -1)
    raise ValueError(f"`{name}` must have batch {batch} or 1, got {embeds.shape[0]}")


def initial_noise(
    shape: Sequence[int], generator: torch.Generator | None = None, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """Standard normal float32 noise of ``shape`` drawn on the generator's device, then moved to ``device``.

    Drawing on CPU (a CPU ``generator`` or none) makes a seed give the same noise on every device.
    """
    draw_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=torch.float32)
    return noise.to(device)


def sample(
    transformer: torch.nn.Module,
    scheduler: Any,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    latent_shape: Sequence[int],
    *,
    num_steps: int,
    guidance_scale: float = 5.0,
    generator: torch.Generator | None = None,
    latents: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    device: torch.device | str | None = None,
    grad_steps: Iterable[int] | None = None,
    detach_input: bool = True,
    callback: StepCallback | None = None,
    progress: bool = True,
    progress_bar_config: dict[str, Any] | None = None,
) -> torch.Tensor:
    """Denoise from noise to **normalised** (diffusion-space) latents ``[B, C, T_lat, h, w]``, float32.

    Args:
        transformer: a ``WanTransformer3DModel`` (or anything with its call signature).
        scheduler: a flow-matching diffusers scheduler (see :func:`make_scheduler`); it is reset here.
        prompt_embeds: ``[B, L, D]`` conditional text embeddings (zeros past each prompt).
        negative_embeds: ``[B or 1, L, D]`` unconditional embeddings; may be ``None`` when
            ``guidance_scale == 1`` (no unconditional pass then).
        latent_shape: ``(C, T_lat, h, w)`` or ``(B, C, T_lat, h, w)``; see ``frames.latent_shape``.
        num_steps: scheduler steps.
        guidance_scale: CFG scale ``g``; both passes run as one batched forward.
        generator: seeds the initial noise (drawn on its device; use a CPU generator for reproducibility
            across devices). Ignored when ``latents`` is given.
        latents: optional initial normalised noise ``[B, C, T_lat, h, w]`` instead of drawing it.
        dtype: the transformer's input dtype (default: its parameter dtype); the latents stay float32.
        device: where to run (default: the transformer's device).
        grad_steps: step indices (negative counts from the end, ``-1`` = last) whose transformer call
            records gradients; ``None`` = inference (no graph at all). The scheduler updates record
            gradients whenever any step does.
        detach_input: feed ``latents.detach()`` to the transformer at every step (DRTune); only matters
            when gradients are recorded.
        callback: ``callback(i, t, latents)`` after every update; a returned tensor replaces ``latents``.
        progress: show a tqdm bar; ``progress_bar_config``: extra tqdm arguments (``disable``, ``desc``, ...).

    Example::

        scheduler = make_scheduler("unipc", shift=5.0)
        z = sample(transformer, scheduler, cond, uncond, (16, 4, 64, 64), num_steps=50, guidance_scale=7.5,
                   generator=torch.Generator().manual_seed(0))
        raw = denormalize_latents(z, vae.config)
    """
    _check_steps(num_steps)
    if not isinstance(guidance_scale, (int, float)) or not guidance_scale >= 0:
        raise ValueError(f"`guidance_scale` must be a number >= 0, got {guidance_scale!r}")
    use_cfg = float(guidance_scale) != 1.0
    if use_cfg and negative_embeds is None:
        raise ValueError(f"`negative_embeds` is required when `guidance_scale` != 1 (got {guidance_scale})")
    shape = tuple(int(s) for s in latent_shape)
    if len(shape) == 4:
        shape = (prompt_embeds.shape[0], *shape)
    if len(shape) != 5:
        raise ValueError(f"`latent_shape` must be (C, T_lat, h, w) or (B, C, T_lat, h, w), got {tuple(latent_shape)}")
    batch = shape[0]
    in_channels = getattr(getattr(transformer, "config", None), "in_channels", shape[1])
    if shape[1] != in_channels:
        raise ValueError(f"`latent_shape` has {shape[1]} channels but the transformer takes {in_channels}")
    first_param = next(transformer.parameters())
    device = torch.device(device) if device is not None else first_param.device
    dtype = dtype or first_param.dtype
    grad_set = _resolve_grad_steps(grad_steps, num_steps)

    cond = _batch_embeds(prompt_embeds, batch, "prompt_embeds")
    if use_cfg:
        uncond = _batch_embeds(negative_embeds, batch, "negative_embeds")
        if uncond.shape[1:] != cond.shape[1:]:
            raise ValueError(
                f"`negative_embeds` must match `prompt_embeds` in [L, D] to batch CFG, got {tuple(uncond.shape[1:])} "
                f"and {tuple(cond.shape[1:])}"
            )
        cond = torch.cat([cond, uncond], dim=0)
    text = cond.to(device=device, dtype=dtype)

    if latents is None:
        latents = initial_noise(shape, generator, device)
    else:
        if tuple(latents.shape) != shape:
            raise ValueError(f"`latents` must be shaped {shape}, got {tuple(latents.shape)}")
        latents = latents.to(device=device, dtype=torch.float32)

    scheduler.set_timesteps(num_steps, device=device)
    timesteps = scheduler.timesteps
    if len(timesteps) != num_steps:  # multi-stage solvers would break the one-call-per-step contract
        raise ValueError(f"scheduler produced {len(timesteps)} timesteps for `num_steps`={num_steps}")

    cached = bool(getattr(transformer, "is_cache_enabled", False))
    if cached:
        transformer._reset_stateful_cache()  # a new trajectory: forget what an earlier call cached
    bar = {"desc": "denoising", "disable": not progress, "leave": False, **(progress_bar_config or {})}
    for i, t in enumerate(tqdm(timesteps, **bar)):
        x_in = latents.detach() if detach_input else latents
        x_in = x_in.to(dtype)
        if use_cfg:
            x_in = torch.cat([x_in, x_in], dim=0)
        context = (transformer.cache_context("cond+uncond" if use_cfg else "cond", step_index=i,
                                             num_inference_steps=num_steps, timestep=t)
                   if cached else contextlib.nullcontext())
        with torch.set_grad_enabled(i in grad_set), context:
            out = transformer(
                hidden_states=x_in,
                timestep=t.expand(x_in.shape[0]),
                encoder_hidden_states=text,
                return_dict=False,
            )[0].float()
            if use_cfg:
                v_cond, v_uncond = out.chunk(2, dim=0)
                out = v_uncond + guidance_scale * (v_cond - v_uncond)
        with torch.set_grad_enabled(bool(grad_set)):
            latents = scheduler.step(out, t, latents, return_dict=False)[0]
        if callback is not None:
            replaced = callback(i, t, latents)
            if replaced is not None:
                latents = replaced
    return latents
