"""Throughput of the stitching stages at the real sizes (random weights): layer-search feature extraction, the
ridge fit, and a short stitched fine-tune.

Models: ``AnySplat()`` at its released configuration (VGGT-1B backbone, 24 DINO blocks, 448 px input) and the
video VAE of ``--vae`` (default ``wan2.1``: ``AutoencoderKLWan()``, 16 latent channels, 4x temporal / 8x spatial;
any family of :mod:`vist3a.video.vae_adapters` at its released architecture), both with random weights; the
stitching geometry is derived (``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1`` for Wan 2.1 at 512 px VAE input; LTX-Video's
latent is resampled). ``--num-frames`` is rounded up to the VAE's frame rule.
Clips are random frames (content does not change the cost).

Run on a CUDA machine::

    python benchmarks/stitching_throughput.py --out stitching_throughput.json

Prints clips/s of the extraction (VAE encode + DINO trunk, bf16 autocast), the ridge-fit time, steps/s and
clips/s of fine-tuning (LoRA r64, gradient checkpointing, bf16), and the peak GPU memory of each phase.
Flags shrink the work (``--num-clips``, ``--layers``, ``--train-steps``, ``--views``); ``--device cpu`` works for
a smoke run with ``--small`` (tiny models).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import tempfile
import time
from pathlib import Path

import torch

from vist3a.data import MultiViewClip


class RandomClips(torch.utils.data.Dataset):
    """``num_clips`` clips of ``num_frames`` random frames at ``size`` px (deterministic per index)."""

    def __init__(self, num_clips: int, num_frames: int, size: int) -> None:
        self.num_clips, self.frames_per_clip, self.size = num_clips, num_frames, size

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> MultiViewClip:
        generator = torch.Generator().manual_seed(index)
        return MultiViewClip(frames=torch.rand(self.frames_per_clip, 3, self.size, self.size, generator=generator))


def build_models(small: bool, device: torch.device, family: str = "wan2.1"):
    """(vae, anysplat, vae_size, recon_size): the real sizes, or the tiny ones with ``small``."""
    import diffusers

    from vist3a.recon import AnySplat, random_tiny_model
    from vist3a.video.vae_adapters import VAE_ADAPTERS, family_name, released_vae_config, tiny_vae

    torch.manual_seed(0)
    if small:
        return tiny_vae(family).to(device), random_tiny_model("anysplat").to(device), 32, 56
    with torch.device(device):
        vae = getattr(diffusers, VAE_ADAPTERS[family_name(family)].diffusers_class)(**released_vae_config(family))
        recon = AnySplat()
    return vae, recon, 512, 448


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-clips", type=int, default=6, help="clips for the extraction (first one = warm-up)")
    parser.add_argument("--num-frames", type=int, default=13, help="frames per clip (4n+1)")
    parser.add_argument("--layers", default="enc_blocks_1,enc_blocks_2,enc_blocks_3,enc_blocks_4",
                        help="candidate layers to store (all 24 take ~650 MB of disk per clip)")
    parser.add_argument("--train-steps", type=int, default=6, help="fine-tuning steps (first one = warm-up)")
    parser.add_argument("--batch-size", type=int, default=1, help="clips per fine-tuning step")
    parser.add_argument("--views", type=int, default=13, help="views per fine-tuning clip")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--small", action="store_true", help="tiny random models (smoke test)")
    parser.add_argument("--vae", default="wan2.1", help="VAE family: wan2.1, wan2.2, cogvideox, hunyuanvideo, svd, ltx")
    parser.add_argument("--no-bf16", action="store_true", help="float32 instead of bf16 autocast")
    parser.add_argument("--workdir", type=Path, default=None, help="where features and checkpoints go (temp dir)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from vist3a.stitching.adapters import adapter_for_model
    from vist3a.stitching.features import ExtractionSettings, FeatureStore, extract_features
    from vist3a.stitching.models import stitch_geometry
    from vist3a.stitching.search import SearchConfig, fit_candidates, score_layers, write_outputs
    from vist3a.stitching.train import StitchTrainConfig, build_student, train_stitched
    from vist3a.video.vae_adapters import vae_adapter

    device = torch.device(args.device)
    bf16 = device.type == "cuda" and not args.no_bf16
    vae, recon, vae_size, recon_size = build_models(args.small, device, args.vae)
    vae.eval().requires_grad_(False)
    recon.eval().requires_grad_(False)
    adapter = adapter_for_model(recon)
    video = vae_adapter(vae)
    spec, resample_hw = stitch_geometry(recon, adapter, vae, vae_size, recon_size)
    args.num_frames = video.check_num_frames(args.num_frames, round_up=True)
    args.views = video.check_num_frames(args.views, round_up=True)
    layers = tuple(args.layers.split(","))
    results: dict = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__, "small": args.small, "bf16_autocast": bf16, "spec": spec, "vae": video.describe(),
        "resample_hw": resample_hw,
        "vae_size": vae_size, "recon_size": recon_size, "num_frames": args.num_frames, "layers": list(layers),
        "recon_parameters": sum(p.numel() for p in recon.parameters()),
        "vae_parameters": sum(p.numel() for p in vae.parameters()),
    }
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="vist3a_stitch_bench_"))
    clips = RandomClips(args.num_clips, max(args.num_frames, args.views), max(vae_size, recon_size))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)

    # 1. feature extraction: one warm-up clip, then the rest timed
    settings = dict(num_frames=args.num_frames, vae_size=vae_size, recon_size=recon_size, layers=layers, shard_size=1,
                    vae=video.name)
    with autocast:
        extract_features(clips, vae, recon, adapter, workdir / "warmup", ExtractionSettings(num_clips=1, **settings),
                         progress=False)
        sync(device)
        reset_peak(device)
        start = time.perf_counter()
        extract_features(clips, vae, recon, adapter, workdir / "search",
                         ExtractionSettings(num_clips=args.num_clips, **settings), progress=True)
        sync(device)
    seconds = time.perf_counter() - start
    results["extract"] = {"clips": args.num_clips, "seconds": seconds, "clips_per_s": args.num_clips / seconds,
                          "peak_gib": peak_gib(device)}

    # 2. ridge fit + MSE of every stored layer
    config = SearchConfig(spec=spec, num_clips=args.num_clips, num_frames=args.num_frames, vae_size=vae_size,
                          recon_size=recon_size, layers=layers, holdout_fraction=0.0,
                          temporal_factor=video.temporal_factor, resample_hw=resample_hw)
    store = FeatureStore(workdir / "search")
    reset_peak(device)
    start = time.perf_counter()
    fitted = fit_candidates(store, config, list(layers), device)
    sync(device)
    fit_seconds = time.perf_counter() - start
    scores = score_layers(store, config, fitted)
    results["ridge_fit"] = {"layers": len(layers), "seconds": fit_seconds, "score_seconds":
                            time.perf_counter() - start - fit_seconds, "peak_gib": peak_gib(device),
                            "mse_fit": {k: v["mse_fit"] for k, v in scores.items()}}
    from vist3a.stitching.search import SearchReport

    best = min(scores, key=lambda n: scores[n]["mse_fit"])
    write_outputs(workdir / "search", SearchReport(scores, best, spec, "fit", args.num_clips, 0), fitted, config)

    # 3. stitched fine-tuning
    train_cfg = StitchTrainConfig(
        max_steps=args.train_steps, warmup_steps=0, batch_size=args.batch_size, view_choices=(args.views,),
        vae_size=vae_size, recon_size=recon_size, checkpoint_every=10**9, keep_checkpoints=1,
        mixed_precision="bf16" if bf16 else "no",
    )
    student = build_student(recon, workdir / "search", train_cfg)
    reset_peak(device)
    times: list[float] = []

    def on_step(step: int, row: dict) -> None:
        sync(device)
        times.append(time.perf_counter())

    start = time.perf_counter()
    result = train_stitched(student, recon, vae, clips, workdir / "run", train_cfg, device=device,
                            step_callback=on_step, progress=True)
    steady = (times[-1] - times[0]) / max(1, len(times) - 1) if len(times) > 1 else times[0] - start
    results["train"] = {
        "steps": result.step, "batch_size": args.batch_size, "views": args.views,
        "seconds_per_step": steady, "steps_per_s": 1.0 / steady, "clips_per_s": args.batch_size / steady,
        "first_step_seconds": times[0] - start, "peak_gib": peak_gib(device),
        "trainable_parameters": sum(p.numel() for p in student.trainable_parameters().values()),
        "losses": [row["loss"] for row in result.history],
    }

    for phase in ("extract", "ridge_fit", "train"):
        print(phase, json.dumps({k: v for k, v in results[phase].items() if k not in ("mse_fit", "losses")}))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
