"""Stitched fine-tuning (stage 1b): the stitched decoder learns to reproduce the original reconstruction model.

Each step draws ``batch_size`` clips with ``V`` views (``V`` from ``view_choices``, the same for the whole
step), colour-jitters them, and computes

- **teacher**: the frozen original model on the RGB frames (model input size),
- **student**: the :class:`~vist3a.stitching.decoder.StitchedDecoder` on one posterior sample of the VAE
  latent of the same frames (VAE input size), with the same RGB frames for the heads that read them,

and minimises the weighted L1 distillation loss over every output (:mod:`vist3a.stitching.losses`, weights
from the adapter). Trained: the stitching layer, LoRA on every Linear/Conv2d of the tail (+ those modules'
biases, as the release), the DINO CLS and register tokens. AdamW, cosine schedule with warm-up, gradient
clipping; ``accelerate`` runs it on one or many GPUs (bf16 autocast on CUDA) or on the CPU.

Randomness is derived from ``(seed, step)`` (clip choice, view count, jitter, posterior sample), so a run
resumed from ``RUN/checkpoint-<step>`` takes exactly the same next steps as an uninterrupted one.

A run ends at ``max_steps``, or earlier when the wall-clock budget ``time_budget_s`` would be overrun by the
next step or a ``should_stop`` hook says so (a job scheduler's limit, early stopping). An early stop is clean:
it writes ``checkpoint-<step>`` (its ``meta.json`` records ``stopped_by``) and ``final/``, so
``--resume`` continues it exactly.

Run folder::

    checkpoint-<step>/   trainable.safetensors, optimizer.pt, scheduler.pt, rng.pt, meta.json (atomic)
    final/               StitchedDecoder.save_pretrained (LoRA unmerged), written at the end
    losses.csv           one row per step: step, loss, every term, lr, grad_norm, views
    losses.png           the curves
    train_config.json    the knobs and the model sources
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.checkpoints import capture_rng_state, checkpoint_dir, list_checkpoints, restore_rng_state
from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_dir, atomic_path
from vist3a.stitching.adapters import ReconAdapter, adapter_for_model
from vist3a.stitching.checkpoint import (
    load_training_checkpoint,
    save_training_checkpoint,
)
from vist3a.stitching.decoder import StitchedDecoder
from vist3a.stitching.features import clip_frames, encode_latents
from vist3a.stitching.lora import LoraSettings
from vist3a.stitching.losses import LossTerm, distillation_loss

logger = logging.getLogger(__name__)

LOSS_CSV = "losses.csv"
FINAL_DIR = "final"
DEFAULT_WARMUP = 500


@dataclass
class StitchTrainConfig:
    """Knobs of stitched fine-tuning (defaults: the VIST3A release, DESIGN.md §3).

    Attributes:
        max_steps: optimizer steps of the whole run (the cosine schedule spans them).
        lr: peak AdamW learning rate.
        weight_decay: AdamW weight decay.
        warmup_steps: linear warm-up steps; ``None`` = 500 capped at 10% of ``max_steps``.
        grad_clip: max global gradient norm (0 disables clipping).
        batch_size: clips per step and process.
        view_choices: views per clip, one drawn per step; each must follow the VAE's frame rule (``4n + 1`` for
            Wan, ``8n + 1`` for LTX-Video, any for SVD), checked when training starts.
        vae_size, recon_size: square input sizes of the VAE and of the reconstruction model.
        color_jitter: strength ``s`` of the per-clip brightness/contrast/saturation jitter (factors in
            ``[1 − s, 1 + s]``); 0 disables it.
        sample_posterior: train on a posterior sample of the VAE latent (release) or on its mode.
        lora_rank, lora_alpha: LoRA on every Linear/Conv2d of the tail.
        train_lora_biases: also train the biases of the LoRA-wrapped modules (release: yes).
        train_special_tokens: train the DINO CLS and register tokens (release: yes).
        gradient_checkpointing: one checkpoint segment per transformer block.
        mixed_precision: ``"bf16"``, ``"fp16"`` or ``"no"``; only used on CUDA.
        checkpoint_every: write ``checkpoint-<step>`` every this many steps (and always at the end).
        keep_checkpoints: keep only the newest N checkpoints (``None``: all).
        loss_weights: ``{term: weight}`` overriding the adapter's defaults (0 removes a term).
        seed: everything random derives from it.
        time_budget_s: wall-clock seconds for one call of :func:`train_stitched`, counted from its start
            (setup included, the final writes not): it stops cleanly once the next step would not fit, i.e.
            when ``elapsed + last step's seconds > time_budget_s``. ``None``: no limit. A resumed run gets a fresh
            budget.
    """

    max_steps: int = 1000
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int | None = None
    grad_clip: float = 1.0
    batch_size: int = 12
    view_choices: tuple[int, ...] = (9, 13, 17, 21)
    vae_size: int = 512
    recon_size: int = 448
    color_jitter: float = 0.1
    sample_posterior: bool = True
    lora_rank: int = 64
    lora_alpha: float = 32.0
    train_lora_biases: bool = True
    train_special_tokens: bool = True
    gradient_checkpointing: bool = True
    mixed_precision: str = "bf16"
    checkpoint_every: int = 500
    keep_checkpoints: int | None = 3
    loss_weights: dict[str, float] | None = None
    seed: int = 0
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        self.view_choices = tuple(int(v) for v in self.view_choices)
        positive = ("max_steps", "batch_size", "checkpoint_every", "vae_size", "recon_size", "lora_rank")
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ValueError(f"StitchTrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        if not self.view_choices or any(v < 1 for v in self.view_choices):
            raise ValueError(f"StitchTrainConfig.view_choices must be positive frame counts, got {self.view_choices}")
        if self.mixed_precision not in ("bf16", "fp16", "no"):
            raise ValueError(
                f"StitchTrainConfig.mixed_precision must be bf16, fp16 or no, got {self.mixed_precision!r}"
            )
        if not 0 <= self.color_jitter < 1:
            raise ValueError(f"StitchTrainConfig.color_jitter must be in [0, 1), got {self.color_jitter}")
        if self.warmup_steps is not None and self.warmup_steps < 0:
            raise ValueError(f"StitchTrainConfig.warmup_steps must be >= 0, got {self.warmup_steps}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"StitchTrainConfig.time_budget_s must be > 0 seconds (or None), got {self.time_budget_s}")

    @property
    def resolved_warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(DEFAULT_WARMUP, self.max_steps // 10)


STOP_REASONS = ("steps", "time_budget", "should_stop")
"""Why :func:`train_stitched` ended: ``max_steps`` reached, the wall-clock budget, or the ``should_stop`` hook
(the names of the nano recipes' ``stopped_by``)."""


@dataclass
class TrainResult:
    """What :func:`train_stitched` did: the last step, why it stopped (one of :data:`STOP_REASONS`), per-step
    logs, and the written folders."""

    step: int
    stopped_by: str = "steps"
    history: list[dict[str, float]] = field(default_factory=list)
    checkpoints: list[Path] = field(default_factory=list)
    final_dir: Path | None = None


# ---------------------------------------------------------------------------- student construction
def build_student(
    teacher: torch.nn.Module,
    init: str | Path,
    config: StitchTrainConfig,
    layer: str | None = None,
    temporal_factor: int = 4,
) -> StitchedDecoder:
    """The student decoder from ``init`` with fresh LoRA (seeded by ``config.seed``).

    ``init`` is a layer-search folder (its fitted layer ``layer``, default the report's best), a fitted layer
    file ``layers/<name>.safetensors``, or a ``StitchedDecoder`` folder (``save_pretrained``; its LoRA, if any,
    is merged before fresh LoRA is added).
    """
    from vist3a.stitching.search import load_fitted_layer, read_report

    init = Path(init)
    lora = LoraSettings(config.lora_rank, config.lora_alpha)
    if init.is_file() and init.suffix == ".safetensors":
        fitted = load_fitted_layer(init.parent.parent, init.stem)
        decoder = _student_from_fitted(teacher, init.stem, fitted)
    elif (init / "report.json").is_file():
        report = read_report(init)
        name = layer or report["best_layer"]
        fitted = load_fitted_layer(init, name)
        decoder = _student_from_fitted(teacher, name, fitted)
    elif (init / "config.json").is_file():
        decoder = StitchedDecoder.from_pretrained(init)
        if decoder.config.lora_rank:
            decoder.merge_lora()
    else:
        raise UserInputError(
            f"--init {init}: expected a layer-search folder (with report.json), a layers/<name>.safetensors file, "
            "or a StitchedDecoder folder (with config.json)"
        )
    if layer is not None and decoder.layer != layer:
        raise UserInputError(f"--layer {layer} differs from the layer of --init ({decoder.layer})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        decoder.add_lora(lora)
    return decoder


def _student_from_fitted(teacher: torch.nn.Module, layer: str, fitted: Any) -> StitchedDecoder:
    """A decoder around a fitted layer: its latent channels, temporal factor and latent resampling carry over."""
    return StitchedDecoder.from_recon(teacher, layer, str(fitted.spec), fitted, latent_channels=fitted.in_channels,
                                      temporal_factor=fitted.temporal_factor, latent_hw=fitted.target_hw)


def init_model_args(init: str | Path) -> dict[str, str]:
    """The ``--vae`` / ``--recon`` arguments a layer-search folder was made with (``{"vae": ..., "recon": ...}``,
    only those that were given), so that ``stitch train`` uses the same models by default."""
    path = Path(init) / "report.json"
    if not path.is_file():
        return {}
    models = json.loads(path.read_text()).get("models", {})
    return {key: models[f"{key}_arg"] for key in ("vae", "recon") if models.get(f"{key}_arg")}


def read_run_init(checkpoint: str | Path) -> Path:
    """The ``--init`` a run was started with, from ``RUN/train_config.json`` beside ``RUN/checkpoint-<step>``."""
    path = Path(checkpoint).parent / "train_config.json"
    if not path.is_file():
        raise UserInputError(f"{path} is missing: pass --init (the layer-search folder the run started from)")
    init = json.loads(path.read_text()).get("sources", {}).get("init")
    if not init:
        raise UserInputError(f"{path} does not record the run's init folder: pass --init")
    return Path(init)


def set_trainable(decoder: StitchedDecoder, config: StitchTrainConfig) -> dict[str, torch.nn.Parameter]:
    """Freeze everything but the trained parameters; returns them by name."""
    params = decoder.trainable_parameters(config.train_lora_biases)
    if not config.train_special_tokens:
        special = {f"recon.{k}" for k in decoder.adapter.special_tokens(decoder.recon)}
        params = {k: p for k, p in params.items() if k not in special}
    decoder.requires_grad_(False)
    for param in params.values():
        param.requires_grad_(True)
    return params


def loss_terms(adapter: ReconAdapter, overrides: Mapping[str, float] | None) -> dict[str, LossTerm]:
    """The adapter's default terms with ``overrides`` applied (weight 0 drops a term; unknown names raise)."""
    terms = adapter.loss_terms()
    for name, weight in (overrides or {}).items():
        if name not in terms:
            raise ValueError(f"unknown loss term {name!r}; terms of {adapter.name}: {sorted(terms)}")
        terms[name] = LossTerm(terms[name].target, float(weight), terms[name].kind)
    return {k: v for k, v in terms.items() if v.weight > 0}


# ---------------------------------------------------------------------------- data
def _step_rng(seed: int, step: int, *keys: object) -> random.Random:
    return random.Random(f"stitch-train:{seed}:{step}:" + ":".join(str(k) for k in keys))


def jitter_colors(frames: torch.Tensor, rng: random.Random, strength: float) -> torch.Tensor:
    """Brightness, contrast and saturation factors in ``[1 − s, 1 + s]`` on ``[T, 3, H, W]`` in ``[0, 1]``."""
    if strength <= 0:
        return frames
    brightness, contrast, saturation = (rng.uniform(1 - strength, 1 + strength) for _ in range(3))
    x = frames * brightness
    mean = x.mean(dim=(-3, -2, -1), keepdim=True)
    x = (x - mean) * contrast + mean
    gray = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])
    x = (x - gray) * saturation + gray
    return x.clamp(0.0, 1.0)


def sample_batch(
    clips: Sequence[Any], config: StitchTrainConfig, step: int, rank: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(vae_frames [B, V, 3, S_vae, S_vae], recon_frames [B, V, 3, S_rec, S_rec], V)`` for one step.

    ``V`` depends on ``(seed, step)`` only (every process agrees); the clips on ``(seed, step, rank)``.
    """
    from vist3a.stitching.features import _get_clip

    views = _step_rng(config.seed, step, "views").choice(config.view_choices)
    rng = _step_rng(config.seed, step, "clips", rank)
    vae_frames, recon_frames = [], []
    for _ in range(config.batch_size):
        clip = _get_clip(clips, rng.randrange(len(clips)), views)
        jitter_seed = rng.random()
        vae_frames.append(jitter_colors(clip_frames(clip, config.vae_size), random.Random(jitter_seed),
                                        config.color_jitter))
        recon_frames.append(jitter_colors(clip_frames(clip, config.recon_size), random.Random(jitter_seed),
                                          config.color_jitter))
    return torch.stack(vae_frames), torch.stack(recon_frames), views


# ---------------------------------------------------------------------------- logging
class LossLogger:
    """``losses.csv`` (+ TensorBoard when installed) and the ``losses.png`` plot."""

    def __init__(self, run_dir: Path, start_step: int, enabled: bool = True) -> None:
        self.path = run_dir / LOSS_CSV
        self.rows: list[dict[str, float]] = []
        self.enabled = enabled
        if enabled and self.path.is_file():
            with self.path.open() as f:
                self.rows = [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
            self.rows = [r for r in self.rows if r["step"] <= start_step]
        self.writer = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(run_dir / "tensorboard"))
            except (ImportError, ModuleNotFoundError):
                logger.debug("tensorboard is not installed: losses go to %s only", self.path)

    def log(self, row: dict[str, float]) -> None:
        self.rows.append(row)
        if self.writer is not None:
            for key, value in row.items():
                if key != "step":
                    self.writer.add_scalar(key, value, int(row["step"]))

    def flush(self) -> None:
        """Rewrite the CSV (atomically) and the plot."""
        if not self.enabled or not self.rows:
            return
        columns = list(dict.fromkeys(k for row in self.rows for k in row))
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            for row in self.rows:
                writer.writerow({k: (int(v) if k in ("step", "views") else v) for k, v in row.items()})
        plot_losses(self.rows, self.path.with_suffix(".png"))
        if self.writer is not None:
            self.writer.flush()


def plot_losses(rows: Sequence[Mapping[str, float]], path: Path) -> None:
    """Total loss and every term against the step (log scale), to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    skip = {"step", "lr", "grad_norm", "views", "seconds"}
    steps = [r["step"] for r in rows]
    keys = [k for k in rows[0] if k not in skip]
    fig, ax = plt.subplots(figsize=(7, 4))
    for key in keys:
        values = [r.get(key, math.nan) for r in rows]
        ax.plot(steps, values, lw=2.0 if key == "loss" else 0.8, label=key)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted L1")
    if all(r.get("loss", 0) > 0 for r in rows):
        ax.set_yscale("log")
    ax.legend(fontsize=6, ncol=2)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- training
def train_stitched(
    decoder: StitchedDecoder,
    teacher: torch.nn.Module,
    vae: torch.nn.Module,
    clips: Sequence[Any],
    run_dir: str | Path,
    config: StitchTrainConfig,
    resume: str | Path | None = None,
    device: str | torch.device | None = None,
    sources: Mapping[str, Any] | None = None,
    step_callback: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = True,
    should_stop: Callable[[int, dict[str, float]], bool] | None = None,
) -> TrainResult:
    """Fine-tune ``decoder`` against ``teacher`` (see the module docstring); returns the :class:`TrainResult`.

    Args:
        decoder: the student (LoRA already added, e.g. by :func:`build_student`).
        teacher: the uncut original model (frozen here).
        vae: the video VAE that encodes the clips (frozen; any family of :mod:`vist3a.video.vae_adapters`).
        clips: dataset of :class:`~vist3a.data.MultiViewClip` with enough frames for every ``view_choices``.
        run_dir: output folder (created).
        resume: ``run_dir/checkpoint-<step>`` to continue from (trained parameters, optimizer, scheduler, step).
        device: ``"cpu"`` forces the CPU; default: what ``accelerate`` picks.
        sources: recorded in ``train_config.json``.
        step_callback: called after every step with ``(step, logs)`` (logging; an exception it raises aborts
            the run without a final checkpoint).
        should_stop: called after every step with ``(step, logs)``; ``True`` ends the run cleanly at that step
            (checkpoint + ``final/``, ``stopped_by="should_stop"``). With several processes, one ``True`` stops all.
    """
    from accelerate import Accelerator, DistributedDataParallelKwargs
    from transformers import get_cosine_schedule_with_warmup

    started_run = time.perf_counter()
    run_dir = Path(run_dir)
    cpu = device is not None and torch.device(device).type == "cpu"
    use_cuda = torch.cuda.is_available() and not cpu
    accelerator = Accelerator(
        cpu=not use_cuda,
        mixed_precision=config.mixed_precision if use_cuda else "no",
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    main = accelerator.is_main_process
    adapter = decoder.adapter
    if adapter_for_model(teacher).name != adapter.name:
        raise ValueError(f"teacher is a {type(teacher).__name__}, the decoder stitches a {adapter.name}")
    terms = loss_terms(adapter, config.loss_weights)
    _check_sizes(decoder, vae, config)
    teacher.eval().requires_grad_(False).to(accelerator.device)
    vae.eval().requires_grad_(False).to(accelerator.device)
    params = set_trainable(decoder, config)
    if config.gradient_checkpointing:
        decoder.recon.enable_gradient_checkpointing()
    decoder.train()
    optimizer = torch.optim.AdamW(list(params.values()), lr=config.lr, weight_decay=config.weight_decay)
    scheduler = get_cosine_schedule_with_warmup(optimizer, config.resolved_warmup, config.max_steps)

    start_step = 0
    if resume is not None:
        state = load_training_checkpoint(resume)
        _load_trainable(params, state["trainable"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_rng_state(state["rng"])
        start_step = int(state["meta"]["step"])
        if start_step > config.max_steps:
            raise UserInputError(f"--resume {resume} is at step {start_step}, past --max-steps {config.max_steps}")
        logger.info("resumed from %s at step %d", resume, start_step)
    model, optimizer = accelerator.prepare(decoder, optimizer)
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)
        _write_json(run_dir / "train_config.json", {
            "config": asdict(config), "decoder": _jsonable(dict(decoder.config)), "sources": dict(sources or {}),
            "loss_terms": {k: asdict(v) for k, v in terms.items()},
            "trainable_parameters": sum(p.numel() for p in params.values()),
        })
    log = LossLogger(run_dir, start_step, enabled=main)
    result = TrainResult(step=start_step)
    distill_kwargs = adapter.distill_kwargs()
    latent_device = accelerator.device
    bar = tqdm(range(start_step, config.max_steps), initial=start_step, total=config.max_steps,
               desc="stitched fine-tuning", unit="step", disable=not (progress and main))
    for step in bar:
        started = time.perf_counter()
        vae_frames, recon_frames, views = sample_batch(clips, config, step, accelerator.process_index)
        generator = torch.Generator(device=latent_device).manual_seed(
            _step_rng(config.seed, step, "posterior", accelerator.process_index).randrange(2**62)
        )
        with torch.no_grad():
            latents = encode_latents(vae, vae_frames.to(latent_device), generator, config.sample_posterior).float()
            recon_frames = recon_frames.to(accelerator.device)
            with accelerator.autocast():
                teacher_out = adapter.forward_original(teacher, recon_frames, **distill_kwargs)
            teacher_targets = adapter.distill_targets(teacher_out)
        with accelerator.autocast():
            student_out = model(latents, recon_frames, **distill_kwargs)
        loss, parts = distillation_loss(adapter.distill_targets(student_out), teacher_targets, terms)
        accelerator.backward(loss)
        grad_norm = float("nan")
        if config.grad_clip > 0:
            grad_norm = float(accelerator.clip_grad_norm_(list(params.values()), config.grad_clip))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        row = {"step": float(done), "loss": float(accelerator.reduce(loss.detach(), "mean"))}
        row.update({k: float(accelerator.reduce(v.detach(), "mean")) for k, v in parts.items()})
        seconds = time.perf_counter() - started
        row.update({"lr": lr, "grad_norm": grad_norm, "views": float(views), "seconds": seconds})
        log.log(row)
        result.history.append(row)
        result.step = done
        bar.set_postfix(loss=f"{row['loss']:.4g}", views=views)
        stop = None
        if done < config.max_steps:
            over_budget = (config.time_budget_s is not None
                           and time.perf_counter() - started_run + seconds > config.time_budget_s)
            stop = _agreed_stop(accelerator, over_budget, should_stop is not None and should_stop(done, row))
        if done % config.checkpoint_every == 0 or done == config.max_steps or stop is not None:
            path = _checkpoint(accelerator, run_dir, done, params, optimizer, scheduler, config, stop)
            result.checkpoints.append(path)
            log.flush()
        if step_callback is not None:
            step_callback(done, row)
        if stop is not None:
            result.stopped_by = stop
            logger.warning("stitched fine-tuning stopped by %s at step %d of %d; continue with --resume %s", stop,
                           done, config.max_steps, checkpoint_dir(run_dir, done))
            break
    bar.close()
    log.flush()
    if main:
        final = run_dir / FINAL_DIR
        with atomic_dir(final) as tmp:
            accelerator.unwrap_model(model).save_pretrained(tmp)
        result.final_dir = final
    accelerator.wait_for_everyone()
    return result


def _agreed_stop(accelerator, over_budget: bool, hook: bool) -> str | None:
    """The stop reason every process agrees on (one process's clock or hook stops all: they must take the same
    number of steps, or the gradient all-reduce would hang)."""
    if accelerator.num_processes > 1:
        flags = torch.tensor([float(over_budget), float(hook)], device=accelerator.device)
        over_budget, hook = (bool(v > 0) for v in accelerator.reduce(flags, "sum").tolist())
    if hook:
        return "should_stop"
    return "time_budget" if over_budget else None


def _check_sizes(decoder: StitchedDecoder, vae: torch.nn.Module, config: StitchTrainConfig) -> None:
    """The VAE must fit the decoder (channels, temporal factor) and take every view count and the VAE size; the
    student must see the teacher's image size: stitched token grid x patch == ``recon_size``."""
    from vist3a.video.vae_adapters import vae_adapter

    video = vae_adapter(vae)
    temporal, spatial = video.temporal_factor, video.spatial_factor
    if temporal != decoder.config.temporal_factor or video.latent_channels != decoder.config.latent_channels:
        raise UserInputError(
            f"the {video.name} VAE gives {video.latent_channels}-channel latents with temporal factor {temporal}, "
            f"the decoder expects {decoder.config.latent_channels} channels and factor "
            f"{decoder.config.temporal_factor}: pass the --vae its layer search used"
        )
    try:
        for views in config.view_choices:
            video.check_num_frames(views)
        video.check_resolution(config.vae_size, config.vae_size)
    except ValueError as exc:
        raise UserInputError(f"{video.name} VAE: {exc}") from None
    latent = config.vae_size // spatial
    image = decoder.image_size((latent, latent))
    if image != (config.recon_size, config.recon_size):
        raise UserInputError(
            f"a {config.vae_size} px clip gives a {latent}x{latent} latent, which the stitched decoder turns into "
            f"{image[0]}x{image[1]} px model inputs, but recon_size is {config.recon_size}: make them agree"
        )


def _checkpoint(accelerator, run_dir: Path, step: int, params, optimizer, scheduler, config,
                stopped_by: str | None = None) -> Path:
    """``checkpoint-<step>``; its meta records ``stopped_by`` when the run stops early there."""
    path = checkpoint_dir(run_dir, step)
    meta: dict[str, Any] = {"step": step, "config": asdict(config)}
    if stopped_by is not None:
        meta["stopped_by"] = stopped_by
    if accelerator.is_main_process:
        save_training_checkpoint(
            path,
            {k: p.detach() for k, p in params.items()},
            optimizer.state_dict(),
            scheduler.state_dict(),
            capture_rng_state(),
            meta,
        )
        if config.keep_checkpoints is not None:
            for _, old in list_checkpoints(run_dir)[: -config.keep_checkpoints]:
                shutil.rmtree(old, ignore_errors=True)
        logger.info("wrote %s", path)
    accelerator.wait_for_everyone()
    return path


def _load_trainable(params: Mapping[str, torch.nn.Parameter], saved: Mapping[str, torch.Tensor]) -> None:
    missing, unexpected = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
    if missing or unexpected:
        raise UserInputError(
            f"the checkpoint's trained parameters do not match this decoder: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)}); resume with the same --init and "
            "LoRA settings"
        )
    with torch.no_grad():
        for name, param in params.items():
            if saved[name].shape != param.shape:
                raise UserInputError(f"checkpoint parameter {name} has shape {list(saved[name].shape)}, "
                                     f"the decoder {list(param.shape)}")
            param.copy_(saved[name].to(param.dtype))


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=lambda v: list(v) if isinstance(v, tuple) else str(v)))


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(data), indent=2))
