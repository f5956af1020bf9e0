"""The nano training stages by name, and ``train_all`` that runs them in order.

Output root layout (``OUT`` of ``vist3a nano train ... --out OUT``)::

    OUT/vae/  OUT/recon/  OUT/stitch/  OUT/generator/     one run folder per stage (see vist3a.nano.training)
    OUT/clip/  OUT/clip_eval/                              the image-text reward and evaluation models
    OUT/vggt/  OUT/stitch_vggt/                            the nano pointmap models and their stitching (issue 21)
    OUT/mvdust3r/  OUT/stitch_mvdust3r/

Later stages find earlier ones there: ``stitch`` reads ``OUT/vae`` and ``OUT/recon``, ``stitch_vggt`` reads
``OUT/vae`` and ``OUT/vggt`` (``stitch_mvdust3r``: ``OUT/mvdust3r``), ``generator`` reads ``OUT/vae`` (when their
``vae`` / ``recon`` fields are not set and those folders exist; otherwise the installed nano weights are used).
``vist3a nano install OUT`` then ships every trained component. ``train_all`` runs :data:`STAGE_ORDER`; the pointmap
stages (:data:`EXTRA_STAGES`) run on their own.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vist3a.nano.training import MODEL_DIRNAME, StageConfig, config_from_overrides

logger = logging.getLogger(__name__)

STAGE_ORDER = ("vae", "recon", "stitch", "generator", "clip", "clip_eval")
#: Stages outside ``train_all`` (the text-to-pointmap models of issue 21).
EXTRA_STAGES = ("vggt", "stitch_vggt", "mvdust3r", "stitch_mvdust3r")
#: Share of ``train_all``'s time budget per stage (vae and recon are the expensive ones); they sum to 1.
BUDGET_SHARES = {"vae": 0.22, "recon": 0.33, "stitch": 0.14, "generator": 0.23, "clip": 0.04, "clip_eval": 0.04}
#: Which earlier stage outputs a stage reads, as ``config field -> stage``.
INPUTS = {"stitch": {"vae": "vae", "recon": "recon"}, "stitch_vggt": {"vae": "vae", "recon": "vggt"},
          "stitch_mvdust3r": {"vae": "vae", "recon": "mvdust3r"}, "generator": {"vae": "vae"}}


@dataclass(frozen=True)
class Stage:
    """A stage: its config class and its ``train_<stage>(cfg, out_dir, device) -> run folder`` function."""

    name: str
    config_cls: type[StageConfig]
    train: Callable[..., Path]


def _stages() -> dict[str, Stage]:
    from vist3a.nano.train_generator import GeneratorTrainConfig, train_generator
    from vist3a.nano.train_imagetext import ClipEvalTrainConfig, ImageTextTrainConfig, train_imagetext
    from vist3a.nano.train_mvdust3r import MVDust3rTrainConfig, train_mvdust3r
    from vist3a.nano.train_recon import ReconTrainConfig, train_recon
    from vist3a.nano.train_stitch import (
        StitchMVDust3rStageConfig,
        StitchStageConfig,
        StitchVGGTStageConfig,
        train_stitch,
    )
    from vist3a.nano.train_vae import VAETrainConfig, train_vae
    from vist3a.nano.train_vggt import VGGTTrainConfig, train_vggt

    return {
        "vae": Stage("vae", VAETrainConfig, train_vae),
        "recon": Stage("recon", ReconTrainConfig, train_recon),
        "stitch": Stage("stitch", StitchStageConfig, train_stitch),
        "generator": Stage("generator", GeneratorTrainConfig, train_generator),
        "clip": Stage("clip", ImageTextTrainConfig, train_imagetext),
        "clip_eval": Stage("clip_eval", ClipEvalTrainConfig, train_imagetext),
        "vggt": Stage("vggt", VGGTTrainConfig, train_vggt),
        "stitch_vggt": Stage("stitch_vggt", StitchVGGTStageConfig, train_stitch),
        "mvdust3r": Stage("mvdust3r", MVDust3rTrainConfig, train_mvdust3r),
        "stitch_mvdust3r": Stage("stitch_mvdust3r", StitchMVDust3rStageConfig, train_stitch),
    }


def get_stage(name: str) -> Stage:
    """Stage ``name`` (``-`` and ``_`` are interchangeable: ``clip-eval`` is ``clip_eval``)."""
    name = name.replace("-", "_")
    if name not in STAGE_ORDER + EXTRA_STAGES:
        raise ValueError(f"`stage` must be one of {list(STAGE_ORDER + EXTRA_STAGES)} (or 'all'), got {name!r}")
    return _stages()[name]


def stage_fields(name: str) -> list[str]:
    """Config field names of stage ``name`` (for ``--set`` help and validation)."""
    return [f.name for f in dataclasses.fields(get_stage(name).config_cls)]


def resolve_inputs(name: str, overrides: Mapping[str, Any], out_root: Path) -> dict[str, Any]:
    """Fill a stage's unset input fields (``vae``, ``recon``) with earlier run folders under ``out_root``."""
    resolved = dict(overrides)
    for field_name, stage in INPUTS.get(name, {}).items():
        if resolved.get(field_name) is None and (out_root / stage / MODEL_DIRNAME / "config.json").is_file():
            resolved[field_name] = str(out_root / stage)
            logger.info("%s: using %s = %s", name, field_name, resolved[field_name])
    return resolved


def run_stage(name: str, out_root: str | Path, device: str | torch.device | None = None,
              overrides: Mapping[str, Any] | None = None) -> Path:
    """Train stage ``name`` into ``out_root/name`` with ``overrides`` on its default config; returns the run folder."""
    stage = get_stage(name)
    out_root = Path(out_root)
    cfg = config_from_overrides(stage.config_cls, resolve_inputs(stage.name, overrides or {}, out_root))
    return stage.train(cfg, out_root / stage.name, device)


def train_all(out_root: str | Path, device: str | torch.device | None = None,
              overrides: Mapping[str, Mapping[str, Any]] | None = None, time_budget_s: float | None = None,
              stages: tuple[str, ...] = STAGE_ORDER) -> dict[str, Path]:
    """Run ``stages`` in order into ``out_root``; ``time_budget_s`` is split by :data:`BUDGET_SHARES`.

    ``overrides``: ``{stage: {field: value}}``; a stage's own ``time_budget_s`` override wins over the share.
    """
    overrides = dict(overrides or {})
    runs: dict[str, Path] = {}
    share_total = sum(BUDGET_SHARES[s] for s in stages)
    for name in stages:
        stage_overrides = dict(overrides.get(name, {}))
        if time_budget_s is not None and "time_budget_s" not in stage_overrides:
            stage_overrides["time_budget_s"] = time_budget_s * BUDGET_SHARES[name] / share_total
        runs[name] = run_stage(name, out_root, device, stage_overrides)
    return runs
