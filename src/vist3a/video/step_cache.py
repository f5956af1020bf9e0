"""Opt-in step caching: skip transformer work on denoising steps that would change little (diffusers' cache hooks).

Neighbouring denoising steps often give nearly the same transformer output. A step cache reuses earlier work on
such steps instead of running every block; the result is close to, not equal to, the uncached one. vist3a maps a
name to one of diffusers' cache configs and attaches it to the generator's transformer
(``WanTransformer3DModel.enable_cache``); the hooks are diffusers', vist3a only chooses their settings and tells
them where the denoising loop is.

Kinds (:data:`STEP_CACHES`):

- ``"first-block"``: diffusers' First Block Cache. Every step runs the first block; if its residual (output minus
  input) moved by less than ``threshold`` relative to the last step that ran in full (mean absolute difference over
  mean absolute value), the other blocks are skipped and their residual from that step is added instead.
  ``threshold`` 0 never skips; diffusers' default is 0.05.
- ``"mag"``: MagCache. Skips *whole* steps while the error predicted from the model's per-step magnitude ratios of
  the residual, accumulated since the last full step, stays within ``threshold`` (diffusers' default 0.06), at most
  ``max_skip_steps`` (3) steps in a row and never in the first ``retention_ratio`` (20 %) of the steps. The ratios
  belong to a model: pass ``mag_ratios``, or let the first generation measure them (diffusers' calibration mode:
  that generation runs every step in full) and keep them for the later ones.

:meth:`StepCache.applied` puts the hooks on for one generation and takes them off afterwards (with what they
cached), so a scene never reuses the residuals of the scene before it, and outside a generation the transformer is
the plain diffusers model. ``sample`` (:mod:`vist3a.video.sampler`) wraps every transformer call in
``cache_context`` (one context per call: the conditional and unconditional passes are one batched call, so they share
the skip decision and are cached together) and resets the hooks' state before the first step, which also covers a
cache enabled on the transformer directly with diffusers' ``enable_cache``. diffusers' FasterCache and TaylorSeer
are not offered: FasterCache expects the unconditional half *first* in a batched CFG call (vist3a puts the
conditional half first) and approximates the unconditional branch from the conditional one; TaylorSeer's default
module patterns match no module of Wan's blocks.

Example::

    cache = StepCache("first-block", threshold=0.05)
    with cache.applied(generator.transformer, num_steps=50):
        latents = sample(generator.transformer, scheduler, cond, uncond, shape, num_steps=50)
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

logger = logging.getLogger(__name__)

#: Kind -> what it skips (for ``--help`` and errors); ``"none"`` turns caching off.
STEP_CACHES: dict[str, str] = {
    "none": "every step runs every transformer block (default)",
    "first-block": "skip blocks 2..N on steps whose first-block residual moved less than the threshold",
    "mag": "skip whole steps while the accumulated magnitude-ratio error stays below the threshold",
}
#: Why ``--step-cache`` and ``--compile`` are refused together (not measured together on a GPU yet).
COMPILE_CONFLICT = ("--step-cache and --compile do not combine (diffusers' cache hooks wrap the transformer blocks "
                    "that --compile compiles): use one or the other")
#: diffusers' default threshold of each kind (``FirstBlockCacheConfig``, ``MagCacheConfig``).
DEFAULT_THRESHOLDS: dict[str, float] = {"first-block": 0.05, "mag": 0.06}
#: Further settings each kind takes (``MagCacheConfig`` fields, same meaning).
OPTIONS: dict[str, tuple[str, ...]] = {"first-block": (), "mag": ("max_skip_steps", "retention_ratio", "mag_ratios")}

_MAG_LEADER_HOOK = "mag_cache_leader_block_hook"  # diffusers.hooks.mag_cache._MAG_CACHE_LEADER_BLOCK_HOOK


@dataclass
class StepCache:
    """A step-cache choice: ``kind`` (a key of :data:`STEP_CACHES` other than ``"none"``), its ``threshold``
    (default: :data:`DEFAULT_THRESHOLDS`) and, for ``"mag"``, ``max_skip_steps``, ``retention_ratio`` and
    ``mag_ratios`` (a list of per-step ratios; measured by the first generation when not given).

    Raises ``ValueError`` naming the setting for an unknown kind, a negative or non-finite threshold or an
    option the kind does not take.
    """

    kind: str
    threshold: float | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in STEP_CACHES or self.kind == "none":
            kinds = ", ".join(k for k in STEP_CACHES if k != "none")
            raise ValueError(f"step cache must be one of {kinds}, got {self.kind!r}")
        if self.threshold is None:
            self.threshold = DEFAULT_THRESHOLDS[self.kind]
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int | float) \
                or not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"step-cache threshold must be a finite number >= 0, got {self.threshold!r}")
        self.threshold = float(self.threshold)
        unknown = set(self.options) - set(OPTIONS[self.kind])
        if unknown:
            raise ValueError(f"step cache {self.kind!r} takes {list(OPTIONS[self.kind]) or 'no options'} besides "
                             f"the threshold, got {sorted(unknown)}")
        self.options = dict(self.options)
        if "mag_ratios" in self.options:
            self.options["mag_ratios"] = _check_ratios(self.options["mag_ratios"])

    def to_dict(self) -> dict[str, Any]:
        """What ``meta.json`` records: kind, threshold, the options (with the ratios a ``"mag"`` cache uses) and,
        while a ``"mag"`` cache has no ratios, ``"calibrating": True`` (that generation runs every step)."""
        return {"kind": self.kind, "threshold": self.threshold, **self.options,
                **({"calibrating": True} if self.needs_calibration else {})}

    @property
    def needs_calibration(self) -> bool:
        """True while a ``"mag"`` cache has no ratios: its next generation measures them instead of skipping."""
        return self.kind == "mag" and self.options.get("mag_ratios") is None

    def config(self, num_steps: int) -> Any:
        """The diffusers cache config for a run of ``num_steps`` steps."""
        if self.kind == "first-block":
            from diffusers.hooks import FirstBlockCacheConfig

            return FirstBlockCacheConfig(threshold=self.threshold)
        from diffusers.hooks import MagCacheConfig

        extra = {k: v for k, v in self.options.items() if k != "mag_ratios"}
        if self.needs_calibration:  # one step more than run, so diffusers' end-of-run reset (and print) never come
            return MagCacheConfig(calibrate=True, num_inference_steps=num_steps + 1, **extra)
        return MagCacheConfig(threshold=self.threshold, num_inference_steps=num_steps,
                              mag_ratios=list(self.options["mag_ratios"]), **extra)

    @contextlib.contextmanager
    def applied(self, transformer: torch.nn.Module, num_steps: int) -> Iterator[None]:
        """Attach this cache's hooks to ``transformer`` for one generation of ``num_steps`` steps, and take them off
        (with everything they cached) at the end, also when the generation fails or is interrupted; a ``"mag"``
        cache without ratios keeps the ones this generation measured. ``transformer`` must be a diffusers
        ``CacheMixin`` (``WanTransformer3DModel`` is) with no cache of its own enabled.
        """
        if not callable(getattr(transformer, "enable_cache", None)):
            raise ValueError(f"a step cache needs a diffusers CacheMixin transformer, got {type(transformer).__name__}")
        if transformer.is_cache_enabled:
            raise ValueError(f"the transformer already has a diffusers cache enabled "
                             f"({type(transformer._cache_config).__name__}); disable it before using a step cache")
        transformer.enable_cache(self.config(num_steps))
        try:
            yield
            if self.needs_calibration:
                self._keep_calibration(transformer, num_steps)
        finally:
            transformer.disable_cache()

    def _keep_calibration(self, transformer: torch.nn.Module, num_steps: int) -> None:
        """Take the magnitude ratios diffusers' calibration hook measured during the run just finished."""
        hook = getattr(transformer.blocks[0], "_diffusers_hook", None)
        leader = hook.get_hook(_MAG_LEADER_HOOK) if hook is not None else None
        states = list(leader.state_manager._state_cache.values()) if leader is not None else []
        if len(states) != 1 or len(states[0].calibration_ratios) != num_steps:
            logger.warning("mag step cache: calibration measured nothing usable; the next generation calibrates again")
            return
        ratios = [float(r) for r in states[0].calibration_ratios]
        self.options["mag_ratios"] = ratios
        logger.info("mag step cache: measured the magnitude ratios of %d steps (later generations skip steps): %s",
                    num_steps, ", ".join(f"{r:.4f}" for r in ratios))


def _check_ratios(ratios: Any) -> list[float]:
    if isinstance(ratios, torch.Tensor):
        ratios = ratios.tolist()
    if isinstance(ratios, str) or not isinstance(ratios, Sequence) or len(ratios) < 2 \
            or not all(isinstance(r, int | float) and math.isfinite(r) and r > 0 for r in ratios):
        raise ValueError(f"`mag_ratios` must be a list of at least 2 finite positive numbers, got {ratios!r:.120}")
    return [float(r) for r in ratios]


def make_step_cache(kind: str | None, threshold: float | None = None, **options: Any) -> StepCache | None:
    """``None`` for ``kind`` ``None`` / ``"none"`` (with no threshold or options), else a :class:`StepCache`."""
    if kind is None or kind == "none":
        if threshold is not None or options:
            raise ValueError("a step-cache threshold or option needs a step cache (first-block or mag)")
        return None
    return StepCache(kind, threshold, options)
