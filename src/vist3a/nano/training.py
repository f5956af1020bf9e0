"""What every nano training stage shares: the base config, the time-aware schedule, logs, and saving.

A stage runs under two limits, ``steps`` and an optional wall-clock ``time_budget_s`` that covers the *whole*
stage (data rendering, training, evaluation, saving). The learning-rate schedule (linear warm-up, then
cosine to ``min_lr_ratio``) follows ``progress = max(step / steps, elapsed / training_time)``, so a run cut
short by its budget still ends annealed instead of at full learning rate.

Each stage writes into its run folder:

- ``model/``: the component in its shipped format (``save_pretrained``: ``config.json`` + safetensors),
- ``losses.csv`` and ``loss.png``: every logged step,
- ``train_config.json``: the stage config (seed included), versions, device, steps done and why it stopped,
- ``eval.json``: the stage's evaluation numbers on held-out clips.

:func:`begin_stage` opens a stage (device, seed, clock, run folder, loss log, clips) and the returned
:class:`StageRun` closes it (:meth:`StageRun.save`: weights in the chosen dtype; :meth:`StageRun.finish`:
``eval.json`` and ``train_config.json``), so a stage's own module holds only its model, loss and evaluation.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from vist3a.data.cache import ClipCache, make_caches
from vist3a.evaluation.metrics import psnr, ssim  # noqa: F401  (re-exported for the recipes)
from vist3a.io_utils import atomic_dir, atomic_path
from vist3a.nano.configs import NANO_VIDEO

logger = logging.getLogger(__name__)

MODEL_DIRNAME = "model"
SAVE_DTYPES = ("auto", "float16", "float32")


@dataclass
class StageConfig:
    """Knobs shared by every stage (each stage's config subclasses this and adds its own).

    Attributes:
        steps: optimiser steps (an upper bound when ``time_budget_s`` is set).
        batch_size: clips per step.
        lr: peak AdamW learning rate; ``weight_decay`` applies to matrices only (not norms/biases).
        warmup_steps: linear warm-up steps; then cosine decay to ``lr * min_lr_ratio``.
        grad_clip: max global gradient norm (0 disables).
        seed: seeds the weights, the batch order and the rendered clips.
        time_budget_s: wall-clock limit of the whole stage (None = no limit); ``eval_reserve_s`` of it is
            kept for evaluation and saving.
        num_frames, size: clip geometry (frames, square pixels) of the rendered training clips.
        num_train_clips, num_eval_clips: clips rendered into memory (training / held-out evaluation).
        render_device: where the ray-caster renders the clips: "cpu" (``data_workers`` processes) or "cuda".
        data_workers: CPU processes rendering clips when ``render_device`` is "cpu".
        log_every: steps between logged rows (losses are averaged over the interval).
        save_dtype: weights dtype on disk: "float16", "float32", or "auto" (float16 unless the evaluation
            metric of the fp16-rounded weights is worse than the stage's tolerance).
        progress: show progress bars.
        init: weights to continue from instead of a fresh model: a run folder (or its ``model/``) of this
            stage, a component folder, or "installed" (the package's nano weights). The saved config must
            match the stage's model config (loading is strict). Continuing a run on new clips (another
            ``seed``) is how the nano models got more than one GPU call of training.
    """

    steps: int = 2000
    batch_size: int = 8
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    grad_clip: float = 1.0
    seed: int = 0
    time_budget_s: float | None = None
    eval_reserve_s: float = 40.0
    num_frames: int = NANO_VIDEO.num_frames
    size: int = NANO_VIDEO.height
    num_train_clips: int = 2048
    num_eval_clips: int = 32
    render_device: str = "cpu"
    data_workers: int = 8
    log_every: int = 25
    save_dtype: str = "auto"
    progress: bool = True
    init: str | None = None
    #: Whether the stage can start from ``init`` (the others say no, so that ``--set init=...`` is an error there
    #: instead of being ignored).
    supports_init: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.init is not None and not self.supports_init:
            raise ValueError(f"`init` is not supported by {type(self).__name__}: this stage always "
                             "starts from scratch")
        for name in ("steps", "batch_size", "num_train_clips", "num_eval_clips", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"`lr` must be > 0, got {self.lr}")
        if self.time_budget_s is not None and not self.time_budget_s > 0:
            raise ValueError(f"`time_budget_s` must be > 0 seconds (or None), got {self.time_budget_s}")
        if self.render_device not in ("cpu", "cuda"):
            raise ValueError(f"`render_device` must be 'cpu' or 'cuda', got {self.render_device!r}")
        if self.save_dtype not in SAVE_DTYPES:
            raise ValueError(f"`save_dtype` must be one of {SAVE_DTYPES}, got {self.save_dtype!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"`min_lr_ratio` must be in [0, 1], got {self.min_lr_ratio}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_overrides(cls: type, overrides: Mapping[str, Any] | None = None) -> Any:
    """Build config ``cls`` from ``overrides`` (unknown keys raise ``ValueError`` naming the known ones)."""
    overrides = dict(overrides or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; known: {sorted(names)}")
    return cls(**overrides)


# ----------------------------------------------------------------------------- devices, precision, seeds
def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None``/"auto" -> CUDA if available else CPU; ValueError for CUDA on a machine without it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"`device` is {device} but CUDA is not available here; use --device cpu")
    return device


def autocast(device: torch.device) -> contextlib.AbstractContextManager:
    """bf16 autocast on CUDA (the recipes' mixed precision), a no-op elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seeded_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(int(seed))


# ----------------------------------------------------------------------------- optimiser and schedule
def make_optimizer(params: Any, lr: float, weight_decay: float, betas: tuple[float, float] = (0.9, 0.99)):
    """AdamW with weight decay on matrices/kernels only (``ndim >= 2``); biases, norms and tokens are not decayed."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("the optimiser got no trainable parameters")
    decay = [p for p in params if p.ndim >= 2]
    rest = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=betas)


def lr_factor(step: int, progress: float, warmup_steps: int, min_lr_ratio: float) -> float:
    """Multiplier of the peak lr: linear warm-up over ``warmup_steps``, cosine over ``progress`` in [0, 1]."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    progress = min(max(progress, 0.0), 1.0)
    cosine = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm * cosine


# ----------------------------------------------------------------------------- run bookkeeping
@dataclass
class RunClock:
    """Wall-clock bookkeeping of a stage: when training must stop, and how far along the schedule it is."""

    steps: int
    time_budget_s: float | None
    eval_reserve_s: float
    start: float = field(default_factory=lambda: time.monotonic())
    train_start: float | None = None

    def start_training(self) -> None:
        """Mark the end of data preparation; the schedule's time axis starts here."""
        self.train_start = time.monotonic()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.start

    @property
    def train_seconds(self) -> float | None:
        """Seconds available for the training loop (None without a budget)."""
        if self.time_budget_s is None:
            return None
        begin = self.train_start if self.train_start is not None else time.monotonic()
        return max(1e-3, self.start + self.time_budget_s - self.eval_reserve_s - begin)

    def progress(self, step: int) -> float:
        by_steps = step / self.steps
        budget = self.train_seconds
        if budget is None or self.train_start is None:
            return by_steps
        return max(by_steps, (time.monotonic() - self.train_start) / budget)

    def out_of_time(self) -> bool:
        if self.time_budget_s is None:
            return False
        return self.elapsed >= self.time_budget_s - self.eval_reserve_s


class LossLog:
    """Logged training rows -> ``losses.csv`` (rewritten atomically at every log) and ``loss.png``.

    Rows average every loss term over the steps since the previous row.
    """

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.rows: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0

    def add(self, terms: Mapping[str, float]) -> None:
        """Accumulate one step's loss terms (python floats)."""
        for key, value in terms.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
        self._count += 1

    def flush(self, step: int, lr: float, elapsed: float) -> dict[str, float]:
        """Close the interval ending at ``step``: append a row and rewrite the CSV; returns the row."""
        if self._count == 0:
            return {}
        row = {"step": step, "elapsed_s": round(elapsed, 3), "lr": lr}
        row.update({k: v / self._count for k, v in self._sums.items()})
        self.rows.append(row)
        self._sums, self._count = {}, 0
        self.write_csv()
        return row

    def write_csv(self) -> Path:
        path = self.run_dir / "losses.csv"
        keys: list[str] = []
        for row in self.rows:
            keys += [k for k in row if k not in keys]
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.rows)
        return path

    def plot(self, title: str) -> Path | None:
        """``loss.png``: every loss term against the step (log scale when all values are positive)."""
        if not self.rows:
            return None
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(7, 4), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot(1, 1, 1)
        steps = [r["step"] for r in self.rows]
        terms = [k for k in self.rows[0] if k not in ("step", "elapsed_s", "lr")]
        positive = True
        for key in terms:
            values = [r.get(key, float("nan")) for r in self.rows]
            positive &= all(v > 0 for v in values if v == v)
            ax.plot(steps, values, label=key, linewidth=2.0 if key == "loss" else 1.0)
        if positive:
            ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("loss")
        ax.set_title(title)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = self.run_dir / "loss.png"
        with atomic_path(path) as tmp:
            fig.savefig(tmp)
        return path


def write_json(path: Path, data: Any) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, torch.dtype | torch.device):
        return str(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")


def environment_info(device: torch.device) -> dict[str, Any]:
    """Versions and device, recorded next to every trained component."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__, "device": str(device)}
    for name in ("diffusers", "transformers", "vist3a"):
        with contextlib.suppress(Exception):
            info[name] = __import__(name).__version__
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def write_train_config(
    run_dir: Path, stage: str, cfg: StageConfig, device: torch.device, extra: Mapping[str, Any] | None = None
) -> Path:
    """``train_config.json``: stage, config (seed included), environment, plus ``extra`` (steps done, ...)."""
    data = {"stage": stage, "config": cfg.to_dict(), "environment": environment_info(device), **dict(extra or {})}
    return write_json(Path(run_dir) / "train_config.json", data)


# ----------------------------------------------------------------------------- weights precision
@contextlib.contextmanager
def rounded_weights(model: torch.nn.Module, dtype: torch.dtype = torch.float16) -> Iterator[torch.nn.Module]:
    """Temporarily round every floating parameter/buffer of ``model`` through ``dtype`` (what saving in
    ``dtype`` and loading back in the original precision gives); restored on exit."""
    saved = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    try:
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if key in saved:
                    value.copy_(value.to(dtype).to(value.dtype))
        yield model
    finally:
        with torch.no_grad():
            for key, value in model.state_dict().items():
                if key in saved:
                    value.copy_(saved[key])


def choose_save_dtype(policy: str, fp32_metric: float, fp16_metric: float, tolerance: float,
                      higher_is_better: bool) -> torch.dtype:
    """Resolve ``save_dtype``: "auto" keeps fp16 unless it costs more than ``tolerance`` on the metric."""
    if policy == "float16":
        return torch.float16
    if policy == "float32":
        return torch.float32
    loss = (fp32_metric - fp16_metric) if higher_is_better else (fp16_metric - fp32_metric)
    dtype = torch.float16 if loss <= tolerance else torch.float32
    logger.info("save dtype: %s (fp32 metric %.5g, fp16 metric %.5g, tolerance %g)", dtype, fp32_metric,
                fp16_metric, tolerance)
    return dtype


def save_component(model: Any, run_dir: Path, dtype: torch.dtype, extra_files: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/model/`` atomically with ``model.save_pretrained`` in ``dtype`` (the model is not changed).

    ``extra_files``: ``{name: JSON data}`` written beside the weights (e.g. ``nano.json``).
    """
    import copy

    target = Path(run_dir) / MODEL_DIRNAME
    with atomic_dir(target) as tmp:
        clone = copy.deepcopy(model).to(device="cpu")
        with torch.no_grad():  # cast tensor by tensor: ModelMixin.to(dtype) warns about fp32-pinned modules
            for tensor in (*clone.parameters(), *clone.buffers()):
                if tensor.is_floating_point():
                    tensor.data = tensor.data.to(dtype)
        clone.save_pretrained(tmp, safe_serialization=True)
        for name, data in (extra_files or {}).items():
            write_json(tmp / name, data)
    return target


def module_num_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def path_size_bytes(path: str | os.PathLike) -> int:
    """Total size of the files under ``path``."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ----------------------------------------------------------------------------- the loop
@dataclass
class LoopResult:
    """How a training loop ended: ``steps_done``, ``stopped_by`` ("steps" or "time_budget"), skipped steps
    with non-finite losses, and the last logged row."""

    steps_done: int
    stopped_by: str
    skipped_steps: int
    last_row: dict[str, float]

    def outcome(self) -> dict[str, Any]:
        """What ``train_config.json`` records of the loop: ``steps_done``, ``stopped_by``, ``skipped_steps``."""
        return {"steps_done": self.steps_done, "stopped_by": self.stopped_by, "skipped_steps": self.skipped_steps}


def train_loop(
    step_fn: Any,
    optimizer: torch.optim.Optimizer,
    cfg: StageConfig,
    clock: RunClock,
    log: LossLog,
    desc: str,
    after_step: Any = None,
) -> LoopResult:
    """Run ``step_fn(step) -> (loss, {term: float})`` until ``cfg.steps`` or the time budget.

    Per step: set the scheduled lr, ``loss.backward()``, clip to ``cfg.grad_clip``, ``optimizer.step()``, then
    ``after_step(step)`` (e.g. an EMA update). A non-finite loss skips the update (counted and logged).
    """
    from tqdm.auto import tqdm

    params = [p for group in optimizer.param_groups for p in group["params"]]
    base_lrs = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
    for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
        group["initial_lr"] = base
    clock.start_training()
    stopped_by, skipped, step, lr = "steps", 0, 0, 0.0
    bar = tqdm(total=cfg.steps, desc=desc, disable=not cfg.progress, leave=False)
    try:
        for step in range(cfg.steps):
            if clock.out_of_time():
                stopped_by = "time_budget"
                break
            factor = lr_factor(step, clock.progress(step), cfg.warmup_steps, cfg.min_lr_ratio)
            for group, base in zip(optimizer.param_groups, base_lrs, strict=True):
                group["lr"] = base * factor
            lr = base_lrs[0] * factor
            optimizer.zero_grad(set_to_none=True)
            loss, terms = step_fn(step)
            if not torch.isfinite(loss):
                skipped += 1
                logger.warning("step %d: non-finite loss %s, update skipped", step, loss.item())
                continue
            loss.backward()
            if cfg.grad_clip > 0:
                terms = {**terms, "grad_norm": float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip))}
            optimizer.step()
            if after_step is not None:
                after_step(step)
            log.add({"loss": float(loss.detach()), **terms})
            bar.update(1)
            if (step + 1) % cfg.log_every == 0:
                row = log.flush(step + 1, lr, clock.elapsed)
                bar.set_postfix(loss=f"{row.get('loss', float('nan')):.4g}")
        else:
            step = cfg.steps
    finally:
        bar.close()
    steps_done = step if stopped_by == "time_budget" else cfg.steps
    log.flush(steps_done, lr, clock.elapsed)
    last = log.rows[-1] if log.rows else {}
    logger.info("%s: %d steps (%s), last loss %s", desc, steps_done, stopped_by, last.get("loss"))
    return LoopResult(steps_done, stopped_by, skipped, last)


# ----------------------------------------------------------------------------- opening and closing a stage
@dataclass
class StageRun:
    """An open stage: what :func:`begin_stage` set up, and the closing steps every stage shares.

    Attributes:
        stage: the stage name recorded in ``train_config.json`` (``vae``, ``recon``, ...).
        cfg: the stage config.
        device: the resolved training device.
        run_dir: the run folder (created).
        clock: the stage's wall-clock budget, started by :func:`begin_stage`.
        log: the loss log of the training loop (``losses.csv``, ``loss.png`` in ``run_dir``).
        data_seconds: seconds spent preparing data, once :meth:`data_ready` was called (else None and not
            recorded).
        saved_dtype, num_params: set by :meth:`save`.
    """

    stage: str
    cfg: StageConfig
    device: torch.device
    run_dir: Path
    clock: RunClock
    log: LossLog
    data_seconds: float | None = None
    saved_dtype: torch.dtype | None = None
    num_params: int | None = None
    init_config: Any = None

    def clips(self, caches: tuple[ClipCache, ClipCache] | None = None) -> tuple[ClipCache, ClipCache]:
        """``(train, held_out)`` clip caches: ``caches`` when given (tests), else the world rendered with the
        config's clip counts, geometry, seed and render settings (:func:`~vist3a.data.cache.make_caches`)."""
        if caches is not None:
            return caches
        cfg = self.cfg
        return make_caches(cfg.num_train_clips, cfg.num_eval_clips, cfg.num_frames, cfg.size, cfg.seed, self.device,
                           cfg.data_workers, cfg.render_device, progress=cfg.progress)

    def start_from(self, model: torch.nn.Module, component: str,
                   new_parameters: tuple[str, ...] = ()) -> torch.nn.Module:
        """Load the weights named by the config's ``init`` into ``model`` (unchanged when ``init`` is None).

        ``component`` is the nano component name of the stage's model ("vae", "recon", "generator"). Strict:
        a missing, unexpected or differently shaped tensor raises ``ValueError`` naming the mismatch, except
        missing parameters under the prefixes ``new_parameters`` (a module the config adds, kept as
        initialised). The loaded component's config (values that are not weights, e.g. a VAE's latent
        statistics) is kept in ``init_config``.
        """
        if self.cfg.init is None:
            return model
        from vist3a.nano.weights import load_component_from

        source = None if self.cfg.init == "installed" else self.cfg.init
        trained = load_component_from(source, component, "cpu", torch.float32)
        try:
            if new_parameters:
                result = model.load_state_dict(trained.state_dict(), strict=False)
                missing = [k for k in result.missing_keys if not k.startswith(tuple(new_parameters))]
                if missing or result.unexpected_keys:
                    raise RuntimeError(f"missing {missing[:3]}, unexpected {result.unexpected_keys[:3]}")
            else:
                model.load_state_dict(trained.state_dict(), strict=True)
        except RuntimeError as err:
            raise ValueError(f"`init` {self.cfg.init!r}: its {component} does not match this stage's model config "
                             f"({str(err).splitlines()[0]}); train with the config it was saved with") from err
        self.init_config = trained.config
        logger.info("%s: starting from the weights of %s", self.stage, self.cfg.init)
        return model

    def data_ready(self) -> float:
        """Record the seconds spent so far on data (``data_seconds`` in ``train_config.json``); returns them."""
        self.data_seconds = self.clock.elapsed
        return self.data_seconds

    def save(self, model: Any, fp32_metric: float, fp16_metric: float, tolerance: float,
             higher_is_better: bool) -> torch.dtype:
        """Choose the save dtype from the config's ``save_dtype`` (:func:`choose_save_dtype`) and write
        ``model/`` in it (:func:`save_component`); returns the dtype."""
        self.saved_dtype = choose_save_dtype(self.cfg.save_dtype, fp32_metric, fp16_metric, tolerance,
                                             higher_is_better)
        self.num_params = module_num_params(model)
        save_component(model, self.run_dir, self.saved_dtype)
        return self.saved_dtype

    def finish(self, evaluation: Mapping[str, Any], outcome: Mapping[str, Any]) -> Path:
        """Write ``eval.json`` (``evaluation`` plus ``saved_dtype`` and ``num_params`` of :meth:`save`) and
        ``train_config.json`` (``outcome``, e.g. :meth:`LoopResult.outcome`, plus ``data_seconds`` when recorded
        and ``wall_seconds``); returns the run folder."""
        if self.saved_dtype is None:
            raise ValueError(f"stage {self.stage!r}: `save` must run before `finish`")
        write_json(self.run_dir / "eval.json", {
            **evaluation, "saved_dtype": str(self.saved_dtype).removeprefix("torch."), "num_params": self.num_params,
        })
        extra = dict(outcome)
        if self.data_seconds is not None:
            extra["data_seconds"] = round(self.data_seconds, 2)
        extra["wall_seconds"] = round(self.clock.elapsed, 2)
        write_train_config(self.run_dir, self.stage, self.cfg, self.device, extra)
        return self.run_dir


def begin_stage(cfg: StageConfig, out_dir: str | os.PathLike, stage: str,
                device: str | torch.device | None = None) -> StageRun:
    """Open a stage: resolve ``device`` (:func:`resolve_device`), create the run folder ``out_dir``, start the
    clock of ``cfg.time_budget_s`` and seed torch's global RNG with ``cfg.seed``."""
    device = resolve_device(device)
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    clock = RunClock(cfg.steps, cfg.time_budget_s, cfg.eval_reserve_s)
    torch.manual_seed(cfg.seed)
    return StageRun(stage, cfg, device, run_dir, clock, LossLog(run_dir))


def evaluate_with_fp16(model: torch.nn.Module, evaluate: Callable[[], dict[str, Any]]
                       ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(metrics, metrics_fp16)``: ``evaluate()`` as the model is, then with its weights rounded through float16
    (:func:`rounded_weights`), for :meth:`StageRun.save` to weigh what fp16 storage costs."""
    metrics = evaluate()
    with rounded_weights(model, torch.float16):
        metrics_fp16 = evaluate()
    return metrics, metrics_fp16
