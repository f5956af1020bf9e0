"""``AlignConfig``: every knob of reward alignment, with the release's values as defaults (DESIGN.md §4)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from vist3a.video.lora import DEFAULT_TARGET_MODULES

MIXED_PRECISION = ("no", "bf16", "fp16")


@dataclass
class AlignConfig:
    """Reward-alignment settings.

    Run:
        max_steps: training iterations (a skipped non-finite step still counts).
        seed: seeds every random choice (prompts, templates, clips, rollout plans, noise); see the trainer.
        checkpoint_every: write ``checkpoint-<step>/`` every this many steps (0: only at the end).
        log_images_every: write a PNG of decoded vs rendered views every this many steps (0: never).
        progress: show a tqdm bar over the steps (main process only).

    LoRA (PEFT, on the Wan transformer):
        lora_rank, lora_alpha, lora_targets: ``r=8``, ``alpha=16`` on attn1/attn2 to_q/to_k/to_v/to_out.0.

    Optimiser:
        learning_rate, adam_betas, adam_eps, weight_decay: AdamW (1e-4, (0.9, 0.95), 1e-8, 0).
        warmup_steps: linear learning-rate warm-up (0: constant, as the release).
        grad_clip: max global gradient norm (the release 1.0, the paper 0.1; 0 disables clipping).
        ema_decay: ceiling of the EMA decay ``min((1 + s) / (10 + s), ema_decay)``.

    Flow-matching loss (on captioned multi-view clips):
        fm_weight: weight of the flow-matching loss (0 disables it and skips the clips).
        clip_batch_size: clips per step and process.

    Reward rollout (DRTune):
        reward_weight: multiplies the reward loss (0 disables the rollout).
        rollout_batch_size: prompts per step and process.
        min_rollout_steps, max_rollout_steps: T1, T2 of ``steps ~ U{T1..T2}``.
        full_rollout_every: use ``max_rollout_steps`` every this many iterations (0: never).
        num_grad_steps: random steps with gradients (the last step is always added).
        guidance_range: CFG scale ``~ U(low, high)``; negative_prompt: the unconditional prompt ("").
        flow_shift: UniPC flow shift of rollouts.
        camera_augmentation: wrap prompts in random camera-motion templates; plain_prompt_probability: the
            chance of keeping a prompt bare.
        num_frames, height, width: rollout/clip geometry (``None``: the preset's defaults).
        render_size: side of renders and compared frames (``None``: the 3D model's input size).
        reward_mix: a named mix ("release", "paper") or term specs (see :mod:`vist3a.alignment.rewards`).

    Precision and memory:
        mixed_precision: "no", "bf16" or "fp16" (accelerate autocast; LoRA weights stay float32).
        gradient_checkpointing: per-block checkpointing of the transformer and the stitched decoder.
        vae_checkpointing: recompute the VAE decode in the backward pass.

    Multi-GPU: launch with ``accelerate launch -m vist3a.cli.main align ...``; each process draws its own prompts,
    clips and noise, while the rollout plan (step count, CFG, gradient steps) is shared. For the 14B generator
    shard it with FSDP, configured by ``accelerate config`` (not by vist3a).
    """

    max_steps: int = 1000
    seed: int = 0
    checkpoint_every: int = 500
    log_images_every: int = 50
    progress: bool = True

    lora_rank: int = 8
    lora_alpha: float = 16.0
    lora_targets: tuple[str, ...] = DEFAULT_TARGET_MODULES

    learning_rate: float = 1e-4
    adam_betas: tuple[float, float] = (0.9, 0.95)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    warmup_steps: int = 0
    grad_clip: float = 1.0
    ema_decay: float = 0.99

    fm_weight: float = 1.0
    clip_batch_size: int = 1

    reward_weight: float = 1.0
    rollout_batch_size: int = 1
    min_rollout_steps: int = 10
    max_rollout_steps: int = 50
    full_rollout_every: int = 10
    num_grad_steps: int = 2
    guidance_range: tuple[float, float] = (4.0, 6.0)
    negative_prompt: str = ""
    flow_shift: float = 3.0
    camera_augmentation: bool = True
    plain_prompt_probability: float = 0.0125
    num_frames: int | None = None
    height: int | None = None
    width: int | None = None
    render_size: int | None = None
    reward_mix: str | list[dict[str, Any]] = "release"

    mixed_precision: str = "no"
    gradient_checkpointing: bool = True
    vae_checkpointing: bool = True

    def __post_init__(self) -> None:
        self.lora_targets = tuple(self.lora_targets)
        self.adam_betas = tuple(float(b) for b in self.adam_betas)  # type: ignore[assignment]
        self.guidance_range = tuple(float(g) for g in self.guidance_range)  # type: ignore[assignment]
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first field that breaks its rule."""
        positive_ints = ("max_steps", "lora_rank", "clip_batch_size", "rollout_batch_size", "min_rollout_steps")
        for name in positive_ints:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be an int >= 1, got {value!r}")
        for name in ("checkpoint_every", "log_images_every", "warmup_steps", "full_rollout_every", "num_grad_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"`{name}` must be an int >= 0, got {value!r}")
        if not isinstance(self.max_rollout_steps, int) or self.max_rollout_steps < self.min_rollout_steps:
            raise ValueError(
                f"`max_rollout_steps` must be an int >= `min_rollout_steps` ({self.min_rollout_steps}), "
                f"got {self.max_rollout_steps!r}"
            )
        for name in ("learning_rate", "lora_alpha", "flow_shift"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be positive, got {getattr(self, name)!r}")
        for name in ("weight_decay", "grad_clip", "fm_weight", "reward_weight", "adam_eps"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"`{name}` must be a finite number >= 0, got {value!r}")
        if self.fm_weight == 0 and self.reward_weight == 0:
            raise ValueError("`fm_weight` and `reward_weight` are both 0: nothing to train")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ValueError(f"`adam_betas` must be two numbers in [0, 1), got {self.adam_betas!r}")
        if not 0 <= self.ema_decay < 1:
            raise ValueError(f"`ema_decay` must be in [0, 1), got {self.ema_decay!r}")
        low, high = self.guidance_range
        if len(self.guidance_range) != 2 or not 0 <= low <= high:
            raise ValueError(f"`guidance_range` must be (low, high) with 0 <= low <= high, got {self.guidance_range!r}")
        if not 0 <= self.plain_prompt_probability <= 1:
            raise ValueError(f"`plain_prompt_probability` must be in [0, 1], got {self.plain_prompt_probability!r}")
        if self.mixed_precision not in MIXED_PRECISION:
            raise ValueError(f"`mixed_precision` must be one of {MIXED_PRECISION}, got {self.mixed_precision!r}")
        for name in ("num_frames", "height", "width", "render_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"`{name}` must be None or an int >= 1, got {value!r}")
        if not self.lora_targets:
            raise ValueError("`lora_targets` must name at least one module suffix, got none")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlignConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown AlignConfig fields {unknown}; known: {sorted(names)}")
        return cls(**data)
