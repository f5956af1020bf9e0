"""``AlignTrainer``: reward alignment of the Wan generator (flow-matching loss + DRTune reward loss).

One training step (DESIGN.md §4):

1. **flow matching** on captioned multi-view clips: VAE-encode (posterior sample), normalise, and regress the
   velocity at a random noise level (:func:`~vist3a.alignment.flow_matching.flow_matching_loss`);
2. **reward**: draw a rollout plan (steps, CFG, gradient steps), run a DRTune rollout from a camera-augmented
   prompt, de-normalise, decode with the frozen VAE and stitched decoder, render the Gaussians at the predicted
   cameras, and score decoded frames and renders with the reward mix;
3. backpropagate ``fm_weight * L_fm + reward_weight * L_reward`` into the LoRA weights only, clip the gradient
   norm, and take an AdamW step + EMA update unless the loss or the gradient norm is not finite (the step is
   then skipped and counted).

Randomness: every draw of step ``s`` comes from generators seeded by ``(seed, s)`` (and the process rank for
prompts, clips and noise), never from a running RNG, so resuming from ``checkpoint-<s>`` reproduces the
uninterrupted run exactly; the rollout plan depends on ``(seed, s)`` only, so all processes share it.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.alignment.checkpoint import (
    checkpoint_dir,
    list_checkpoints,
    load_training_state,
    read_meta,
    restore_rng_state,
    save_checkpoint,
)
from vist3a.alignment.components import AlignComponents
from vist3a.alignment.config import AlignConfig
from vist3a.alignment.ema import EMA
from vist3a.alignment.flow_matching import flow_matching_loss
from vist3a.alignment.logs import MetricsLog, save_comparison_png
from vist3a.alignment.prompts import PromptSampler
from vist3a.alignment.rewards import RewardInputs, RewardMix, build_reward_mix
from vist3a.alignment.rollout import RolloutPlan, drtune_rollout, plan_rollout
from vist3a.data.clip import ClipBatch, MultiViewClip, collate_clips, resize_and_crop
from vist3a.data.sampling import derive_rng
from vist3a.errors import UserInputError
from vist3a.video.lora import add_lora, load_lora
from vist3a.video.sampler import make_scheduler

logger = logging.getLogger(__name__)

LOGS_DIR = "logs"
METRICS_FILE = "metrics.csv"
IMAGES_DIR = "images"
_CLIP_CACHE_SIZE = 256
#: Settings that may change on resume without changing the training trajectory.
_RUN_LENGTH_FIELDS = frozenset({"max_steps", "checkpoint_every", "log_images_every", "progress"})


def make_accelerator(mixed_precision: str = "no", device: torch.device | str | None = None) -> Any:
    """An ``accelerate.Accelerator``; ``device="cpu"`` forces the CPU, ``None`` lets accelerate choose.

    Multi-GPU / FSDP setups come from ``accelerate config`` + ``accelerate launch``, not from vist3a.
    """
    from accelerate import Accelerator

    cpu = device is not None and torch.device(device).type == "cpu"
    return Accelerator(mixed_precision=mixed_precision, cpu=cpu)


def derive_seed(seed: int, *keys: object) -> int:
    """A 63-bit integer seed derived from ``(seed, *keys)`` (stable across runs and machines)."""
    return derive_rng(seed, *keys).getrandbits(63)


@dataclass
class StepLosses:
    """What one step computed (``loss`` is the total that is backpropagated)."""

    loss: torch.Tensor
    fm_loss: torch.Tensor | None = None
    reward_loss: torch.Tensor | None = None
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)
    plan: RolloutPlan | None = None
    images: tuple[torch.Tensor, torch.Tensor | None] | None = None  # decoded / rendered views of rollout 0


class AlignTrainer:
    """Reward alignment of ``components.generator.transformer`` with a fresh (or resumed) LoRA.

    Args:
        config: the run's :class:`~vist3a.alignment.config.AlignConfig`.
        components: models and data (:func:`~vist3a.alignment.components.load_components`).
        prompts: training prompts (see :func:`~vist3a.alignment.prompts.read_prompts`).
        output_dir: the run folder (``checkpoint-<step>/``, ``logs/``).
        accelerator: an ``accelerate.Accelerator`` (default: :func:`make_accelerator` of the config).
        resume_from: a ``checkpoint-<step>`` folder to continue from.

    Example::

        components = load_components("tiny-random")
        trainer = AlignTrainer(AlignConfig(max_steps=2, min_rollout_steps=2, max_rollout_steps=3),
                               components, ["a red chair"], "runs/align")
        last_checkpoint = trainer.train()
    """

    def __init__(
        self,
        config: AlignConfig,
        components: AlignComponents,
        prompts: Sequence[str],
        output_dir: str | os.PathLike,
        *,
        accelerator: Any | None = None,
        resume_from: str | os.PathLike | None = None,
    ) -> None:
        self.config = config
        self.components = components
        self.output_dir = Path(output_dir)
        self.accelerator = accelerator or make_accelerator(config.mixed_precision)
        self.device = self.accelerator.device
        self.generator = components.generator
        meta = read_meta(resume_from) if resume_from is not None else None

        transformer = self.generator.transformer
        transformer.requires_grad_(False)
        if meta is not None:
            load_lora(transformer, Path(resume_from) / "lora", trainable=True)
        else:
            with torch.random.fork_rng(devices=[]):  # the LoRA init depends on the seed only, not on RNG history
                torch.manual_seed(derive_seed(config.seed, "lora-init"))
                add_lora(transformer, config.lora_rank, config.lora_alpha, config.lora_targets)
        lora = {name: p for name, p in transformer.named_parameters() if p.requires_grad}
        if not lora:
            raise ValueError(f"no LoRA weights were injected for `lora_targets` {config.lora_targets}")
        with torch.no_grad():
            for param in lora.values():  # train the adapters in float32 whatever the base dtype
                param.data = param.data.float()
        if config.gradient_checkpointing and getattr(transformer, "_supports_gradient_checkpointing", False):
            transformer.enable_gradient_checkpointing()
        transformer.train()
        self.lora_params = lora
        optimizer = torch.optim.AdamW(
            list(lora.values()),
            lr=config.learning_rate,
            betas=config.adam_betas,
            eps=config.adam_eps,
            weight_decay=config.weight_decay,
        )
        warmup = config.warmup_steps
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        )
        self.transformer, self.optimizer = self.accelerator.prepare(transformer, optimizer)
        self.ema = EMA(lora, config.ema_decay)

        self.num_frames = config.num_frames or components.num_frames
        self.height = config.height or components.height
        self.width = config.width or components.width
        self.latent_shape = self.generator.latent_shape(self.num_frames, self.height, self.width)
        train_steps = int(getattr(self.generator.scheduler, "config", {}).get("num_train_timesteps", 1000))
        self.num_train_timesteps = train_steps
        self.rollout_scheduler = make_scheduler("unipc", shift=config.flow_shift, num_train_timesteps=train_steps)
        self.prompts = PromptSampler(
            prompts,
            config.seed,
            augment=config.camera_augmentation,
            plain_probability=config.plain_prompt_probability,
        )
        self.reward_mix: RewardMix | None = None
        if config.reward_weight > 0:
            self.reward_mix = build_reward_mix(config.reward_mix, components.scorer_for, device=self.device)
        if config.fm_weight > 0 and components.clips is None:
            raise ValueError("`fm_weight` > 0 needs flow-matching clips, but `components.clips` is None")
        self._clip_cache: dict[int, MultiViewClip] = {}

        self.start_step = 0
        self.skipped_steps = 0
        if meta is not None:
            self._restore(Path(resume_from), meta)
        self.metrics: MetricsLog | None = None

    # ------------------------------------------------------------------ state
    @property
    def rank(self) -> int:
        return int(self.accelerator.process_index)

    @property
    def world_size(self) -> int:
        return int(self.accelerator.num_processes)

    @property
    def unwrapped_transformer(self) -> torch.nn.Module:
        return self.accelerator.unwrap_model(self.transformer)

    def _restore(self, folder: Path, meta: dict[str, Any]) -> None:
        state = load_training_state(folder)
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_scheduler.load_state_dict(state["lr_scheduler"])
        self.ema.load_state_dict(state["ema"])
        restore_rng_state(state.get("rng", {}))
        self.start_step = int(meta["step"])
        self.skipped_steps = int(state.get("skipped_steps", meta.get("skipped_steps", 0)))
        saved = meta.get("config", {})
        changed = sorted(
            k for k, v in self.config.to_dict().items()
            if k in saved and k not in _RUN_LENGTH_FIELDS and _jsonish(v) != saved[k]
        )
        if changed:
            logger.warning("resuming with settings that differ from the checkpoint's: %s", changed)
        logger.info("Resumed from %s at step %d (%d skipped so far)", folder, self.start_step, self.skipped_steps)

    def save(self, step: int) -> Path:
        """Write ``checkpoint-<step>`` (main process) and wait for every process."""
        path = checkpoint_dir(self.output_dir, step)
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            save_checkpoint(
                path,
                transformer=self.unwrapped_transformer,
                ema=self.ema,
                optimizer=self.optimizer,
                lr_scheduler=self.lr_scheduler,
                step=step,
                skipped_steps=self.skipped_steps,
                meta={"config": self.config.to_dict(), "sources": self.components.sources},
            )
            logger.info("Saved %s", path)
        self.accelerator.wait_for_everyone()
        return path

    # ------------------------------------------------------------------ data
    def _clip(self, index: int) -> MultiViewClip:
        clip = self._clip_cache.get(index)
        if clip is None:
            clip = self.components.clips[index]
            if clip.num_frames != self.num_frames:
                raise ValueError(f"clip {index} has {clip.num_frames} frames, the run uses {self.num_frames}")
            if (clip.height, clip.width) != (self.height, self.width):
                if self.height != self.width:
                    raise ValueError(
                        f"clip {index} is {clip.height}x{clip.width}, the run uses {self.height}x{self.width}"
                    )
                clip = resize_and_crop(clip, self.height)
            if len(self._clip_cache) >= _CLIP_CACHE_SIZE:
                self._clip_cache.pop(next(iter(self._clip_cache)))
            self._clip_cache[index] = clip
        return clip

    def clip_batch(self, step: int) -> ClipBatch:
        """The clips of this process at ``step``: epoch-wise shuffles of the dataset, disjoint across ranks."""
        count, batch = len(self.components.clips), self.config.clip_batch_size
        start = (step * self.world_size + self.rank) * batch
        indices = []
        for position in range(start, start + batch):
            epoch, offset = divmod(position, count)
            order = list(range(count))
            derive_rng(self.config.seed, "clip-order", epoch).shuffle(order)
            indices.append(order[offset])
        return collate_clips([self._clip(i) for i in indices])

    # ------------------------------------------------------------------ losses
    def compute_losses(self, step: int) -> StepLosses:
        """The losses of ``step`` (forward passes only; see the module docstring)."""
        cfg, gen = self.config, self.generator
        noise = torch.Generator("cpu").manual_seed(derive_seed(cfg.seed, "noise", step, self.rank))
        total = torch.zeros((), device=self.device)
        out = StepLosses(loss=total)
        with self.accelerator.autocast():
            if cfg.fm_weight > 0:
                batch = self.clip_batch(step)
                with torch.no_grad():
                    raw = gen.encode(batch.frames.to(self.device), sample_posterior=True, generator=noise)
                    z0 = gen.normalize(raw)
                    text, _ = gen.text_encoder.encode([c or "" for c in batch.captions])
                out.fm_loss = flow_matching_loss(
                    self.transformer, z0, text, generator=noise,
                    num_train_timesteps=self.num_train_timesteps, dtype=gen.dtype,
                )
                total = total + cfg.fm_weight * out.fm_loss
            if self.reward_mix is not None:
                reward = self._reward(step, noise)
                out.reward_loss, out.rewards, out.plan, out.images = reward
                total = total + cfg.reward_weight * out.reward_loss
        out.loss = total
        return out

    def _reward(self, step: int, noise: torch.Generator) -> tuple[torch.Tensor, dict, RolloutPlan, tuple]:
        cfg, gen, mix = self.config, self.generator, self.reward_mix
        plan = plan_rollout(
            derive_rng(cfg.seed, "rollout-plan", step),
            step,
            min_steps=cfg.min_rollout_steps,
            max_steps=cfg.max_rollout_steps,
            full_every=cfg.full_rollout_every,
            num_grad_steps=cfg.num_grad_steps,
            guidance_range=cfg.guidance_range,
        )
        draws = self.prompts.draw(step, cfg.rollout_batch_size, self.rank, self.world_size)
        cond, uncond = gen.encode_prompts([d.text for d in draws], cfg.negative_prompt, plan.guidance_scale)
        latents = drtune_rollout(
            self.transformer, self.rollout_scheduler, cond, uncond, (len(draws), *self.latent_shape), plan,
            generator=noise, dtype=gen.dtype, device=self.device,
        )
        scene = self.components.scene_decoder.decode(gen.denormalize(latents))
        views = mix.draw_views(int(scene.frames.shape[1]), generator=noise)
        render_views = mix.rendered_views(views)
        renders = self.components.scene_decoder.render(scene, render_views) if render_views else None
        inputs = RewardInputs([d.prompt for d in draws], scene.frames, renders, render_views)
        result = mix(inputs, views)
        shown = list(render_views) or sorted({v for vs in views.values() for v in vs})
        images = (scene.frames[0, shown].detach(), None if renders is None else renders[0].detach())
        return result.loss, result.rewards, plan, images

    # ------------------------------------------------------------------ update
    def train_step(self, step: int) -> dict[str, Any]:
        """Forward, backward, and (if finite) one optimiser + EMA update; returns the metrics row."""
        started = time.perf_counter()
        losses = self.compute_losses(step)
        self.accelerator.backward(losses.loss)
        params = list(self.lora_params.values())
        if self.config.grad_clip > 0:
            grad_norm = self.accelerator.clip_grad_norm_(params, self.config.grad_clip)
        else:
            grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
            grad_norm = torch.stack(grads).norm() if grads else torch.zeros(())
        grad_norm = torch.as_tensor(grad_norm, dtype=torch.float32, device=self.device)
        finite = torch.isfinite(grad_norm) & torch.isfinite(losses.loss.detach().float())
        finite = bool(self.accelerator.reduce(finite.to(torch.float32), reduction="sum").item() == self.world_size)
        if finite:
            self.optimizer.step()
            self.lr_scheduler.step()
            self.ema.update(step - self.skipped_steps)
        else:
            self.skipped_steps += 1
            logger.warning(
                "step %d skipped: non-finite loss or gradient norm (loss %s, grad norm %s); %d skipped so far",
                step, float(losses.loss.detach()), float(grad_norm), self.skipped_steps,
            )
        self.optimizer.zero_grad(set_to_none=True)
        row: dict[str, Any] = {
            "loss": float(losses.loss.detach()),
            "fm_loss": None if losses.fm_loss is None else float(losses.fm_loss.detach()),
            "reward_loss": None if losses.reward_loss is None else float(losses.reward_loss.detach()),
            **{f"reward/{k}": float(v) for k, v in losses.rewards.items()},
            "grad_norm": float(grad_norm),
            "lr": float(self.lr_scheduler.get_last_lr()[0]),
            "rollout_steps": None if losses.plan is None else losses.plan.num_steps,
            "guidance_scale": None if losses.plan is None else losses.plan.guidance_scale,
            "skipped": int(not finite),
            "skipped_total": self.skipped_steps,
            "seconds": time.perf_counter() - started,
        }
        self._maybe_log_images(step, losses)
        return row

    def _maybe_log_images(self, step: int, losses: StepLosses) -> None:
        every = self.config.log_images_every
        if not every or losses.images is None or step % every or not self.accelerator.is_main_process:
            return
        decoded, rendered = losses.images
        if rendered is not None and rendered.shape != decoded.shape:
            rendered = None
        save_comparison_png(self.output_dir / LOGS_DIR / IMAGES_DIR / f"step-{step:06d}.png", decoded, rendered)

    def _columns(self) -> list[str]:
        names = self.reward_mix.names if self.reward_mix is not None else []
        return [
            "step", "loss", "fm_loss", "reward_loss", *(f"reward/{n}" for n in names), "grad_norm", "lr",
            "rollout_steps", "guidance_scale", "skipped", "skipped_total", "seconds",
        ]

    # ------------------------------------------------------------------ loop
    def train(self) -> Path:
        """Run from :attr:`start_step` to ``config.max_steps``; returns the last checkpoint folder."""
        cfg = self.config
        if self.start_step >= cfg.max_steps:
            logger.warning("the checkpoint is at step %d >= max_steps %d: nothing to do", self.start_step,
                           cfg.max_steps)
            done = [p for s, p in list_checkpoints(self.output_dir) if s == self.start_step]
            return done[0] if done else self.save(self.start_step)
        main = self.accelerator.is_main_process
        if main:
            self.metrics = MetricsLog(self.output_dir / LOGS_DIR / METRICS_FILE, self._columns(), self.start_step)
        bar = tqdm(
            range(self.start_step, cfg.max_steps), desc="aligning", initial=self.start_step, total=cfg.max_steps,
            disable=not (cfg.progress and main),
        )
        for step in bar:
            row = self.train_step(step)
            if self.metrics is not None:
                self.metrics.append({"step": step, **row})
            bar.set_postfix(loss=f"{row['loss']:.4g}", skipped=self.skipped_steps)
            done = step + 1
            if cfg.checkpoint_every and done % cfg.checkpoint_every == 0 and done < cfg.max_steps:
                self.save(done)
        last = self.save(cfg.max_steps)
        if self.skipped_steps:
            logger.warning("%d of %d steps were skipped (non-finite)", self.skipped_steps, cfg.max_steps)
        return last


def _jsonish(value: Any) -> Any:
    """Tuples as lists, as they come back from JSON."""
    if isinstance(value, tuple):
        return [_jsonish(v) for v in value]
    if isinstance(value, list):
        return [_jsonish(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonish(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def check_output_dir(output_dir: str | os.PathLike, resume_from: str | os.PathLike | None) -> None:
    """Refuse to start a fresh run in a folder that already holds checkpoints (they would be mixed)."""
    existing = list_checkpoints(output_dir)
    if existing and resume_from is None:
        steps = [s for s, _ in existing]
        raise UserInputError(
            f"--out '{output_dir}' already holds checkpoints {steps}; pass --resume {existing[-1][1]} to continue "
            "or choose another --out"
        )
