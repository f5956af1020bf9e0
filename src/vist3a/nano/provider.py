"""The ``nano`` component provider: the weights shipped inside the package, registered in
:mod:`vist3a.components` by module path (nano is a leaf: nothing below it imports this package).

Parts: the generator's four (shipped VAE + transformer, MiniLM, the nano scheduler), ``recon`` (nano AnySplat),
``stitched`` (the stitched nano AnySplat) and ``scorer`` (the reward image-text model ``clip`` as ``nano-clip`` and
under every other reward name; the evaluation model ``clip_eval`` as ``nano-clip-eval``). A preset whose
``recon.model`` is ``"vggt"`` (``nano-vggt``) gets the nano VGGT (``vggt``) and its stitched decoder
(``stitch_vggt``) instead: the same generator, pointmaps instead of Gaussians; ``"mvdust3r"`` (``nano-mvdust3r``)
the nano MV-DUSt3R (``mvdust3r``, ``stitch_mvdust3r``): pointmaps and per-pixel Gaussians.
With ``random_fallback`` (stitching and alignment smoke runs) missing weights become models of the nano sizes with
random weights (a warning; ``sources["weights"] = "random-init"``); otherwise they are a ``UserInputError``.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

from vist3a.components import GENERATOR_PARTS, Components, LoadOptions, single_scorer
from vist3a.errors import UserInputError
from vist3a.nano.configs import NANO_SAMPLING, NANO_VIDEO
from vist3a.nano.weights import load_component_from, load_nano_component, nano_available

logger = logging.getLogger(__name__)

NOT_INSTALLED = (
    "the nano weights are not installed in this copy of vist3a (src/vist3a/nano/weights/); train and install them "
    "with `vist3a nano train all` + `vist3a nano install`, or use --preset tiny-random"
)
#: The one-line errors of a pointmap family's missing components (``{title}``: its name in docs/nano.md, ``{kind}``:
#: the preset's ``recon.model``, also the name of its stage and uncut component).
NOT_INSTALLED_POINTMAP = (
    "the nano {title} weights ({missing}) are not installed in '{root}'; make them with `vist3a nano train {kind}`, "
    "`vist3a nano train stitch-{kind}` and `vist3a nano install OUT` (docs/nano.md, Nano {title}), or use --preset "
    "nano"
)
NOT_SHIPPED_POINTMAP = (
    "the uncut nano {title} ('{kind}') does not ship with vist3a (it does not fit the 60 MB weights budget beside the "
    "shipped models): decode with the stitched one alone (e.g. `vist3a eval ... --compare none`), or train it with "
    "`vist3a nano train {kind} --out OUT` and add it with `vist3a nano install OUT --component {kind}` (docs/nano.md, "
    "Nano {title})"
)
#: The pointmap families' names in the messages above.
POINTMAP_TITLES = {"vggt": "VGGT", "mvdust3r": "MV-DUSt3R"}
#: Scorer name -> the nano component it loads.
NANO_SCORER_COMPONENTS = {"nano-clip": "clip", "nano-clip-eval": "clip_eval"}
_GENERATOR_NEEDS = {"vae": "vae", "transformer": "generator"}
#: Per 3D model family (the preset's ``recon.model``): part -> the nano component it loads.
RECON_NEEDS = {
    "anysplat": {"recon": "recon", "stitched": "stitch"},
    "vggt": {"recon": "vggt", "stitched": "stitch_vggt"},
    "mvdust3r": {"recon": "mvdust3r", "stitched": "stitch_mvdust3r"},
}


def nano_clip_scorer(
    component: str = "clip",
    device: torch.device | str = "cpu",
    *,
    source: str | os.PathLike | None = None,
    text_encoder: Any = None,
) -> Any:
    """A :class:`~vist3a.alignment.scorers.NanoClipScorer` of nano component ``component`` ("clip", "clip_eval").

    ``source``: a training run folder (``vist3a nano train clip``) or its ``model/``; None = the installed
    weights (sha256-verified). ``text_encoder``: MiniLM to share (default: a fresh one on ``device``).
    """
    from vist3a.alignment.scorers import NanoClipScorer

    if component not in NANO_SCORER_COMPONENTS.values():
        raise ValueError(f"`component` must be one of {sorted(NANO_SCORER_COMPONENTS.values())}, got {component!r}")
    model = load_component_from(None if source is None else str(source), component, device)
    if text_encoder is None:
        from vist3a.video.text import load_minilm_text_encoder

        text_encoder = load_minilm_text_encoder(max_length=NANO_VIDEO.text_max_length, device=device)
    return NanoClipScorer(model, text_encoder)


def nano_reward_scorer(text_encoder: Any, device: torch.device | str, seed: int = 0) -> tuple[Any, str]:
    """``(scorer, name)``: the shipped reward model ("nano-clip", sharing ``text_encoder``) or, when it is not
    installed, a tiny random scorer ("tiny-random") with a warning."""
    from vist3a.alignment.scorers import TinyImageTextScorer

    if nano_available(["clip"]):
        return nano_clip_scorer("clip", device, text_encoder=text_encoder), "nano-clip"
    logger.warning(
        "the nano image-text reward model ('clip') is not installed: the rewards use a tiny RANDOM scorer, so "
        "the reward terms mean nothing; train it with `vist3a nano train clip` and `vist3a nano install`"
    )
    return TinyImageTextScorer(seed=seed).to(device), "tiny-random"


def _random_part(part: str, seed: int, kind: str = "anysplat") -> Any:
    """A model of the nano size with seeded random weights (the global RNG is left untouched); ``kind``: the 3D
    model family of ``recon`` / ``stitched``."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.nano.configs import (
        nano_anysplat_config,
        nano_mvdust3r_config,
        nano_stitch_spec,
        nano_transformer_config,
        nano_vae_config,
        nano_vggt_config,
        stitch_candidates,
    )
    from vist3a.recon import VGGT, AnySplat, MVDust3r

    recon_classes = {"anysplat": (AnySplat, nano_anysplat_config), "vggt": (VGGT, nano_vggt_config),
                     "mvdust3r": (MVDust3r, nano_mvdust3r_config)}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if part == "vae":
            return AutoencoderKLWan(**nano_vae_config())
        if part == "transformer":
            return WanTransformer3DModel(**nano_transformer_config())
        cls, make_config = recon_classes[kind]
        config = make_config()
        recon = cls(**config)
        if part == "recon":
            return recon
    from vist3a.stitching.decoder import StitchedDecoder

    return StitchedDecoder.from_recon(recon, stitch_candidates(config)[0], nano_stitch_spec(config))


class NanoProvider:
    """See the module docstring."""

    def load(self, preset: dict[str, Any], parts: frozenset[str], options: LoadOptions, out: Components) -> None:
        device = options.device
        dtype = options.dtype or torch.float32
        kind = options.recon_model or preset.get("recon", {}).get("model", "anysplat")
        if kind not in RECON_NEEDS:
            raise UserInputError(f"the nano models come with a 3D model of {sorted(RECON_NEEDS)}, not {kind!r}")
        needs_of = {**_GENERATOR_NEEDS, **RECON_NEEDS[kind]}
        wanted = set(parts)
        if wanted & GENERATOR_PARTS:
            wanted |= {"vae", "transformer"}
        needs = sorted(needs_of[p] for p in wanted if p in needs_of)
        installed = nano_available(needs)
        if not installed and not options.random_fallback:
            raise UserInputError(_not_installed(needs, kind))
        if not installed:
            logger.warning("the nano weights are not installed: using nano-size models with RANDOM weights (the "
                           "results say nothing about the nano models)")
            out.sources.update(weights="random-init", seed=options.seed)
        else:
            out.sources.update(weights="nano (shipped)")

        def part(name: str, part_dtype: torch.dtype = torch.float32) -> Any:
            if installed:
                return load_nano_component(needs_of[name], device=device, dtype=part_dtype)
            return _random_part(name, options.seed, kind).to(device)

        if wanted & (GENERATOR_PARTS - {"vae"}):
            from vist3a.video.generator import WanGenerator
            from vist3a.video.sampler import make_scheduler
            from vist3a.video.text import load_minilm_text_encoder

            vae, transformer = part("vae"), part("transformer", dtype)
            text = load_minilm_text_encoder(max_length=NANO_VIDEO.text_max_length, device=device)
            scheduler = make_scheduler(NANO_SAMPLING.scheduler, shift=NANO_SAMPLING.flow_shift)
            generator = WanGenerator(vae, transformer, text, scheduler, device=device)
            out.set_generator(generator.set_offload(options.offload) if options.offload != "none" else generator)
        elif "vae" in wanted:
            out.vae = part("vae")
        if "recon" in wanted:
            out.recon = part("recon")
        if "stitched" in wanted:
            out.stitched = part("stitched").eval()
        if "scorer" in wanted:
            text = out.text_encoder
            if text is None:
                from vist3a.video.text import load_minilm_text_encoder

                text = load_minilm_text_encoder(max_length=NANO_VIDEO.text_max_length, device=device)
            scorer, out.sources["scorer"] = nano_reward_scorer(text, device, options.seed)
            out.scorer = nano_scorer_for(single_scorer(scorer, out.sources["scorer"]), text, device)


def _not_installed(needs: list[str], kind: str) -> str:
    """The one-line error for missing nano ``needs`` of a preset whose 3D model is ``kind``: how to make a pointmap
    family's components when they are the missing ones."""
    from vist3a.nano.weights import weights_dir

    missing = [name for name in needs if not nano_available([name])]
    if kind not in POINTMAP_TITLES:
        return NOT_INSTALLED
    names = {"title": POINTMAP_TITLES[kind], "kind": kind}
    pointmap = [name for name in missing if name in RECON_NEEDS[kind].values()]
    if missing == [RECON_NEEDS[kind]["recon"]]:
        return NOT_SHIPPED_POINTMAP.format(**names)
    if pointmap and len(pointmap) == len(missing):
        return NOT_INSTALLED_POINTMAP.format(missing=", ".join(pointmap), root=weights_dir(), **names)
    return NOT_INSTALLED


def nano_scorer_for(reward_for: Any, text_encoder: Any, device: torch.device) -> Any:
    """``scorer_for(name)``: ``"nano-clip-eval"`` is the held-out evaluation model (``clip_eval``, loaded on first
    use and sharing ``text_encoder``; a ``UserInputError`` when not installed), every other name the reward model."""
    judges: dict[str, Any] = {}

    def scorer_for(name: str) -> Any:
        if name != "nano-clip-eval":
            return reward_for(name)
        if name not in judges:
            if not nano_available(["clip_eval"]):
                raise UserInputError("the nano evaluation image-text model ('clip_eval') is not installed; train and "
                                     "install it with `vist3a nano train clip-eval` + `vist3a nano install`")
            judges[name] = nano_clip_scorer("clip_eval", device, text_encoder=text_encoder)
        return judges[name]

    return scorer_for
