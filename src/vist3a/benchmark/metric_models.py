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

Nano stand-ins, offline and tiny:

- ``clip_nano``: the same CLIP-score formula with the nano **evaluation** image-text model (``clip_eval``),
  which was never used as a reward; not comparable to the real CLIP score.
- ``consistency``: PSNR between the decoded frames and the renders at the predicted cameras (the 3D model's
  agreement with the video; :func:`~vist3a.evaluation.metrics.consistency_psnr`).
- ``clip_tiny``: a seeded random image-text model (``tiny-random`` preset, for tests only: meaningless).

A missing library or model is one :class:`~vist3a.errors.UserInputError` naming it and the extra to install.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn as nn

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

EVAL_EXTRA = "pip install 'vist3a[eval]'"
CLIP_B16 = "openai/clip-vit-base-patch16"
CLIP_L14 = "openai/clip-vit-large-patch14"


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

    @torch.no_grad()
    def score(self, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
        from vist3a.alignment.scorers import _pooled, check_score_inputs, clip_preprocess

        prompts = check_score_inputs(images, prompts)
        param = next(self.model.parameters())
        pixels = clip_preprocess(images.to(param.device), self.image_size, crop=True).to(param.dtype)
        image = nn.functional.normalize(_pooled(self.model.get_image_features(pixel_values=pixels)).float(), dim=-1)
        tokens = self.tokenizer(prompts, padding=True, truncation=True, max_length=77, return_tensors="pt")
        text = nn.functional.normalize(_pooled(self.model.get_text_features(**tokens.to(param.device))).float(), dim=-1)
        return (image * text).sum(-1)


def load_transformers_clip(source: str, device: torch.device) -> TransformersClipScorer:
    """A :class:`TransformersClipScorer` of ``source`` (hub id or local folder)."""
    try:
        from transformers import AutoTokenizer, CLIPModel

        model = CLIPModel.from_pretrained(source).to(device)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except OSError as exc:
        raise UserInputError(f"CLIP model '{source}' could not be loaded ({exc.__class__.__name__}); download it "
                             f"or pass a local folder with --metric-model clip=PATH") from None
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


# ----------------------------------------------------------------------------- sets of metrics
#: Metric names of each kind of preset when --metrics is not given.
DEFAULT_METRICS = {"nano": ("clip_nano", "consistency"), "tiny": ("clip_tiny", "consistency"),
                   "real": ("imaging", "aesthetic", "clip", "consistency")}
KNOWN_METRICS = ("imaging", "aesthetic", "clip", "clip_nano", "clip_tiny", "consistency")


def registry_scorer(preset: str, name: str, device: torch.device) -> Any:
    """The image-text scorer ``name`` of ``preset``'s ``scorer`` part (:func:`vist3a.components.load_components`)."""
    from vist3a.components import load_components

    return load_components(preset, ["scorer"], device=device).scorer(name)


def build_metrics(names: tuple[str, ...], device: torch.device, sources: Mapping[str, str] | None = None,
                  num_views: int = 8, backend: str = "auto") -> list[ViewMetric]:
    """Load the metrics ``names`` (see the module docstring); ``sources``: name -> hub id / local path of a real
    metric model. The stand-ins come from the registry: ``clip_nano`` is the ``nano`` preset's scorer
    ``"nano-clip-eval"``, ``clip_tiny`` the ``tiny-random`` preset's scorer."""
    sources = dict(sources or {})
    unknown = sorted(set(names) - set(KNOWN_METRICS)) + sorted(set(sources) - set(KNOWN_METRICS))
    if unknown:
        raise UserInputError(f"unknown metrics {unknown}; known: {', '.join(KNOWN_METRICS)}")
    fixed = sorted(set(sources) & {"clip_nano", "clip_tiny", "consistency"})
    if fixed:
        raise UserInputError(f"--metric-model takes imaging, aesthetic or clip, not {', '.join(fixed)} (the nano "
                             "stand-ins use the installed nano models: `vist3a nano install` replaces them)")
    out = []
    for name in names:
        if name == "consistency":
            out.append(consistency_metric(num_views, backend))
        elif name == "clip_nano":
            scorer = registry_scorer("nano", "nano-clip-eval", device)
            out.append(ViewMetric(name, "CLIP (nano eval model)", clip_score_from_scorer(scorer)))
        elif name == "clip_tiny":
            scorer = registry_scorer("tiny-random", "clip", torch.device("cpu"))  # views are on the CPU
            out.append(ViewMetric(name, "CLIP (tiny random)", clip_score_from_scorer(scorer)))
        elif name == "clip":
            scorer = load_transformers_clip(sources.get(name, CLIP_B16), device)
            out.append(ViewMetric(name, "CLIP score", clip_score_from_scorer(scorer)))
        elif name == "aesthetic":
            scorer = load_aesthetic(sources.get(name), device)
            out.append(ViewMetric(name, "Aesthetic", lambda v, p, s, f=scorer: float(10.0 * f(v).float().mean())))
        elif name == "imaging":
            musiq = load_musiq(sources.get(name), device)
            out.append(ViewMetric(name, "Imaging quality",
                                  lambda v, p, s, f=musiq: float(f(v.to(device)).float().mean())))
    return out
