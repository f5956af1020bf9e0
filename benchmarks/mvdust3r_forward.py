"""MV-DUSt3R+ at release size: forward time and peak memory, camera recovery, and the stitched decoder.

Random weights at the released sizes (``MVDp``: ViT-L encoder, 12-layer decoder, 4 paths, Gaussian head). For each
view count it times (CUDA events, after warm-up, median of ``--repeats``) and records peak memory of:

* ``model(images)`` at 224 x 224 in float32 (TF32 off) and under bf16 autocast (the heads stay float32);
* ``cameras_from_pointmaps`` on path 0 (focal + orthogonal-iteration PnP);
* the stitched decoder: a raw Wan latent of a 384 px clip (``[1, 16, (V-1)/4+1, 48, 48]``) through the paper's
  stitching layer ``conv3d_k5x7x7_o1024_s1x3x3_p2x0x0`` and the model cut at ``--layer`` (the part of the 1.3B
  pipeline after the VAE decode), bf16 autocast.

    python benchmarks/mvdust3r_forward.py --out mvdust3r_forward.json
    python benchmarks/mvdust3r_forward.py --device cpu --tiny --views 5 --repeats 1 --out /tmp/smoke.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from vist3a.recon import MVDust3r, random_tiny_mvdust3r
from vist3a.recon.pointmap_cameras import cameras_from_pointmaps
from vist3a.stitching.decoder import StitchedDecoder


def timed(fn, device: torch.device, repeats: int) -> tuple[float, float]:
    """``(median seconds, peak GiB)`` of ``fn()`` after one warm-up call."""
    fn()
    times = []
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000)
        else:
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return statistics.median(times), peak


def measure(model: MVDust3r, views: int, size: int, repeats: int, layer: str, device: torch.device) -> dict:
    """One row of the report (see the module docstring)."""
    images = torch.rand(1, views, 3, size, size, device=device) * 2 - 1
    row: dict = {"views": views, "size": size}
    with torch.no_grad():
        row["fp32_s"], row["fp32_peak_gib"] = timed(lambda: model(images), device, repeats)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            row["bf16_s"], row["bf16_peak_gib"] = timed(lambda: model(images), device, repeats)
        out = model(images)
        row["cameras_s"], _ = timed(lambda: cameras_from_pointmaps(out.points[:, 0], out.conf[:, 0]), device, repeats)
    if (views - 1) % 4 == 0:
        grid = size // model.config.patch_size
        latent_side = (grid - 1) * 3 + 7  # the paper's layer: (latent - 7) // 3 + 1 = grid
        spec = f"conv3d_k5x7x7_o{model.config.enc_embed_dim}_s1x3x3_p2x0x0"
        decoder = StitchedDecoder.from_recon(model, layer, spec).to(device).eval()
        latent = torch.randn(1, 16, (views - 1) // 4 + 1, latent_side, latent_side, device=device)
        frames = torch.rand(1, views, 3, 8 * latent_side, 8 * latent_side, device=device)
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16):
            row["stitched_decoder_bf16_s"], row["stitched_decoder_peak_gib"] = timed(
                lambda: decoder(latent, frames), device, repeats)
    print(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--views", type=int, nargs="+", default=[8, 13])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--layer", default="enc_blocks_2")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny random model (smoke test of the script)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    model = random_tiny_mvdust3r("mvdust3r-plus") if args.tiny else MVDust3r(multi_path=True)
    model = model.to(device).eval()
    rows = [measure(model, views, args.size, args.repeats, args.layer, device) for views in args.views]
    report = {
        "model": "tiny random MV-DUSt3R+" if args.tiny else "MV-DUSt3R+ (MVDp size, random weights)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
