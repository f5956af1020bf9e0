"""``vist3a nano eval``: prompt fidelity and 3D consistency of the nano text-to-3D pipeline on held-out prompts.

Protocol (one call = one row of a before/after-alignment table):

1. ``num_prompts`` distinct held-out compositions of the nano world (:func:`~vist3a.evaluation.prompts.
   heldout_compositions`, a pure function of ``seed``), worded canonically;
2. one scene per prompt from :class:`~vist3a.pipeline.Text2ScenePipeline` ("nano" preset, optionally with an
   alignment LoRA), batches of ``batch_size`` seeded with ``seed + index of the batch's first prompt``;
3. ``num_views`` evenly spaced frames of each scene: the VAE-decoded frame and the render of the predicted
   Gaussians at that frame's predicted camera, at the video's resolution;
4. metrics per scene, averaged over scenes:

   - CLIP-R-precision with the **evaluation** model (``clip_eval``, never the reward model): top-1 retrieval of
     the prompt among it and 9 one-attribute variants (chance 0.1), on the renders (the 3D result) and on the
     decoded frames; the same with the reward model, to expose reward hacking (the reward model's number
     rising faster than the evaluation model's);
   - 3D consistency: PSNR between decoded frames and renders (:func:`~vist3a.evaluation.metrics.consistency_psnr`);
     at the frames' own predicted cameras a flat sheet scores well, so also at *novel* cameras (``heldout_psnr``:
     the splats of the context frames rendered at 4 held-out frames' predicted cameras, AnySplat's protocol,
     the pipeline's ``score_heldout``);
   - the reward terms alignment optimises, from :mod:`vist3a.alignment.rewards`: the reward model's cosine on
     decoded frames and on renders, and ``-L1(decoded, rendered)``;
5. ``left_right_scenes`` more scenes of two objects "left of" / "right of" each other, judged from pixel colours
   in the first decoded frame and its render (:mod:`vist3a.evaluation.relations`; chance 0.5), because the
   image-text models barely see left from right.

Outputs in ``out_dir``: ``eval.json`` (summary, per-prompt rows with scores and distractors, config, sources) and
``gallery.png`` (per prompt: decoded frames, then renders of the same views).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError
from vist3a.evaluation.metrics import consistency_psnr, prompt_scores, top1_hit
from vist3a.evaluation.prompts import NUM_CANDIDATES, heldout_compositions, r_precision_prompts
from vist3a.evaluation.relations import judge_left_right, left_right_cases, left_right_summary
from vist3a.evaluation.views import evenly_spaced, render_predicted_views
from vist3a.nano.configs import MINILM_HIDDEN_SIZE
from vist3a.nano.training import write_json

logger = logging.getLogger(__name__)

#: Reward terms reported by the evaluation (the reward model is registered as "nano-clip").
REWARD_TERMS = (
    {"type": "image_text", "name": "clip_decoded", "scorer": "nano-clip", "source": "decoded", "weight": 1.0},
    {"type": "image_text", "name": "clip_rendered", "scorer": "nano-clip", "source": "rendered", "weight": 1.0},
    {"type": "consistency", "name": "consistency_l1", "weight": 1.0, "lpips_weight": 0.0},
)


@dataclass
class NanoEvalConfig:
    """Settings of a nano evaluation.

    Attributes:
        num_prompts: held-out prompts (= scenes).
        seed: seeds the prompt choice and the generation noise.
        batch_size: prompts generated per pipeline call.
        num_views: evenly spaced frames compared and scored per scene (DESIGN.md §6 renders 8 viewpoints).
        num_candidates: R-precision candidates per scene (truth included).
        num_steps, guidance_scale: generation overrides (None: the nano preset's).
        lora: a LoRA folder for the generator (e.g. ``RUN/checkpoint-N/lora_ema`` from ``vist3a align``).
        eval_model, reward_model: training run folders of ``clip_eval`` / ``clip`` (None: the installed ones).
        render_backend: :func:`vist3a.splats.render` backend.
        gallery_rows, gallery_views: prompts and views shown in ``gallery.png``.
        left_right_scenes: extra two-object "left of" / "right of" scenes judged from pixel colours
            (:mod:`vist3a.evaluation.relations`; at most 24, 0 skips them).
        progress: show a progress bar.
    """

    num_prompts: int = 32
    seed: int = 0
    batch_size: int = 8
    num_views: int = 8
    num_candidates: int = NUM_CANDIDATES
    num_steps: int | None = None
    guidance_scale: float | None = None
    lora: str | None = None
    eval_model: str | None = None
    reward_model: str | None = None
    render_backend: str = "auto"
    gallery_rows: int = 16
    gallery_views: int = 4
    left_right_scenes: int = 24
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("num_prompts", "batch_size", "num_views", "gallery_views"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive int, got {value!r}")
        if not 0 <= self.left_right_scenes <= 24:
            raise ValueError(f"`left_right_scenes` must be in [0, 24], got {self.left_right_scenes}")
        if self.num_candidates < 2:
            raise ValueError(f"`num_candidates` must be >= 2, got {self.num_candidates}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _generator(seed: int) -> torch.Generator:
    """A CPU generator: the same noise on every device."""
    return torch.Generator("cpu").manual_seed(seed)


def _load_scorer(component: str, source: str | None, device: torch.device, text_encoder: Any, required: bool) -> Any:
    """The nano scorer of ``component`` from ``source`` or the installed weights; None (warned) if not required."""
    from vist3a.nano.provider import nano_clip_scorer
    from vist3a.nano.weights import nano_available

    if source is None and not nano_available([component]):
        stage = component.replace("_", "-")
        message = (f"the nano image-text model '{component}' is not installed; train it with `vist3a nano train "
                   f"{stage} --out runs/nano` and `vist3a nano install runs/nano`, or pass its run folder")
        if required:
            raise UserInputError(f"nano eval: {message} (--eval-model)")
        logger.warning("%s (--reward-model); the reward terms are skipped", message)
        return None
    if getattr(text_encoder, "hidden_size", None) != MINILM_HIDDEN_SIZE:
        text_encoder = None  # the generator's encoder is not MiniLM (e.g. a tiny test generator): load MiniLM
    return nano_clip_scorer(component, device, source=source, text_encoder=text_encoder)


def evaluate_nano(
    cfg: NanoEvalConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    pipeline: Any = None,
    eval_scorer: Any = None,
    reward_scorer: Any = None,
) -> dict[str, Any]:
    """Run the protocol of the module docstring; writes ``out_dir/eval.json`` and ``gallery.png``, returns the
    summary. ``pipeline`` / ``eval_scorer`` / ``reward_scorer`` replace the nano ones (tests)."""
    from vist3a.alignment.rewards import RewardInputs, build_reward_term
    from vist3a.pipeline import Text2ScenePipeline

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if pipeline is None:
        pipeline = Text2ScenePipeline.from_pretrained("nano", device=device, lora=cfg.lora)
    device = pipeline.device
    text_encoder = pipeline.generator.text_encoder
    if eval_scorer is None:
        eval_scorer = _load_scorer("clip_eval", cfg.eval_model, device, text_encoder, required=True)
    if reward_scorer is None:
        reward_scorer = _load_scorer("clip", cfg.reward_model, device, text_encoder, required=False)
    terms = [build_reward_term(spec, lambda name: reward_scorer) for spec in REWARD_TERMS
             if reward_scorer is not None or spec["type"] != "image_text"]

    compositions = heldout_compositions(cfg.num_prompts, cfg.seed)
    candidates = [r_precision_prompts(c, cfg.num_candidates) for c in compositions]
    settings = pipeline.settings(num_steps=cfg.num_steps, guidance_scale=cfg.guidance_scale)
    rows: list[dict[str, Any]] = []
    gallery: list[tuple[str, float, torch.Tensor, torch.Tensor]] = []
    bar = tqdm(total=cfg.num_prompts, desc="nano eval", unit="scene", disable=not cfg.progress)
    for start in range(0, cfg.num_prompts, cfg.batch_size):
        batch = candidates[start : start + cfg.batch_size]
        scenes = pipeline([c[0] for c in batch], progress=False, generator=_generator(cfg.seed + start),
                          num_inference_steps=settings.num_steps, guidance_scale=settings.guidance_scale,
                          score_heldout=True)
        views = evenly_spaced(scenes[0].frames.shape[0], cfg.num_views)
        decoded = torch.stack([s.frames[views].float().cpu() for s in scenes])  # [B, k, 3, H, W]
        rendered = torch.stack([render_predicted_views(s, views, cfg.render_backend, device) for s in scenes])
        with torch.no_grad():
            inputs = RewardInputs([c[0] for c in batch], decoded.to(device), rendered.to(device),
                                  tuple(range(len(views))))
            rewards = {t.name: t(inputs, range(len(views))).float().cpu() for t in terms}
        for b, prompts in enumerate(batch):
            row = _score_scene(prompts, decoded[b], rendered[b], eval_scorer, reward_scorer)
            row["rewards"] = {name: float(value[b]) for name, value in rewards.items()}
            row["heldout_psnr"] = scenes[b].settings["heldout_psnr"]
            rows.append(row)
            if len(gallery) < cfg.gallery_rows:
                gallery.append((prompts[0], row["hit_rendered"], decoded[b], rendered[b]))
        bar.update(len(batch))
    bar.close()

    summary = _summarise(rows, cfg.num_candidates)
    left_right = _left_right(pipeline, cfg, settings, device)
    if left_right:
        for source in ("decoded", "rendered"):
            judged = left_right_summary([r[source] for r in left_right])
            suffix = "" if source == "decoded" else "_rendered"
            summary[f"left_right_accuracy{suffix}"] = judged["accuracy"]
            summary[f"left_right_visible{suffix}"] = judged["visible"]
    report = {
        "summary": summary,
        "config": cfg.to_dict(),
        "generation": settings.to_dict(),
        "views": views,
        "sources": {
            "eval_model": cfg.eval_model or "installed clip_eval",
            "reward_model": (cfg.reward_model or "installed clip") if reward_scorer is not None else None,
            "lora": cfg.lora,
            "preset": pipeline.preset.get("name"),
        },
        "per_prompt": rows,
        "left_right": left_right,
    }
    write_json(out / "eval.json", report)
    write_gallery(gallery, out / "gallery.png", cfg.gallery_views)
    logger.info("nano eval: R-precision %.3f on renders (chance %.3f), consistency PSNR %.2f dB (novel views %.2f dB); "
                "wrote %s", summary["r_precision_rendered"], summary["chance_r_precision"], summary["consistency_psnr"],
                summary["heldout_psnr"], out)
    return summary


def _left_right(pipeline: Any, cfg: NanoEvalConfig, settings: Any, device: torch.device) -> list[dict[str, Any]]:
    """Judge ``cfg.left_right_scenes`` two-object scenes from the colours of their first decoded frame and of its
    render at the predicted camera (noise seeded apart from the R-precision scenes)."""
    rows: list[dict[str, Any]] = []
    cases = left_right_cases(cfg.left_right_scenes, cfg.seed) if cfg.left_right_scenes else []
    for start in range(0, len(cases), cfg.batch_size):
        batch = cases[start : start + cfg.batch_size]
        scenes = pipeline([c.prompt for c in batch], progress=False, generator=_generator(cfg.seed + 100_000 + start),
                          num_inference_steps=settings.num_steps, guidance_scale=settings.guidance_scale)
        for case, scene in zip(batch, scenes, strict=True):
            rendered = render_predicted_views(scene, [0], cfg.render_backend, device)[0]
            rows.append({"prompt": case.prompt, "decoded": judge_left_right(scene.frames[0].float().cpu(), case),
                         "rendered": judge_left_right(rendered, case)})
    return rows


def _score_scene(prompts: list[str], decoded: torch.Tensor, rendered: torch.Tensor, eval_scorer: Any,
                 reward_scorer: Any) -> dict[str, Any]:
    """Per-scene numbers: R-precision hits and scores of both image sources, consistency PSNR."""
    scores = {source: prompt_scores(eval_scorer, images, prompts).cpu()
              for source, images in (("rendered", rendered), ("decoded", decoded))}
    row: dict[str, Any] = {
        "prompt": prompts[0],
        "distractors": prompts[1:],
        "hit_rendered": top1_hit(scores["rendered"]),
        "hit_decoded": top1_hit(scores["decoded"]),
        "scores_rendered": scores["rendered"].tolist(),
        "scores_decoded": scores["decoded"].tolist(),
        "consistency_psnr": float(consistency_psnr(decoded, rendered).mean()),
    }
    if reward_scorer is not None:
        row["hit_rendered_reward_model"] = top1_hit(prompt_scores(reward_scorer, rendered, prompts).cpu())
    return row


def _summarise(rows: list[dict[str, Any]], num_candidates: int) -> dict[str, Any]:
    mean = lambda values: sum(values) / len(values)
    summary: dict[str, Any] = {
        "num_prompts": len(rows),
        "chance_r_precision": 1.0 / num_candidates,
        "r_precision_rendered": mean([r["hit_rendered"] for r in rows]),
        "r_precision_decoded": mean([r["hit_decoded"] for r in rows]),
        "consistency_psnr": mean([r["consistency_psnr"] for r in rows]),
        "heldout_psnr": mean([r["heldout_psnr"] for r in rows]),
    }
    if "hit_rendered_reward_model" in rows[0]:
        summary["r_precision_rendered_reward_model"] = mean([r["hit_rendered_reward_model"] for r in rows])
    for name in rows[0]["rewards"]:
        summary[f"reward_{name}"] = mean([r["rewards"][name] for r in rows])
    return summary


def write_gallery(rows: Sequence[tuple[str, float, torch.Tensor, torch.Tensor]], path: Path, views: int) -> Path:
    """PNG: one strip per prompt, ``views`` decoded frames then the renders of the same views (title: the prompt
    and its R-precision hit on the renders)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vist3a.io_utils import atomic_path

    if not rows:
        raise ValueError("the gallery needs at least one scene")
    picks = evenly_spaced(rows[0][2].shape[0], views)
    strips = []
    for _, _, decoded, rendered in rows:
        images = [*decoded[picks], *rendered[picks]]  # each [3, H, W]
        gap = torch.ones(3, images[0].shape[1], 2)
        strips.append(torch.cat([t for image in images for t in (image.clamp(0, 1), gap)][:-1], dim=2))
    height, width = strips[0].shape[1:]
    fig = Figure(figsize=(max(4.0, width / 60), 0.5 + len(rows) * (height / 60 + 0.3)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, squeeze=False)[:, 0]
    for ax, (prompt, hit, _, _), strip in zip(axes, rows, strips, strict=True):
        ax.imshow(strip.permute(1, 2, 0).numpy())
        ax.set_axis_off()
        ax.set_title(f"[R@1 {hit:.2g}] {prompt}", fontsize=7, loc="left")
    fig.suptitle(f"left: {len(picks)} decoded frames, right: renders at the predicted cameras", fontsize=8)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.5 / fig.get_figheight(), hspace=0.35)
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    return path
