"""The models and data an alignment run needs, resolved from a preset through :mod:`vist3a.components`.

- ``tiny-random``: tiny random Wan generator (:func:`vist3a.video.build_tiny_generator`), a stitched tiny random
  AnySplat (layer and spec from the preset file) and :class:`~vist3a.alignment.scorers.TinyImageTextScorer`;
  seconds to build on a CPU, for tests and CI. The output is meaningless.
- ``nano``: the shipped nano generator, stitched decoder and reward image-text model (``"nano-clip"``, the
  component ``clip``); missing generator / decoder weights fall back to models of the nano sizes with random
  weights (logged as a warning and recorded as ``weights: "random-init"``), a missing ``clip`` to the tiny random
  scorer (warning; recorded as ``scorer: "tiny-random"``).
- any preset with ``generator`` / ``recon`` / ``stitched`` entries (``vist3a-1.3b``, ``vist3a-14b``): the base Wan
  generator (alignment trains a fresh LoRA; the preset's released LoRA is not loaded), the released stitched
  AnySplat, and the real scorers of the reward mix (DFN5B-CLIP, HPSv2.1, PickScore).

The tiny and nano presets have a single image-text model: every scorer name of a reward mix maps to it, so
``--reward-mix paper`` keeps its structure (terms, weights, views) on them.

Flow-matching clips: ``"synthetic"`` (:class:`vist3a.data.SyntheticClips`, the nano world) or a folder of
videos / image sequences (:class:`vist3a.data.FolderClips`) with captions in ``captions.json``
(``{item name: caption}``) when present.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vist3a.alignment.scene import SceneDecoder, StitchedSceneDecoder
from vist3a.alignment.scorers import ImageTextScorer
from vist3a.components import provider_name, resolve_preset
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.json"
#: Token length of the tiny-random text encoder (camera templates + prompt fit without truncation).
TINY_TEXT_TOKENS = 64


@dataclass
class AlignComponents:
    """Everything :class:`~vist3a.alignment.trainer.AlignTrainer` uses besides its config.

    Attributes:
        generator: a :class:`~vist3a.video.WanGenerator` (VAE, transformer, text encoder); its transformer gets
            the LoRA, the rest stays frozen.
        scene_decoder: raw latents -> decoded frames + renders (:class:`~vist3a.alignment.scene.SceneDecoder`).
        scorer_for: scorer name -> :class:`~vist3a.alignment.scorers.ImageTextScorer` (used by the reward mix).
        clips: map-style dataset of captioned :class:`~vist3a.data.MultiViewClip` for the flow-matching loss
            (``None`` when that loss is off).
        num_frames, height, width: default rollout / clip geometry.
        sources: where each model came from (recorded in checkpoints).
    """

    generator: Any
    scene_decoder: SceneDecoder
    scorer_for: Callable[[str], ImageTextScorer]
    clips: Any
    num_frames: int
    height: int
    width: int
    sources: dict[str, Any] = field(default_factory=dict)


def make_clips(
    source: str | None, num_frames: int, height: int, width: int, seed: int, num_clips: int = 256
) -> Any:
    """The flow-matching dataset: ``"synthetic"`` (nano world), a folder path, or ``None`` (no clips)."""
    if source is None:
        return None
    if source == "synthetic":
        from vist3a.data import SyntheticClips

        if height != width:
            raise UserInputError(f"synthetic clips are square; got a {height}x{width} video size")
        return SyntheticClips(num_clips, num_frames=num_frames, size=height, seed=seed)
    from vist3a.data import FolderClips

    root = Path(source).expanduser()
    if not root.is_dir():
        raise UserInputError(f"--clips must be 'synthetic' or an existing folder, got {source!r}")
    captions_path = root / CAPTIONS_FILE
    captions = json.loads(captions_path.read_text(encoding="utf-8")) if captions_path.is_file() else None
    if captions is None:
        logger.warning("no %s in %s: clips train with the empty caption", CAPTIONS_FILE, root)
    if height != width:
        raise UserInputError(f"folder clips are centre-cropped to squares; got a {height}x{width} video size")
    return FolderClips(root, num_frames=num_frames, size=height, seed=seed, captions=captions)


def load_components(
    preset: str = "nano",
    *,
    device: torch.device | str = "cpu",
    seed: int = 0,
    clips: str | None = "synthetic",
    num_clips: int = 256,
    render_size: int | None = None,
    checkpoint_vae: bool = True,
    gradient_checkpointing: bool = True,
    scorer_dtype: torch.dtype | None = None,
) -> AlignComponents:
    """Resolve ``preset`` (a shipped name or a preset JSON path) to :class:`AlignComponents` on ``device``.

    ``clips``: see :func:`make_clips`. ``render_size``: passed to the scene decoder (``None``: the 3D model's
    input size). Frozen parts are put in eval mode without gradients.
    """
    from vist3a.components import PIPELINE_PARTS
    from vist3a.components import load_components as load_parts

    device = torch.device(device)
    data = resolve_preset(preset)
    defaults = data["defaults"]
    options = {"text_max_length": TINY_TEXT_TOKENS} if provider_name(data) == "tiny-random" else {}
    parts = load_parts(data, PIPELINE_PARTS | {"scorer"}, device=device, seed=seed, random_fallback=True,
                       scorer_dtype=scorer_dtype, load_lora=False, **options)
    generator, stitched, scorer_for, sources = parts.generator, parts.stitched, parts.scorer, parts.sources
    generator.to(device)
    generator.vae.requires_grad_(False)
    generator.text_encoder.model.requires_grad_(False)
    stitched = stitched.to(device).eval().requires_grad_(False)
    if gradient_checkpointing and getattr(stitched, "_supports_gradient_checkpointing", False):
        stitched.enable_gradient_checkpointing()
    scene = StitchedSceneDecoder(generator.decode, stitched, render_size=render_size, checkpoint_vae=checkpoint_vae)
    frames, height, width = int(defaults["num_frames"]), int(defaults["height"]), int(defaults["width"])
    return AlignComponents(
        generator=generator,
        scene_decoder=scene,
        scorer_for=scorer_for,
        clips=make_clips(clips, frames, height, width, seed, num_clips),
        num_frames=frames,
        height=height,
        width=width,
        sources=sources,
    )
