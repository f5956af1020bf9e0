"""``vist3a eval text3d``: text-to-3DGS quality on a prompt suite (Tables 1, 2, 6 of the paper), resumable.

Protocol (DESIGN.md §6):

1. the suite's prompts (T3Bench 300, SceneBench 80, DPG-Bench 100 sampled, nano: 64 held-out compositions of the
   nano world, or a file), first ``limit`` of them;
   prompt ``i`` is generated with seed ``seed + i`` (as ``vist3a generate --prompts-file``), so sharding the
   prompts over processes (``accelerate launch``: prompt ``i`` goes to rank ``i % world``) gives the scenes of
   one process;
2. optionally ``refine_steps`` of per-scene optimisation of the Gaussians against the decoded frames
   (:mod:`vist3a.evaluation.refine`);
3. ``num_views`` (8) renders evenly spaced along the scene's fly-through path (the interpolated predicted
   cameras), at the video's resolution;
4. each metric of :mod:`vist3a.benchmark.metric_models` on those views; the table reports means over prompts
   (the VQA judges' columns skip prompts whose answers could not be read, and say how many they skipped).

Metric set: ``--metrics``, else the preset's default (:func:`~vist3a.benchmark.metric_models.default_metrics`: a real
preset adds the UnifiedReward ratings when the judge is at hand, and on DPG-Bench the DPG score when its question
file is given too). The resolved set is part of the run's identity, so a resumed run scores like the first one.

Judge wording: the VQA judges are asked in vist3a's own words by default (:mod:`vist3a.evaluation.vqa_protocols`),
which differ from the VIST3A release's; ``judge_prompt`` / ``dpg_prompt`` (``--judge-prompt`` / ``--dpg-prompt``,
``$VIST3A_JUDGE_PROMPT`` / ``$VIST3A_DPG_PROMPT``) are template files with another wording (the release's, for
numbers comparable with the paper). Ratings depend on the wording, so which one was used (``builtin`` or the
file's sha256) is part of the run's identity and is recorded in ``results.json`` (``judge_wording``).

Output folder::

    DIR/config.json              the settings; a rerun with other settings is refused (use a new DIR)
    DIR/scenes/NNNN_slug/        the scene (``save_scene``: atomic) + ``eval.json`` (its scores and the judges'
                                 per-view answers, atomic)
    DIR/views/NNNN.png           the 8 scored views
    DIR/results.json / .md       per-prompt rows and means; the paper's table layout with its reference rows
    DIR/contact_sheet.png        views of the first prompts

Resuming: a prompt whose folder has ``eval.json`` is done; a scene folder without it (killed while scoring, or
written by ``vist3a generate``) is loaded and scored, not regenerated. Nothing is ever half-written.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path

logger = logging.getLogger(__name__)

SUITES = {"t3bench": "T3Bench", "scenebench": "SceneBench", "dpg": "DPG-Bench", "nano": "nano held-out"}
#: Prompts of the "nano" suite: held-out compositions of the nano world (never trained on), canonically worded.
NANO_SUITE_SIZE = 64
SUITE_DIR = Path(__file__).with_name("suites")

#: The paper's rows (DESIGN.md §6) for the columns of :mod:`~vist3a.benchmark.metric_models`.
PAPER_ROWS: dict[str, list[tuple[str, dict[str, float]]]] = {
    "t3bench": [("VIST3A Wan+AnySplat (paper)", {"imaging": 57.03, "aesthetic": 54.11, "clip": 31.38}),
                ("best baseline (paper, per column)", {"imaging": 54.32, "clip": 30.94})],
    "scenebench": [("VIST3A Wan+AnySplat (paper)", {"imaging": 64.87, "aesthetic": 56.96, "clip": 30.18})],
}


@dataclass
class Text3DConfig:
    """Settings of a text-to-3D evaluation.

    Attributes:
        suite: "t3bench", "scenebench", "dpg", "nano" (64 held-out compositions of the nano world, the prompts
            the nano models can be judged on) or a prompts file (one per line, '#' comments).
        preset: pipeline preset (``vist3a generate --preset``).
        lora: extra generator LoRA folder.
        limit: first N prompts only (None: all).
        seed: prompt ``i`` uses ``seed + i``.
        num_steps, guidance_scale: generation overrides (None: the preset's).
        num_views: scored renders per scene, evenly spaced on the fly-through path.
        path_frames: fly-through path length the views are picked from.
        refine_steps: per-scene refinement steps before scoring (0: none).
        metrics: metric names (None: the preset's set, :data:`~vist3a.benchmark.metric_models.DEFAULT_METRICS`).
        metric_sources: metric name -> hub id or local path of its model.
        dpg_questions: DPG-Bench's question file (CSV, :mod:`vist3a.evaluation.dpg`) for the ``dpg`` metric; None:
            ``$VIST3A_DPG_QUESTIONS`` when set.
        judge_prompt: a template file with the UnifiedReward question's wording (``{caption}`` where the prompt
            goes, :func:`~vist3a.evaluation.vqa_protocols.read_template`); None: ``$VIST3A_JUDGE_PROMPT`` when set,
            else vist3a's default wording.
        dpg_prompt: the same for the DPG-Bench question (``{question}``); None: ``$VIST3A_DPG_PROMPT`` when set,
            else vist3a's default wording.
        render_backend: :func:`vist3a.splats.render` backend.
        sheet_rows: prompts shown in the contact sheet.
        progress: show a progress bar (rank 0 only).
    """

    suite: str = "scenebench"
    preset: str = "nano"
    lora: str | None = None
    limit: int | None = None
    seed: int = 0
    num_steps: int | None = None
    guidance_scale: float | None = None
    num_views: int = 8
    path_frames: int = 48
    refine_steps: int = 0
    metrics: tuple[str, ...] | None = None
    metric_sources: dict[str, str] = dataclasses.field(default_factory=dict)
    dpg_questions: str | None = None
    judge_prompt: str | None = None
    dpg_prompt: str | None = None
    render_backend: str = "auto"
    sheet_rows: int = 24
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_views", "path_frames", "sheet_rows"):
            if getattr(self, name) < 1:
                raise UserInputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.limit is not None and self.limit < 1:
            raise UserInputError(f"--limit must be >= 1, got {self.limit}")
        if self.refine_steps < 0:
            raise UserInputError(f"--refine must be >= 0, got {self.refine_steps}")
        if self.metrics is not None:
            from vist3a.benchmark.metric_models import KNOWN_METRICS

            self.metrics = tuple(self.metrics)
            unknown = sorted(set(self.metrics) - set(KNOWN_METRICS))
            if unknown or not self.metrics:
                raise UserInputError(f"unknown metrics {unknown}; known: {', '.join(KNOWN_METRICS)}")

    def identity(self, prompts: list[str], metric_names: tuple[str, ...] | None = None) -> dict[str, Any]:
        """What makes two runs' scenes and scores the same (checked when resuming); ``metric_names``: the resolved
        metric set (default: ``metrics``)."""
        keep = ("preset", "lora", "seed", "num_steps", "guidance_scale", "num_views", "path_frames", "refine_steps",
                "metrics", "metric_sources")
        data = {k: getattr(self, k) for k in keep}
        names = metric_names or data["metrics"]
        data["metrics"] = list(names) if names else None
        data["suite_sha256"] = hashlib.sha256("\n".join(prompts).encode()).hexdigest()
        if names and "dpg" in names:
            questions = Path(self.dpg_questions_file() or "").expanduser()
            data["dpg_questions_sha256"] = hashlib.sha256(questions.read_bytes()).hexdigest()
        templates = self.prompt_templates() if names and set(names) & set(PROMPT_SETTINGS) else {}
        for name, template in templates.items():
            if name in names:
                data[PROMPT_SETTINGS[name][0]] = template.source
        return data

    def dpg_questions_file(self) -> str | None:
        """``dpg_questions``, else ``$VIST3A_DPG_QUESTIONS``, else None."""
        return self.dpg_questions or os.environ.get("VIST3A_DPG_QUESTIONS") or None

    def prompt_files(self) -> dict[str, str]:
        """Judge metric -> its template file (``judge_prompt`` / ``dpg_prompt``, else their environment
        variables); a metric without one is left out (vist3a's default wording)."""
        out = {}
        for metric, (attr, env, _, _) in PROMPT_SETTINGS.items():
            path = getattr(self, attr) or os.environ.get(env) or None
            if path:
                out[metric] = path
        return out

    def prompt_templates(self) -> dict[str, Any]:
        """Judge metric -> :class:`~vist3a.evaluation.vqa_protocols.PromptTemplate`: the files of
        :meth:`prompt_files`, read and checked (a missing file or placeholder is a :class:`UserInputError`),
        else vist3a's default wording."""
        from vist3a.evaluation import vqa_protocols as vqa

        files = self.prompt_files()
        out = {}
        for metric, (attr, env, option, placeholder) in PROMPT_SETTINGS.items():
            if metric in files:
                setting = option if getattr(self, attr) else f"${env}"
                out[metric] = vqa.read_template(files[metric], placeholder, setting)
            else:
                out[metric] = vqa.UNIFIED_REWARD_TEMPLATE if metric == "unifiedreward" else vqa.DPG_TEMPLATE
        return out


#: Judge metric -> (Text3DConfig field, environment variable, CLI option, placeholder) of its wording template.
PROMPT_SETTINGS = {"unifiedreward": ("judge_prompt", "VIST3A_JUDGE_PROMPT", "--judge-prompt", "{caption}"),
                   "dpg": ("dpg_prompt", "VIST3A_DPG_PROMPT", "--dpg-prompt", "{question}")}


def read_prompts(path: Path) -> list[str]:
    """Prompts one per line; blank lines and lines starting with '#' are skipped."""
    if not path.is_file():
        raise UserInputError(f"--suite '{path}' is neither a suite name ({', '.join(SUITES)}) nor a prompts file")
    prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    prompts = [p for p in prompts if p and not p.startswith("#")]
    if not prompts:
        raise UserInputError(f"--suite '{path}' contains no prompts (one per line; '#' starts a comment)")
    return prompts


def suite_prompts(suite: str) -> tuple[str, list[str]]:
    """``(suite key, prompts)``: a known name, or a file (whose key is a known suite when its name says so)."""
    if suite == "nano":
        from vist3a.evaluation.prompts import heldout_compositions
        from vist3a.world import describe_composition

        return suite, [describe_composition(c) for c in heldout_compositions(NANO_SUITE_SIZE, seed=0)]
    if suite in SUITES:
        return suite, read_prompts(SUITE_DIR / f"{suite}.txt")
    path = Path(suite)
    prompts = read_prompts(path)
    stem = re.sub(r"[^a-z0-9]", "", path.stem.lower())
    key = next((k for k, alias in (("scenebench", "scenebench"), ("t3bench", "t3"), ("dpg", "dpg"))
                if stem.startswith(alias)), "custom")
    return key, prompts


def slugify(text: str, max_len: int = 48) -> str:
    """Folder-name form of a prompt, as ``vist3a generate --prompts-file`` names its folders (so its output in
    ``OUT/scenes`` is reused)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].rstrip("-") or "prompt"


def rank_and_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from ``accelerate launch`` / ``torchrun``; (0, 1, 0) otherwise."""
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    return rank, world, int(os.environ.get("LOCAL_RANK", str(rank)))


def metric_kind(preset: str) -> str:
    """Which default metric set a preset gets, from where its models come: nano / tiny / real (every nano preset
    gets the nano stand-in metrics, which need no download)."""
    from vist3a.components import provider_name, resolve_preset

    try:
        provider = provider_name(resolve_preset(preset))
    except UserInputError:  # an unknown name: loading the pipeline reports it
        return "real"
    return {"nano": "nano", "tiny-random": "tiny"}.get(provider, "real")


def render_path_views(scene: Any, num_views: int, path_frames: int, backend: str = "auto") -> torch.Tensor:
    """``[V, 3, H, W]`` renders in ``[0, 1]`` at ``num_views`` evenly spaced cameras of the fly-through path
    (:meth:`~vist3a.scene.Scene.flythrough_cameras`), at the decoded video's size (CPU)."""
    from vist3a.evaluation.views import evenly_spaced
    from vist3a.splats import render

    size_hw = tuple(int(s) for s in scene.frames.shape[-2:])
    w2c, K = scene.flythrough_cameras(path_frames, size_hw)
    picks = evenly_spaced(path_frames, num_views)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    out = render(scene.render_splats().to(device=device, dtype=torch.float32), w2c[picks], K[picks], size_hw[1],
                 size_hw[0], backend=backend)
    return out.colors.clamp(0, 1).permute(0, 3, 1, 2).float().cpu()


def _write_json(path: Path, data: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2))


def _save_strip(views: torch.Tensor, path: Path) -> None:
    """The views side by side as one PNG (atomic)."""
    import imageio.v3 as iio

    strip = torch.cat(list(views.clamp(0, 1)), dim=2)  # [3, H, V*W]
    with atomic_path(path) as tmp:
        iio.imwrite(tmp, (strip.permute(1, 2, 0) * 255).round().to(torch.uint8).numpy())


class _Lazy:
    """The pipeline and metrics, loaded on first need (a fully resumed run loads nothing)."""

    def __init__(self, cfg: Text3DConfig, device: str | torch.device | None, pipeline: Any, metrics: Any,
                 names: tuple[str, ...] = (), dpg_items: Any = None, templates: Any = None) -> None:
        self.cfg, self.device, self._pipeline, self._metrics = cfg, device, pipeline, metrics
        self.names, self.dpg_items, self.templates = names, dpg_items, templates

    @property
    def pipeline(self) -> Any:
        if self._pipeline is None:
            from vist3a.pipeline import Text2ScenePipeline

            self._pipeline = Text2ScenePipeline.from_pretrained(self.cfg.preset, device=self.device, lora=self.cfg.lora)
        return self._pipeline

    @property
    def metrics(self) -> list[Any]:
        if self._metrics is None:
            from vist3a.benchmark.metric_models import build_metrics

            device = torch.device(self.device) if self.device else torch.device(
                "cuda" if torch.cuda.is_available() else "cpu")
            self._metrics = build_metrics(self.names, device, self.cfg.metric_sources, self.cfg.num_views,
                                          self.cfg.render_backend, dpg_items=self.dpg_items,
                                          templates=self.templates)
        return self._metrics


def evaluate_text3d(cfg: Text3DConfig, out_dir: str | os.PathLike, device: str | torch.device | None = None, *,
                    pipeline: Any = None, metrics: Any = None) -> dict[str, Any] | None:
    """Run the protocol of the module docstring into ``out_dir``. Returns the summary (means), or None when other
    ranks still have prompts to finish (the last rank to finish writes the results)."""
    out = Path(out_dir)
    templates = cfg.prompt_templates()  # a wording file without its placeholder stops the run here
    suite, prompts = suite_prompts(cfg.suite)
    names = resolve_metric_names(cfg, suite) if metrics is None else None
    _check_config(out / "config.json", cfg, suite, prompts, names)
    prompts = prompts[: cfg.limit] if cfg.limit else prompts
    dpg_items = None
    if names and "dpg" in names:
        from vist3a.evaluation.dpg import items_for_prompts, read_dpg_questions

        dpg_items = read_dpg_questions(cfg.dpg_questions_file())
        items_for_prompts(dpg_items, prompts)  # every prompt has its questions, checked before any generation
    rank, world, local_rank = rank_and_world()
    if world > 1 and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)  # renders and metrics on "cuda" use this rank's GPU
        device = device or f"cuda:{local_rank}"
    lazy = _Lazy(cfg, device, pipeline, metrics, names or (), dpg_items, templates)
    folders = [out / "scenes" / f"{i:04d}_{slugify(p)}" for i, p in enumerate(prompts)]
    mine = [i for i in range(len(prompts)) if i % world == rank and not (folders[i] / "eval.json").is_file()]
    if mine and names:
        check_judges(names, cfg.metric_sources)
    if mine and cfg.refine_steps:
        _check_refinable(lazy, folders, mine)
    bar = tqdm(total=len(mine), desc=f"eval text3d ({suite})", unit="prompt", disable=not cfg.progress or rank > 0)
    for i in mine:
        _evaluate_prompt(i, prompts[i], folders[i], out, cfg, lazy)
        bar.update(1)
    bar.close()
    if not all((f / "eval.json").is_file() for f in folders):
        logger.info("rank %d done; other ranks still have prompts (the last one writes the results)", rank)
        return None
    rows = [json.loads((f / "eval.json").read_text()) for f in folders]
    return write_results(out, suite, rows, cfg)


def resolve_metric_names(cfg: Text3DConfig, suite: str) -> tuple[str, ...]:
    """``cfg.metrics``, else the preset's default set (:func:`~vist3a.benchmark.metric_models.default_metrics`);
    ``dpg`` needs a question file, checked here."""
    from vist3a.benchmark.metric_models import default_metrics

    questions = cfg.dpg_questions_file()
    names = cfg.metrics or default_metrics(metric_kind(cfg.preset), suite, cfg.metric_sources, questions is not None)
    if "dpg" in names and questions is None:
        raise UserInputError("the dpg metric needs DPG-Bench's question file: --dpg-questions FILE (ELLA's "
                             "dpg_bench.csv or the VIST3A release's dpg_bench_sampled_answers.csv) or "
                             "$VIST3A_DPG_QUESTIONS")
    if questions is not None and "dpg" in names and not Path(questions).expanduser().is_file():
        raise UserInputError(f"--dpg-questions '{questions}' is not a file")
    return tuple(names)


def check_judges(names: tuple[str, ...], sources: dict[str, str]) -> None:
    """Stop before anything is generated when a judge metric's model is sure to be missing
    (:func:`~vist3a.benchmark.qwen_judge.check_judge`)."""
    from vist3a.benchmark.metric_models import JUDGE_METRICS, judge_source
    from vist3a.benchmark.qwen_judge import check_judge

    for source in dict.fromkeys(judge_source(n, sources) for n in names if n in JUDGE_METRICS):
        check_judge(source)


def _check_config(path: Path, cfg: Text3DConfig, suite: str, all_prompts: list[str],
                  metric_names: tuple[str, ...] | None = None) -> None:
    """Record the run's identity; refuse to mix runs of other settings in one folder (``--limit`` may change)."""
    identity = {"suite": suite, **cfg.identity(all_prompts, metric_names)}
    if path.is_file():
        old = json.loads(path.read_text()).get("identity", {})
        diff = sorted(k for k in set(identity) | set(old) if identity.get(k) != old.get(k))
        if diff:
            hint = (f" (it scored {old.get('metrics')}; the default set depends on the judge models available, "
                    "--metrics fixes it)" if "metrics" in diff and cfg.metrics is None else "")
            wording = [k for k in diff if k in ("judge_prompt", "dpg_prompt")]
            if wording:
                used = ", ".join(f"{k}: it used {old[k]!r}" if k in old else f"{k}: not recorded (an earlier vist3a, "
                                 "asked in the release's words)" for k in wording)
                hint += (f" ({used}; 'builtin' is vist3a's default wording, else the sha256 of the --judge-prompt / "
                         "--dpg-prompt file)")
            raise UserInputError(f"'{path.parent}' holds an evaluation with other settings ({', '.join(diff)} "
                                 f"differ{hint}); resume it with the same options or use a new --out")
    _write_json(path, {"identity": identity, "config": dataclasses.asdict(cfg)})


def _refine_error(preset: str) -> UserInputError:
    return UserInputError(f"--refine optimises Gaussians, but the {preset} scenes are pointmaps (points.ply): "
                          "leave --refine out for this preset")


def _check_refinable(lazy: _Lazy, folders: list[Path], mine: list[int]) -> None:
    """Refuse ``--refine`` on a pointmap decoder before any scene is generated (a saved pointmap folder is
    refused where it is loaded)."""
    from vist3a.evaluation.scene_folder import is_scene_folder

    if all(is_scene_folder(folders[i]) for i in mine):
        return
    recon_type = getattr(getattr(lazy.pipeline.decoder, "config", None), "recon_type", None)
    if recon_type not in (None, "anysplat"):  # a pointmap decoder: no Gaussians to optimise
        raise _refine_error(lazy.cfg.preset)


def _evaluate_prompt(index: int, prompt: str, folder: Path, out: Path, cfg: Text3DConfig, lazy: _Lazy) -> None:
    """Generate (or load) one scene, refine it, render and score it; its ``eval.json`` is written last."""
    from vist3a.evaluation.scene_folder import is_scene_folder, load_scene_folder
    from vist3a.scene import save_scene

    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if is_scene_folder(folder):
        scene = load_scene_folder(folder)
        reused = True
    else:
        scene = lazy.pipeline(prompt, progress=False, generator=torch.Generator("cpu").manual_seed(cfg.seed + index),
                              num_inference_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale)[0]
        seconds["generate"] = time.perf_counter() - start
        save_scene(scene, folder, flythrough_frames=0, render_backend=cfg.render_backend)
        reused = False
    refined = None
    if cfg.refine_steps and not (folder / "scene.ply").is_file():  # a pointmap scene (fresh or reloaded)
        raise _refine_error(cfg.preset)
    if cfg.refine_steps:
        from vist3a.evaluation.refine import refine_scene

        t = time.perf_counter()
        refined = refine_scene(scene, cfg.refine_steps, backend=cfg.render_backend)
        scene.gaussians = refined.gaussians
        seconds["refine"] = time.perf_counter() - t
    t = time.perf_counter()
    views = render_path_views(scene, cfg.num_views, cfg.path_frames, cfg.render_backend)
    outputs = {m.name: m.evaluate(views, prompt, scene) for m in lazy.metrics}
    values = {k: v for o in outputs.values() for k, v in o.values.items()}
    seconds["score"] = time.perf_counter() - t
    _save_strip(views, out / "views" / f"{index:04d}.png")
    row = {"index": index, "prompt": prompt, "seed": cfg.seed + index, "scene": str(folder.relative_to(out)),
           "reused_scene": reused, "metrics": values, "seconds": seconds}
    details = {name: o.details for name, o in outputs.items() if o.details}
    if details:
        row["details"] = details
    if refined is not None:
        row["refine"] = refined.summary()
        from vist3a.splats import save_ply

        save_ply(refined.gaussians, folder / "scene_refined.ply")
    _write_json(folder / "eval.json", row)


def write_results(out: Path, suite: str, rows: list[dict[str, Any]], cfg: Text3DConfig) -> dict[str, Any]:
    """``results.json``, ``results.md`` and ``contact_sheet.png`` from the per-prompt rows; returns the means."""
    names = list(dict.fromkeys(n for r in rows for n in r["metrics"]))
    means, unread = {}, {}
    for n in names:
        read = [r["metrics"][n] for r in rows if r["metrics"].get(n) is not None]
        means[n] = sum(read) / len(read) if read else None
        if len(read) < len(rows):
            unread[n] = len(rows) - len(read)
    gen = [r["seconds"].get("generate") for r in rows if "generate" in r["seconds"]]
    summary = {"suite": suite, "preset": cfg.preset, "num_prompts": len(rows), "means": means,
               "mean_generate_seconds": sum(gen) / len(gen) if gen else None}
    if unread:
        summary["prompts_without_score"] = unread
    wording = judge_wording(rows)
    if wording:
        summary["judge_wording"] = wording
    categories = dpg_categories(rows)
    if categories:
        summary["dpg_categories"] = categories
    _write_json(out / "results.json", {**summary, "config": dataclasses.asdict(cfg), "per_prompt": rows})
    with atomic_path(out / "results.md") as tmp:
        tmp.write_text(results_markdown(suite, cfg, means, len(rows), unread, categories, wording))
    contact_sheet(out, rows[: cfg.sheet_rows])
    return summary


def judge_wording(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Judge metric -> the wording its questions used (``"builtin"`` or ``"sha256:<hex>"`` of the template file),
    from the rows' details; several values (rows of other runs) are joined with ``", "``."""
    out: dict[str, str] = {}
    for name in PROMPT_SETTINGS:
        used = sorted({d.get("wording", "unknown") for r in rows if (d := r.get("details", {}).get(name))})
        if used:
            out[name] = ", ".join(used)
    return out


def dpg_categories(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]] | None:
    """DPG-Bench's L1 / L2 category scores (percent) over every answered view of the rows with ``dpg`` details."""
    from vist3a.evaluation.dpg import category_scores

    records = [(d["categories"], [bool(a) for a in view]) for r in rows
               if (d := r.get("details", {}).get("dpg")) for view in d["answers"]]
    return category_scores(records) if records else None


LABELS = {"imaging": "Imaging ↑", "aesthetic": "Aesthetic ↑", "clip": "CLIP ↑", "clip_nano": "CLIP (nano) ↑",
          "clip_tiny": "CLIP (tiny) ↑", "consistency": "Consistency dB ↑", "longclip": "LongCLIP ↑",
          "ur_alignment": "UR Alignment ↑", "ur_coherence": "UR Coherence ↑", "ur_style": "UR Style ↑",
          "dpg": "DPG ↑"}


def results_markdown(suite: str, cfg: Text3DConfig, means: dict[str, float | None], count: int,
                     unread: dict[str, int] | None = None,
                     categories: dict[str, dict[str, float]] | None = None,
                     wording: dict[str, str] | None = None) -> str:
    """The paper's table layout: one row per method, the paper's reference rows first where they exist; then how
    many prompts a judge column skipped, and DPG-Bench's category scores."""
    paper = PAPER_ROWS.get(suite, [])
    columns = [c for c in ("imaging", "aesthetic", "clip") if c in means or any(c in r for _, r in paper)]
    columns += [c for c in means if c not in columns]
    lines = [f"# {SUITES.get(suite, suite)}: text-to-3DGS ({count} prompts)", "",
             "| Method | " + " | ".join(LABELS.get(c, c) for c in columns) + " |",
             "|---|" + "---:|" * len(columns)]
    fmt = lambda v: "—" if v is None else f"{v:.2f}"
    for name, row in paper:
        lines.append(f"| {name} | " + " | ".join(fmt(row.get(c)) for c in columns) + " |")
    label = f"vist3a `{cfg.preset}`" + (f" + LoRA `{cfg.lora}`" if cfg.lora else "")
    label += f", refine {cfg.refine_steps}" if cfg.refine_steps else ""
    lines.append(f"| {label} | " + " | ".join(fmt(means.get(c)) for c in columns) + " |")
    lines += ["", f"{cfg.num_views} views per scene, evenly spaced on the fly-through path; means over prompts."]
    if metric_kind(cfg.preset) != "real":
        lines.append("Nano stand-in metrics are not comparable to the paper's rows (other models, other world).")
    for name, n in (unread or {}).items():
        lines.append(f"{LABELS.get(name, name)}: the judge's answers were unreadable on every view of {n} of {count} "
                     "prompts; the mean skips them.")
    for name, used in (wording or {}).items():
        what = "vist3a's default, not the VIST3A release's" if used == "builtin" else "a template file"
        lines.append(f"{name} question wording: {used} ({what}); judge scores compare only across runs with the "
                     "same wording.")
    if categories:
        lines += ["", "## DPG-Bench categories (answers before the dependency rule, %)", "",
                  "| Level | Category | Score |", "|---|---|---:|"]
        lines += [f"| {level} | {c} | {v:.2f} |" for level, cats in categories.items() for c, v in cats.items()]
    return "\n".join(lines) + "\n"


def contact_sheet(out: Path, rows: list[dict[str, Any]]) -> Path:
    """``contact_sheet.png``: per prompt, its scored views and its first metric in the title."""
    import imageio.v3 as iio
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    strips = [iio.imread(out / "views" / f"{r['index']:04d}.png") for r in rows]
    height, width = strips[0].shape[:2]
    fig = Figure(figsize=(max(6.0, width / 50), 0.4 + len(rows) * (height / 50 + 0.35)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, row, strip in zip(axes, rows, strips, strict=True):
        ax.imshow(strip)
        ax.set_axis_off()
        scores = ", ".join(f"{k} {v:.3g}" if v is not None else f"{k} —" for k, v in row["metrics"].items())
        prompt = row["prompt"] if len(row["prompt"]) < 110 else row["prompt"][:107] + "..."
        ax.set_title(f"{row['index']}: {prompt}  [{scores}]", fontsize=7, loc="left")
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.99, hspace=0.4)
    with atomic_path(out / "contact_sheet.png") as tmp:
        fig.savefig(tmp)
    return out / "contact_sheet.png"
