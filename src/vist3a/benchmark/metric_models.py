"""Per-scene metrics of the text-to-3DGS tables, each a callable on a scene's rendered views.

A :class:`ViewMetric` maps ``views [V, 3, H, W]`` in ``[0, 1]`` (8 evenly spaced fly-through renders), the
prompt and the :class:`~vist3a.scene.Scene` to one number; the table reports the mean over prompts.

Real metric models (DESIGN.md §6; the paper's numbers use them), loaded through their libraries from the hub or
a local folder (``--metric-model NAME=PATH``):

- ``imaging``: MUSIQ trained on SPAQ (VBench's imaging quality), pyiqa, on a 0-100 scale.
- ``aesthetic``: the LAION aesthetic predictor (an MLP on normalised CLIP ViT-L/14 image embeddings), 0-10 scaled
  by 10.
- ``clip``: CLIP score with ``openai/clip-vit-base-patch16``: ``100 * max(cos(image, text), 0)`` (torchmetrics'
  definition), transformers.
- ``longclip`` (optional): the same formula with LongCLIP-L (``zer0int/LongCLIP-L-Diffusers``, a transformers
  ``CLIPModel`` with 248 text positions, the release's ``longclip_score``); prompts are cut at its text length.
- ``unifiedreward``: UnifiedReward-Qwen-7B's 1-5 ratings, three columns ``ur_alignment``, ``ur_coherence``,
  ``ur_style`` (:mod:`vist3a.evaluation.vqa_protocols`, judge :mod:`vist3a.benchmark.qwen_judge`), asked in
  vist3a's own wording (not the VIST3A release's) unless a template file gives another.
- ``dpg``: DPG-Bench's score (0-100) with the same model as VQA judge; needs the suite's question file
  (:mod:`vist3a.evaluation.dpg`).

Nano stand-ins, offline and tiny:

- ``clip_nano``: the same CLIP-score formula with the nano **evaluation** image-text model (``clip_eval``),
  which was never used as a reward; not comparable to the real CLIP score.
- ``consistency``: PSNR between the decoded frames and the renders at the predicted cameras (the 3D model's
  agreement with the video; :func:`~vist3a.evaluation.metrics.consistency_psnr`).
- ``clip_tiny``: a seeded random image-text model (``tiny-random`` preset, for tests only: meaningless).

A missing library or model is one :class:`~vist3a.errors.UserInputError` naming it and the extra to install.

A :class:`ViewMetric` gives one number; a :class:`JudgeMetric` (the VQA judges) gives several columns and the
per-view details they were read from, both through ``evaluate() -> MetricOutput``. A column is ``None`` for a
prompt whose judge answers could not be read on any view; the means skip it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn as nn

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

EVAL_EXTRA = "pip install 'vist3a[eval]'"
CLIP_B16 = "openai/clip-vit-base-patch16"
CLIP_L14 = "openai/clip-vit-large-patch14"
LONGCLIP_L = "zer0int/LongCLIP-L-Diffusers"
#: ``max_new_tokens`` of a UnifiedReward rating (the release's) and of a DPG yes/no answer (the release lets it run
#: to 4096 too, but the answer is one word and generation stops at its end-of-turn token).
UNIFIED_REWARD_MAX_TOKENS = 4096
DPG_MAX_TOKENS = 32


@dataclass
class MetricOutput:
    """What a metric gives for one prompt: ``values`` (column -> number, ``None`` when unreadable) and
    JSON-able ``details`` (kept in the prompt's ``eval.json``)."""

    values: dict[str, float | None]
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ViewMetric:
    """One column of a text-to-3D table.

    Attributes:
        name: key in ``results.json``.
        label: column header.
        fn: ``fn(views [V, 3, H, W], prompt, scene) -> float``.
    """

    name: str
    label: str
    fn: Callable[[torch.Tensor, str, Any], float]

    def __call__(self, views: torch.Tensor, prompt: str, scene: Any) -> float:
        return float(self.fn(views, prompt, scene))

    @property
    def columns(self) -> dict[str, str]:
        """Column name -> header."""
        return {self.name: self.label}

    def evaluate(self, views: torch.Tensor, prompt: str, scene: Any) -> MetricOutput:
        return MetricOutput({self.name: self(views, prompt, scene)})


@dataclass
class JudgeMetric:
    """Several columns read from one judge's answers about each view.

    Attributes:
        name: the metric's name (``--metrics``), key of its details.
        columns: column name -> header, the keys of every output's ``values``.
        fn: ``fn(views [V, 3, H, W], prompt, scene) -> MetricOutput``.
    """

    name: str
    columns: dict[str, str]
    fn: Callable[[torch.Tensor, str, Any], MetricOutput]

    def evaluate(self, views: torch.Tensor, prompt: str, scene: Any) -> MetricOutput:
        out = self.fn(views, prompt, scene)
        if set(out.values) != set(self.columns):
            raise RuntimeError(f"metric {self.name} gave columns {sorted(out.values)}, not {sorted(self.columns)}")
        return out


def clip_score_from_scorer(scorer: Any) -> Callable[[torch.Tensor, str, Any], float]:
    """``100 * max(cos, 0)`` averaged over views, for any scorer returning cosines (``score(images, prompts)``)."""

    @torch.no_grad()
    def fn(views: torch.Tensor, prompt: str, scene: Any) -> float:
        cos = scorer.score(views, [prompt] * views.shape[0]).float()
        return float((100.0 * cos.clamp_min(0.0)).mean())

    return fn


def consistency_metric(num_views: int = 8, backend: str = "auto") -> ViewMetric:
    """``consistency``: PSNR (dB) of the decoded frames against renders at their predicted cameras."""
    from vist3a.evaluation.metrics import consistency_psnr
    from vist3a.evaluation.views import evenly_spaced, render_predicted_views

    def fn(views: torch.Tensor, prompt: str, scene: Any) -> float:
        picks = evenly_spaced(scene.frames.shape[0], num_views)
        rendered = render_predicted_views(scene, picks, backend, "cuda" if torch.cuda.is_available() else "cpu")
        return float(consistency_psnr(scene.frames[picks].float().cpu(), rendered).mean())

    return ViewMetric("consistency", "Consistency PSNR (dB)", fn)


# ----------------------------------------------------------------------------- real metric models
class TransformersClipScorer(nn.Module):
    """Cosines of a ``transformers.CLIPModel`` (CLIP score's model), frozen; images are resized to the model's
    input side and normalised with CLIP's mean/std (:func:`vist3a.alignment.scorers.clip_preprocess`)."""

    def __init__(self, model: nn.Module, tokenizer: Any) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.tokenizer = tokenizer
        self.image_size = int(model.config.vision_config.image_size)
        self.max_length = int(model.config.text_config.max_position_embeddings)  # 77; LongCLIP: 248

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        from vist3a.alignment.scorers import _pooled, check_score_inputs, clip_preprocess

        prompts = check_score_inputs(images, prompts)
        param = next(self.model.parameters())
        pixels = clip_preprocess(images.to(param.device), self.image_size, crop=True).to(param.dtype)
        image = nn.functional.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=self.max_length,
                                return_tensors="pt")
        text = nn.functional.normalize(_pooled(self.model.get_text_features(**tokens.to(param.device))).float(), dim=-1)
        return (image * text).sum(-1)


def load_transformers_clip(source: str, device: torch.device, name: str = "clip") -> TransformersClipScorer:
    """A :class:`TransformersClipScorer` of ``source`` (hub id or local folder); ``name``: its metric's name."""
    try:
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(source).to(device)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise UserInputError(f"CLIP model '{source}' could not be loaded ({exc.__class__.__name__}); download it "
                             f"or pass a local folder with --metric-model {name}=PATH") from None
    return TransformersClipScorer(model, tokenizer)


class AestheticPredictor(nn.Module):
    """The LAION "improved aesthetic predictor" head: an MLP on unit-norm CLIP ViT-L/14 image embeddings giving a
    0-10 rating (its released weights' keys are ``layers.{0,2,4,6,7}.{weight,bias}``)."""

    def __init__(self, embed_dim: int = 768) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(embed_dim, 1024), nn.Dropout(0.2), nn.Linear(1024, 128), nn.Dropout(0.2),
            nn.Linear(128, 64), nn.Dropout(0.1), nn.Linear(64, 16), nn.Linear(16, 1),
        )

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.layers(embeddings).squeeze(-1)


class AestheticScorer(nn.Module):
    """LAION aesthetic score ``[N]`` (0-10) of images in ``[0, 1]``: CLIP image embedding -> unit norm -> head."""

    def __init__(self, clip: nn.Module, head: AestheticPredictor) -> None:
        super().__init__()
        self.clip = clip.eval().requires_grad_(False)
        self.head = head.eval().requires_grad_(False)
        self.image_size = int(clip.config.vision_config.image_size)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        from vist3a.alignment.scorers import _pooled, clip_preprocess

        param = next(self.clip.parameters())
        pixels = clip_preprocess(images.to(param.device), self.image_size, crop=True).to(param.dtype)
        emb = nn.functional.normalize(_pooled(self.clip.get_image_features(pixel_values=pixels)).float(), dim=-1)
        return self.head(emb)


def load_aesthetic(source: str | None, device: torch.device) -> AestheticScorer:
    """``source``: a folder holding the CLIP ViT-L/14 model files and the head as ``aesthetic_head.pth`` (or
    ``sac+logos+ava1-l14-linearMSE.pth``, the LAION release's name); None: ``CLIP_L14`` from the hub and the head
    from the folder in ``$VIST3A_AESTHETIC_HEAD``."""
    import os
    from pathlib import Path

    from transformers import CLIPModel

    folder = Path(source) if source else None
    head_dir = folder or (Path(os.environ["VIST3A_AESTHETIC_HEAD"]) if "VIST3A_AESTHETIC_HEAD" in os.environ else None)
    names = ("aesthetic_head.pth", "sac+logos+ava1-l14-linearMSE.pth")
    head_file = next((head_dir / n for n in names if head_dir and (head_dir / n).is_file()), None)
    if head_file is None:
        raise UserInputError("the LAION aesthetic head is missing: put sac+logos+ava1-l14-linearMSE.pth (from the "
                             "improved-aesthetic-predictor release) in a folder with the CLIP ViT-L/14 files and pass "
                             "--metric-model aesthetic=FOLDER")
    try:
        clip = CLIPModel.from_pretrained(str(folder) if folder and (folder / "config.json").is_file() else CLIP_L14)
    except OSError:
        raise UserInputError(f"CLIP ViT-L/14 ('{CLIP_L14}') could not be loaded for the aesthetic score; download "
                             "it or put its files beside the head") from None
    head = AestheticPredictor(int(clip.config.projection_dim))
    head.load_state_dict(torch.load(head_file, map_location="cpu", weights_only=True))
    return AestheticScorer(clip, head).to(device)


def load_musiq(source: str | None, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """MUSIQ-SPAQ through pyiqa (``source``: a local checkpoint file, else pyiqa downloads its own)."""
    try:
        import pyiqa
    except ImportError:
        raise UserInputError(f"the imaging-quality metric (MUSIQ) needs pyiqa: {EVAL_EXTRA}") from None
    kwargs = {"pretrained_model_path": source} if source else {}
    try:
        return pyiqa.create_metric("musiq-spaq", device=device, as_loss=False, **kwargs)
    except Exception as exc:  # pyiqa raises many types for missing weights
        raise UserInputError(f"MUSIQ-SPAQ could not be loaded ({type(exc).__name__}: {exc}); let pyiqa download its "
                             "weights once or pass --metric-model imaging=CHECKPOINT") from None


# ----------------------------------------------------------------------------- VQA judges
def unified_reward_metric(judge: Any, max_new_tokens: int = UNIFIED_REWARD_MAX_TOKENS,
                          template: Any = None) -> JudgeMetric:
    """``unifiedreward``: the judge rates each view against the prompt; a view counts when all three ratings were
    read, each column is the mean over the views that count (``None`` when none does). ``template``: the question's
    wording (:class:`~vist3a.evaluation.vqa_protocols.PromptTemplate`; None: vist3a's default). Details: the
    wording's source, the ratings of each view and the raw answers of the views that did not count."""
    from vist3a.evaluation.vqa_protocols import (
        UNIFIED_REWARD_CRITERIA,
        UNIFIED_REWARD_TEMPLATE,
        parse_unified_reward,
        unified_reward_question,
    )

    template = template or UNIFIED_REWARD_TEMPLATE

    columns = {f"ur_{c}": f"UnifiedReward {c}" for c in UNIFIED_REWARD_CRITERIA}

    def fn(views: torch.Tensor, prompt: str, scene: Any) -> MetricOutput:
        question = unified_reward_question(prompt, template)
        per_view: list[dict[str, float | None]] = []
        unread: dict[str, str] = {}
        for v, view in enumerate(views):
            answer = judge.ask(view, question, max_new_tokens)
            ratings = parse_unified_reward(answer)
            per_view.append(ratings)
            if any(r is None for r in ratings.values()):
                unread[str(v)] = answer
        counted = [r for r in per_view if all(x is not None for x in r.values())]
        if len(counted) < len(per_view):
            logger.warning("UnifiedReward: %d of %d views of %r gave no readable ratings", len(per_view) - len(counted),
                           len(per_view), prompt[:60])
        values = {f"ur_{c}": (sum(r[c] for r in counted) / len(counted) if counted else None)
                  for c in UNIFIED_REWARD_CRITERIA}
        return MetricOutput(values, {"judge": judge.name, "wording": template.source, "views_counted": len(counted),
                                     "ratings": per_view, "unread_answers": unread})

    return JudgeMetric("unifiedreward", columns, fn)


def dpg_metric(judge: Any, items: Mapping[str, Any], max_new_tokens: int = DPG_MAX_TOKENS,
               template: Any = None) -> JudgeMetric:
    """``dpg``: DPG-Bench's score x 100 (:mod:`vist3a.evaluation.dpg`): every question of the prompt's item asked
    about every view, the dependency rule per view, the mean over views. ``items``: the question file
    (:func:`~vist3a.evaluation.dpg.read_dpg_questions`); ``template``: the question's wording
    (:class:`~vist3a.evaluation.vqa_protocols.PromptTemplate`; None: vist3a's default). Details: the wording's
    source, the item, each question's L2 category, and per view the answers as yes (1) / not yes (0), with the
    answers that were neither a yes nor a no."""
    from vist3a.evaluation.dpg import image_score, items_for_prompts
    from vist3a.evaluation.vqa_protocols import DPG_TEMPLATE, dpg_question_prompt, is_yes, yes_no

    template = template or DPG_TEMPLATE

    def fn(views: torch.Tensor, prompt: str, scene: Any) -> MetricOutput:
        (item,) = items_for_prompts(items, [prompt])
        view_scores, answers, unread = [], [], {}
        for v, view in enumerate(views):
            raw = {q.qid: judge.ask(view, dpg_question_prompt(q.question, template), max_new_tokens)
                   for q in item.questions}
            yes = {qid: is_yes(a) for qid, a in raw.items()}
            view_scores.append(image_score(item, yes))
            answers.append([int(yes[q.qid]) for q in item.questions])
            unread.update({f"{v}:{qid}": a for qid, a in raw.items() if yes_no(a) is None})
        details = {"judge": judge.name, "wording": template.source, "item_id": item.item_id,
                   "qids": [q.qid for q in item.questions], "categories": [q.category for q in item.questions],
                   "answers": answers, "view_scores": view_scores, "unread_answers": unread}
        return MetricOutput({"dpg": 100.0 * sum(view_scores) / len(view_scores)}, details)

    return JudgeMetric("dpg", {"dpg": "DPG-Bench"}, fn)


# ----------------------------------------------------------------------------- sets of metrics
#: Metric names of each kind of preset when --metrics is not given (real presets may add :data:`JUDGE_METRICS`).
DEFAULT_METRICS = {"nano": ("clip_nano", "consistency"), "tiny": ("clip_tiny", "consistency"),
                   "real": ("imaging", "aesthetic", "clip", "consistency")}
#: Metrics of the VQA judge, which a real preset's default set adds only when the judge loads without a download.
JUDGE_METRICS = ("unifiedreward", "dpg")
KNOWN_METRICS = ("imaging", "aesthetic", "clip", "longclip", "unifiedreward", "dpg", "clip_nano", "clip_tiny",
                 "consistency")
#: Metrics whose model --metric-model may name.
MODEL_METRICS = ("imaging", "aesthetic", "clip", "longclip", "unifiedreward", "dpg")


def judge_source(name: str, sources: Mapping[str, str]) -> str:
    """The judge model of ``unifiedreward`` or ``dpg``: its own ``--metric-model``, else (for ``dpg``) that of
    ``unifiedreward``, else :data:`~vist3a.benchmark.qwen_judge.UNIFIED_REWARD_REPO`."""
    from vist3a.benchmark.qwen_judge import UNIFIED_REWARD_REPO

    return sources.get(name) or sources.get("unifiedreward") or UNIFIED_REWARD_REPO


def default_metrics(kind: str, suite: str, sources: Mapping[str, str] | None = None,
                    has_dpg_questions: bool = False) -> tuple[str, ...]:
    """The metric set when ``--metrics`` is not given: :data:`DEFAULT_METRICS` of the preset ``kind``. A real
    preset adds ``unifiedreward`` when its judge is named (``--metric-model unifiedreward=...``) or loads without a
    download (:func:`~vist3a.benchmark.qwen_judge.judge_available`), and on the ``dpg`` suite ``dpg`` when, on top,
    the question file is given. What is left out is logged with how to ask for it."""
    from vist3a.benchmark.qwen_judge import judge_available

    names = DEFAULT_METRICS[kind]
    if kind != "real":
        return names
    sources = dict(sources or {})
    for name in JUDGE_METRICS:
        if name == "dpg" and suite != "dpg":
            continue
        named = name in sources or "unifiedreward" in sources
        ok, why = (True, "") if named else judge_available(judge_source(name, sources))
        if name == "dpg" and ok and not has_dpg_questions:
            ok, why = False, "no --dpg-questions file"
        if ok:
            names += (name,)
        else:
            logger.info("%s scores left out (%s); --metrics asks for them", name, why)
    return names


def registry_scorer(preset: str, name: str, device: torch.device) -> Any:
    """The image-text scorer ``name`` of ``preset``'s ``scorer`` part (:func:`vist3a.components.load_components`)."""
    from vist3a.components import load_components

    return load_components(preset, ["scorer"], device=device).scorer(name)


def build_metrics(names: tuple[str, ...], device: torch.device, sources: Mapping[str, str] | None = None,
                  num_views: int = 8, backend: str = "auto", dpg_items: Mapping[str, Any] | None = None,
                  templates: Mapping[str, Any] | None = None) -> list[ViewMetric | JudgeMetric]:
    """Load the metrics ``names`` (see the module docstring); ``sources``: name -> hub id / local path of a real
    metric model. The stand-ins come from the registry: ``clip_nano`` is the ``nano`` preset's scorer
    ``"nano-clip-eval"``, ``clip_tiny`` the ``tiny-random`` preset's scorer. ``dpg`` needs ``dpg_items``, the
    question file (:func:`vist3a.evaluation.dpg.read_dpg_questions`); ``unifiedreward`` and ``dpg`` share one judge
    when their sources agree. ``templates``: ``unifiedreward`` / ``dpg`` -> the judge's question wording
    (:class:`~vist3a.evaluation.vqa_protocols.PromptTemplate`; a missing one: vist3a's default)."""
    from vist3a.benchmark.qwen_judge import load_qwen_judge

    sources, templates = dict(sources or {}), dict(templates or {})
    unknown = sorted(set(names) - set(KNOWN_METRICS)) + sorted(set(sources) - set(KNOWN_METRICS))
    if unknown:
        raise UserInputError(f"unknown metrics {unknown}; known: {', '.join(KNOWN_METRICS)}")
    fixed = sorted(set(sources) - set(MODEL_METRICS))
    if fixed:
        raise UserInputError(f"--metric-model takes {', '.join(MODEL_METRICS)}, not {', '.join(fixed)} (the nano "
                             "stand-ins use the installed nano models: `vist3a nano install` replaces them)")
    if "dpg" in names and dpg_items is None:
        raise UserInputError("the dpg metric needs DPG-Bench's question file: --dpg-questions FILE")
    judges: dict[str, Any] = {}

    def judge(name: str) -> Any:
        source = judge_source(name, sources)
        if source not in judges:
            judges[source] = load_qwen_judge(source, device)
        return judges[source]

    out: list[ViewMetric | JudgeMetric] = []
    for name in names:
        if name == "consistency":
            out.append(consistency_metric(num_views, backend))
        elif name == "clip_nano":
            scorer = registry_scorer("nano", "nano-clip-eval", device)
            out.append(ViewMetric(name, "CLIP (nano eval model)", clip_score_from_scorer(scorer)))
        elif name == "clip_tiny":
            scorer = registry_scorer("tiny-random", "clip", torch.device("cpu"))  # views are on the CPU
            out.append(ViewMetric(name, "CLIP (tiny random)", clip_score_from_scorer(scorer)))
        elif name in ("clip", "longclip"):
            default, label = (CLIP_B16, "CLIP score") if name == "clip" else (LONGCLIP_L, "LongCLIP score")
            scorer = load_transformers_clip(sources.get(name, default), device, name)
            out.append(ViewMetric(name, label, clip_score_from_scorer(scorer)))
        elif name == "aesthetic":
            scorer = load_aesthetic(sources.get(name), device)
            out.append(ViewMetric(name, "Aesthetic", lambda v, p, s, f=scorer: float(10.0 * f(v).float().mean())))
        elif name == "imaging":
            musiq = load_musiq(sources.get(name), device)
            out.append(ViewMetric(name, "Imaging quality",
                                  lambda v, p, s, f=musiq: float(f(v.to(device)).float().mean())))
        elif name == "unifiedreward":
            out.append(unified_reward_metric(judge(name), template=templates.get(name)))
        elif name == "dpg":
            out.append(dpg_metric(judge(name), dpg_items, template=templates.get(name)))
    return out
