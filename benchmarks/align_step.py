"""Benchmark one reward-alignment step at real size: time per step and peak GPU memory.

Builds, with random weights (no download): the Wan 2.1 T2V **1.3B** transformer (``wan_transformer_config``),
the Wan 2.1 VAE (``AutoencoderKLWan`` defaults = the released VAE config), and the stitched **AnySplat** at
the released size (``AnySplat()`` defaults, 1.19 B parameters, cut at ``enc_blocks_2`` with the release's
``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1`` stitching layer). Text embeddings are random ``[B, 512, 4096]`` tensors
(the frozen UMT5-XXL only runs without gradients, outside the measured cost that matters); the image-text
scorer is the tiny random one unless ``--scorer`` names an installed real one.

Then runs :class:`vist3a.alignment.AlignTrainer` steps exactly as training does (bf16 autocast, LoRA r8 in fp32,
gradient checkpointing of transformer and stitched decoder, checkpointed VAE decode, flow-matching loss on a
13 x 512^2 clip + a DRTune rollout with CFG, the release's reward mix on 13 renders + 1 decoded frame) for each
rollout step count in ``--rollout-steps`` and reports seconds per step and peak memory as JSON.

Usage (GPU)::

    python benchmarks/align_step.py --out align_step.json
    python benchmarks/align_step.py --rollout-steps 10,50 --repeats 3 --out align_step.json

CPU smoke run of the script itself (tiny models)::

    python benchmarks/align_step.py --tiny --device cpu --rollout-steps 2 --repeats 1 --warmup 0 --out /tmp/a.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

logger = logging.getLogger("benchmarks.align_step")

RELEASE_LAYER, RELEASE_SPEC = "enc_blocks_2", "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"
TINY_LAYER, TINY_SPEC = "enc_blocks_1", "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"


class RandomTextEncoder:
    """Stands in for UMT5-XXL: deterministic random ``[B, L, D]`` embeddings (zeros after ``tokens``) per prompt."""

    def __init__(self, hidden_size: int, max_length: int, device: torch.device, dtype: torch.dtype, tokens: int = 24):
        self._hidden, self.max_length, self.device, self.dtype = hidden_size, max_length, device, dtype
        self.tokens = min(tokens, max_length)
        self.offload_after_encode = False
        self.model = torch.nn.Identity()

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def to(self, device: torch.device | str) -> RandomTextEncoder:
        self.device = torch.device(device)
        return self

    def offload(self) -> None:
        pass

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        import zlib

        rows, masks = [], []
        for prompt in prompts:
            g = torch.Generator().manual_seed(zlib.crc32(prompt.encode("utf-8")))
            row = torch.zeros(self.max_length, self._hidden)
            row[: self.tokens] = torch.randn(self.tokens, self._hidden, generator=g) * 0.1
            mask = torch.zeros(self.max_length, dtype=torch.long)
            mask[: self.tokens] = 1
            rows.append(row)
            masks.append(mask)
        return torch.stack(rows).to(self.device, self.dtype), torch.stack(masks).to(self.device)


class RandomClips(Dataset):
    """Captioned random clips ``[T, 3, S, S]`` for the flow-matching loss."""

    def __init__(self, num_frames: int, size: int, count: int = 8) -> None:
        self.num_frames, self.size, self.count = num_frames, size, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: int):
        from vist3a.data import MultiViewClip

        g = torch.Generator().manual_seed(index)
        frames = torch.rand(self.num_frames, 3, self.size, self.size, generator=g)
        return MultiViewClip(frames=frames, caption=f"a random benchmark scene number {index}")


def cast_keeping_fp32(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Cast parameters to ``dtype`` except in the sub-modules diffusers keeps in float32 (as ``from_pretrained``)."""
    keep = set(getattr(model, "_keep_in_fp32_modules", None) or ())
    for name, module in model.named_modules():
        if keep.intersection(name.split(".")):
            continue
        for param in module.parameters(recurse=False):
            param.data = param.data.to(dtype)


def build_components(args: argparse.Namespace, device: torch.device) -> tuple[Any, dict[str, Any]]:
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.alignment import AlignComponents, StitchedSceneDecoder
    from vist3a.alignment.scorers import TinyImageTextScorer, load_scorer
    from vist3a.recon import AnySplat, random_tiny_model
    from vist3a.stitching.decoder import StitchedDecoder
    from vist3a.video.configs import wan_transformer_config
    from vist3a.video.generator import WanGenerator
    from vist3a.video.sampler import make_scheduler
    from vist3a.video.tiny import tiny_transformer_config, tiny_vae_config

    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    torch.manual_seed(0)
    if args.tiny:
        transformer_cfg, vae = tiny_transformer_config(32), AutoencoderKLWan(**tiny_vae_config())
        recon, layer, spec, text_len = random_tiny_model("anysplat"), TINY_LAYER, TINY_SPEC, 16
    else:
        transformer_cfg, vae = wan_transformer_config("1.3b"), AutoencoderKLWan()
        recon, layer, spec, text_len = AnySplat(), RELEASE_LAYER, RELEASE_SPEC, 512
    with torch.device(device):
        transformer = WanTransformer3DModel(**transformer_cfg)
    cast_keeping_fp32(transformer, dtype)
    text = RandomTextEncoder(int(transformer_cfg["text_dim"]), text_len, device, dtype)
    generator = WanGenerator(vae, transformer, text, make_scheduler("unipc", 3.0), device=device)
    generator.vae.requires_grad_(False)
    stitched = StitchedDecoder.from_recon(recon, layer, spec).to(device).eval().requires_grad_(False)
    del recon
    stitched.enable_gradient_checkpointing()
    scorer = load_scorer(args.scorer, device, dtype) if args.scorer else TinyImageTextScorer().to(device)
    scene = StitchedSceneDecoder(generator.decode, stitched, checkpoint_vae=True)
    components = AlignComponents(
        generator=generator, scene_decoder=scene, scorer_for=lambda name: scorer,
        clips=RandomClips(args.num_frames, args.size), num_frames=args.num_frames, height=args.size,
        width=args.size, sources={"benchmark": "random weights"},
    )
    info = {
        "transformer_params": sum(p.numel() for p in transformer.parameters()),
        "stitched_decoder_params": sum(p.numel() for p in stitched.parameters()),
        "vae_params": sum(p.numel() for p in vae.parameters()),
        "transformer_dtype": str(dtype),
        "scorer": args.scorer or "tiny-random",
    }
    return components, info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results.")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu (with --tiny).")
    parser.add_argument("--tiny", action="store_true", help="Tiny random models (smoke test of the script).")
    parser.add_argument("--num-frames", type=int, default=None, help="Frames (default 13; 5 with --tiny).")
    parser.add_argument("--size", type=int, default=None, help="Video side in px (default 512; 64 with --tiny).")
    parser.add_argument("--rollout-steps", default="10,50", help="Comma-separated rollout step counts to time.")
    parser.add_argument("--repeats", type=int, default=3, help="Measured steps per rollout length.")
    parser.add_argument("--warmup", type=int, default=1, help="Unmeasured steps first (per rollout length).")
    parser.add_argument("--reward-mix", default="release", help="Reward mix (every scorer name -> --scorer).")
    parser.add_argument("--scorer", default=None, help="An installed real scorer (dfn-clip, pickscore, ...).")
    parser.add_argument("--no-fm", action="store_true", help="Leave out the flow-matching loss.")
    args = parser.parse_args(argv)
    args.num_frames = args.num_frames or (5 if args.tiny else 13)
    args.size = args.size or (64 if args.tiny else 512)
    steps_list = [int(s) for s in args.rollout_steps.split(",") if s.strip()]
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: use --device cpu --tiny for a smoke run")

    from vist3a.alignment import AlignConfig, AlignTrainer, make_accelerator

    started = time.perf_counter()
    components, info = build_components(args, device)
    build_s = time.perf_counter() - started
    config = AlignConfig(
        max_steps=10**6, checkpoint_every=0, log_images_every=0, progress=False, min_rollout_steps=steps_list[0],
        max_rollout_steps=steps_list[0], full_rollout_every=0, reward_mix=args.reward_mix,
        fm_weight=0.0 if args.no_fm else 1.0, mixed_precision="bf16" if device.type == "cuda" else "no",
    )
    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "tiny": args.tiny,
        "num_frames": args.num_frames,
        "size": args.size,
        "build_seconds": build_s,
        **info,
        "config": {k: v for k, v in config.to_dict().items() if k not in ("lora_targets",)},
        "runs": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        trainer = AlignTrainer(
            config, components, ["a cosy living room with a fireplace"], tmp,
            accelerator=make_accelerator(config.mixed_precision, device),
        )
        results["lora_params"] = sum(p.numel() for p in trainer.lora_params.values())
        step = 0
        for num_steps in steps_list:
            trainer.config = dataclasses.replace(trainer.config, min_rollout_steps=num_steps,
                                                 max_rollout_steps=num_steps)
            for _ in range(args.warmup):
                trainer.train_step(step)
                step += 1
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            times, rows = [], []
            for _ in range(args.repeats):
                _sync(device)
                t0 = time.perf_counter()
                rows.append(trainer.train_step(step))
                _sync(device)
                times.append(time.perf_counter() - t0)
                step += 1
            run = {
                "rollout_steps": num_steps,
                "seconds_per_step": times,
                "mean_seconds_per_step": sum(times) / len(times) if times else None,
                "skipped": sum(int(r["skipped"]) for r in rows),
                "last_row": rows[-1] if rows else None,
            }
            if device.type == "cuda":
                run["peak_allocated_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
                run["peak_reserved_gib"] = torch.cuda.max_memory_reserved(device) / 2**30
            results["runs"].append(run)
            logger.warning("rollout %d steps: %s s/step", num_steps, run["mean_seconds_per_step"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    main()
