"""``vist3a eval nvs``: novel-view synthesis of the stitched vs the original decoder (Table 3 of the paper).

AnySplat's protocol (pose-free feed-forward splatting): per clip, ``num_context`` context views and
``num_targets`` held-out target views.

1. Run the decoder on the context views: Gaussians and context cameras (the scene's frame and scale).
2. Run it again on context + targets (in time order, so the first context view stays the first view): cameras of
   the targets, in that run's scale.
3. Rescale the target translations by ``mean |t_context| (run 1) / mean |t_context| (run 2)`` (both runs put
   their world at the first camera, so only the scale differs: :func:`rescale_target_poses`).
4. Render the Gaussians of run 1 at the target cameras; PSNR / SSIM (/ LPIPS) against the true target frames.

The views: context evenly spaced over the clip (first and last included), targets evenly spaced among the rest
(:func:`context_target_split`). A video-latent decoder needs ``4k + 1`` views in both runs, so the default is 9
context and 4 targets (13 frames, the nano and release clip length), the nearest to AnySplat's 8 -> 4 that a
Wan VAE accepts; the original decoder runs on the same views.

``direction="mirror-select"`` or ``"motion"`` (the nano presets' default; for decoders trained on one turning
direction): step 1 runs on the context views or on their mirror image, the pass chosen by
:func:`vist3a.benchmark.decoders.decode` (mirror-select: both run, the one whose splats explain held-out context
views better is kept; motion: the turn read off the context views' image motion; the targets play no part in
either); step 2 goes through the same pass, so the Gaussians and every camera come from one direction, mapped back
to the clip's own world before steps 3 and 4.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)


def context_target_split(num_frames: int, num_context: int, num_targets: int) -> tuple[list[int], list[int]]:
    """``(context, targets)`` frame indices (sorted, disjoint); see the module docstring."""
    from vist3a.evaluation.views import evenly_spaced

    if num_context < 2 or num_targets < 1 or num_context + num_targets > num_frames:
        raise UserInputError(f"need --context >= 2, --targets >= 1 and context + targets <= {num_frames} frames, "
                             f"got {num_context} and {num_targets}")
    context = evenly_spaced(num_frames, num_context)
    rest = [i for i in range(num_frames) if i not in context]
    targets = [rest[i] for i in evenly_spaced(len(rest), num_targets)]
    return context, targets


def rescale_target_poses(context_w2c: torch.Tensor, joint_w2c: torch.Tensor, context_pos: list[int],
                         target_pos: list[int]) -> torch.Tensor:
    """Target cameras of the joint run in the context run's scale: ``[num_targets, 4, 4]``.

    Args:
        context_w2c: ``[C, 4, 4]`` cameras of the context-only run.
        joint_w2c: ``[C + T, 4, 4]`` cameras of the joint run.
        context_pos, target_pos: positions of the context / target views within the joint run.
    """
    ctx_norm = context_w2c[:, :3, 3].norm(dim=-1).mean()
    joint_norm = joint_w2c[context_pos, :3, 3].norm(dim=-1).mean()
    scale = ctx_norm / joint_norm.clamp_min(1e-12)
    out = joint_w2c[target_pos].clone()
    out[:, :3, 3] = out[:, :3, 3] * scale
    return out


@dataclass
class NVSConfig:
    """Settings of ``vist3a eval nvs`` (fields as the CLI options; ``size``: square frame size, None = the
    preset's ``stitching.vae_size``; ``direction``: "as-is" | "mirror-select" | "motion", None = the preset's
    default)."""

    data: str = "nano"
    preset: str = "nano"
    decoders: tuple[str, ...] = ("stitched", "original")
    num_clips: int = 8
    num_frames: int = 13
    size: int | None = None
    num_context: int = 9
    num_targets: int = 4
    lpips: bool = False
    seed: int = 0
    direction: str | None = None
    render_backend: str = "auto"
    progress: bool = True


def evaluate_nvs(cfg: NVSConfig, device: str | torch.device | None = None, *, decoders: list[Any] | None = None,
                 clips: list[Any] | None = None) -> dict[str, Any]:
    """Table 3: ``{"rows": {decoder: {"psnr", "ssim"[, "lpips"]}}, "per_clip": [...], "context", "targets",
    "direction", ...}``; with mirror-select or motion each clip also records which pass each decoder kept
    (``per_clip[i]["direction_choice"][decoder]``) and ``"mirror_taken"`` the fraction of clips per decoder."""
    from vist3a.benchmark.decoders import (
        StitchedLatentDecoder,
        check_direction_views,
        check_view_count,
        decode,
        decode_as,
        load_decoders,
        mirror_summary,
        preset_sizes,
        resolve_direction,
    )
    from vist3a.benchmark.eval_data import check_data, eval_clips
    from vist3a.evaluation.image_metrics import image_metrics, load_lpips
    from vist3a.splats import render

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    context, targets = context_target_split(cfg.num_frames, cfg.num_context, cfg.num_targets)
    joint = sorted(context + targets)
    context_pos, target_pos = [joint.index(i) for i in context], [joint.index(i) for i in targets]
    direction = resolve_direction(cfg.direction, cfg.preset)
    check_direction_views(direction, len(context), "the context")
    if clips is None:
        check_data(cfg.data)  # a bad --data fails before any model loads
    if decoders is None:
        if "stitched" in cfg.decoders:  # fail before loading anything (Wan VAEs: 4k+1 frames)
            check_view_count("stitched", StitchedLatentDecoder.frame_step, len(context), "the context")
            check_view_count("stitched", StitchedLatentDecoder.frame_step, len(joint), "context + targets")
        decoders = load_decoders(cfg.preset, cfg.decoders, device)
    for dec in decoders:
        dec.check_views(len(context), "the context")
        dec.check_views(len(joint), "context + targets")
    if clips is None:
        clips = eval_clips(cfg.data, cfg.num_clips, cfg.num_frames, cfg.size or preset_sizes(cfg.preset)[0], cfg.seed)
    lpips = load_lpips(device=device) if cfg.lpips else None
    per_clip: list[dict[str, Any]] = []
    for index, clip in enumerate(tqdm(clips, desc="eval nvs", unit="clip", disable=not cfg.progress)):
        frames = clip.frames.float().cpu()
        height, width = frames.shape[-2:]
        row: dict[str, Any] = {"clip": index, "meta": {k: clip.meta.get(k) for k in ("composition", "camera_kind")}}
        for dec in decoders:
            ctx, choice = decode(dec, frames[context], direction, backend=cfg.render_backend)
            if ctx.gaussians is None:
                raise UserInputError(f"the {dec.name} decoder gives no Gaussians to render: NVS needs an AnySplat-type "
                                     "decoder (use `vist3a eval geometry` for pointmap decoders)")
            both = decode_as(dec, frames[joint], choice)  # the context run's pass: one direction for all cameras
            if choice is not None:
                row.setdefault("direction_choice", {})[dec.name] = choice
            w2c = rescale_target_poses(ctx.w2c, both.w2c, context_pos, target_pos)
            pred = render(ctx.gaussians.to(device), w2c.to(device), both.K[target_pos].to(device), width, height,
                          backend=cfg.render_backend).colors.permute(0, 3, 1, 2).clamp(0, 1).cpu()
            values = image_metrics(pred, frames[targets], lpips)
            row[dec.name] = {k: float(v.mean()) for k, v in values.items()}
        per_clip.append(row)
    names = [d.name for d in decoders]
    rows = {n: {k: sum(r[n][k] for r in per_clip) / len(per_clip) for k in per_clip[0][n]} for n in names}
    result = {"rows": rows, "per_clip": per_clip, "context": context, "targets": targets,
              "num_clips": len(per_clip), "data": cfg.data, "preset": cfg.preset, "direction": direction}
    return mirror_summary(result, names)


def nvs_markdown(result: dict[str, Any]) -> str:
    """Table 3's layout: one row per decoder, PSNR ↑ SSIM ↑ LPIPS ↓."""
    from vist3a.benchmark.decoders import direction_line

    cols = [c for c in ("psnr", "ssim", "lpips") if c in next(iter(result["rows"].values()))]
    head = {"psnr": "PSNR ↑", "ssim": "SSIM ↑", "lpips": "LPIPS ↓"}
    lines = [f"NVS on {result['data']} ({result['num_clips']} clips, {len(result['context'])} context -> "
             f"{len(result['targets'])} targets), preset {result['preset']}", direction_line(result), "",
             "| Decoder | " + " | ".join(head[c] for c in cols) + " |", "|---|" + "---:|" * len(cols)]
    for name, row in result["rows"].items():
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.4f}" if c != "psnr" else f"{row[c]:.2f}" for c in cols)
                     + " |")
    return "\n".join(lines) + "\n"
