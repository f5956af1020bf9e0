"""Agreement and speed of the two render backends (gsplat CUDA kernels vs the PyTorch reference).

Needs a CUDA device and ``gsplat>=1.5``. For each scene size it renders random scenes from an orbit of
``--views`` cameras at ``--size`` pixels with gsplat and, up to ``--torch-max`` splats, with the PyTorch
reference; it reports the PSNR between the two colour images (target >= 40 dB), the mean absolute
alpha and depth differences, and median render times (CUDA events, after warm-up). Prints a table and
writes JSON to ``--out``::

    python benchmarks/render_backends.py --out render_backends.json
    python benchmarks/render_backends.py --out quick.json --splats 20000 100000 --views 4 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from vist3a.cameras import intrinsics_from_fov, orbit_trajectory
from vist3a.splats import Gaussians, render

logger = logging.getLogger("render_backends")


def write_report(path: Path, report: dict) -> None:
    """The benchmark's JSON report at ``path`` (folders created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")


def random_scene(num: int, sh_degree: int, seed: int, device: torch.device) -> Gaussians:
    """Splats filling a unit ball with sizes so that ``num`` of them roughly cover it (like real scenes)."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    direction = torch.nn.functional.normalize(torch.randn(num, 3, generator=gen), dim=-1)
    means = direction * torch.rand(num, 1, generator=gen).pow(1 / 3)
    typical = 1.5 * num ** (-1 / 3)  # mean spacing of num points in a unit ball
    scales = typical * torch.exp(0.5 * torch.randn(num, 3, generator=gen)) * 0.4
    return Gaussians(
        means=means,
        quats=torch.nn.functional.normalize(torch.randn(num, 4, generator=gen), dim=-1),
        scales=scales,
        opacities=torch.rand(num, generator=gen) * 0.9 + 0.05,
        sh=0.4 * torch.randn(num, (sh_degree + 1) ** 2, 3, generator=gen),
    ).to(device)


def time_render(fn, warmup: int, repeats: int) -> list[float]:
    """Milliseconds per call, measured with CUDA events after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return times


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).double().pow(2).mean().item()
    return float("inf") if mse == 0 else 10.0 * math.log10(1.0 / mse)


def run_case(num: int, args: argparse.Namespace, device: torch.device) -> dict:
    g = random_scene(num, args.sh_degree, args.seed, device)
    w2c = orbit_trajectory(torch.zeros(3), 3.0, 20.0, args.views).float().to(device)
    K = intrinsics_from_fov(50.0, args.size, args.size).to(device)
    bg = torch.tensor([0.1, 0.2, 0.3], device=device)

    def call(backend: str):
        with torch.no_grad():
            return render(g, w2c, K, args.size, args.size, backend=backend, background=bg)

    row: dict = {"splats": num, "views": args.views, "size": args.size, "sh_degree": args.sh_degree}
    start = time.perf_counter()
    fast = call("gsplat")
    torch.cuda.synchronize()
    row["gsplat_first_call_s"] = time.perf_counter() - start
    times = time_render(lambda: call("gsplat"), args.warmup, args.repeats)
    row["gsplat_ms_median"] = statistics.median(times)
    row["gsplat_ms_all"] = times
    row["alpha_mean"] = fast.alphas.mean().item()
    if num <= args.torch_max:
        torch.cuda.reset_peak_memory_stats(device)
        ref = call("torch")
        row["torch_peak_mem_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        times = time_render(lambda: call("torch"), 1, args.torch_repeats)
        row["torch_ms_median"] = statistics.median(times)
        row["torch_ms_all"] = times
        row["psnr_db"] = psnr(ref.colors, fast.colors)
        row["psnr_db_per_view_min"] = min(psnr(ref.colors[i], fast.colors[i]) for i in range(args.views))
        row["alpha_mean_abs_diff"] = (ref.alphas - fast.alphas).abs().mean().item()
        hit = (ref.alphas > 0.5) & (fast.alphas > 0.5)
        row["depth_median_abs_diff"] = (ref.depths[hit] - fast.depths[hit]).abs().median().item() if hit.any() else None
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--splats", type=int, nargs="+", default=[20_000, 100_000, 1_000_000])
    parser.add_argument("--views", type=int, default=13)
    parser.add_argument("--size", type=int, default=448)
    parser.add_argument("--sh-degree", type=int, default=3)
    parser.add_argument("--torch-max", type=int, default=100_000, help="largest scene also rendered with torch")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--torch-repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    if not torch.cuda.is_available():
        print("render_backends: needs a CUDA device (gsplat is CUDA only)", file=sys.stderr)
        return 2
    try:
        import gsplat
    except ImportError:
        print("render_backends: needs gsplat>=1.5 (pip install 'gsplat>=1.5')", file=sys.stderr)
        return 2
    device = torch.device("cuda")
    rows = []
    for num in args.splats:
        logger.info("scene with %d splats", num)
        rows.append(run_case(num, args, device))

    print(f"{args.views} views of {args.size}x{args.size}, SH degree {args.sh_degree}, {torch.cuda.get_device_name()}")
    columns = [
        ("splats", "splats", "d"),
        ("gsplat ms", "gsplat_ms_median", ".2f"),
        ("torch ms", "torch_ms_median", ".1f"),
        ("PSNR dB", "psnr_db", ".2f"),
        ("min view", "psnr_db_per_view_min", ".2f"),
        ("|dA|", "alpha_mean_abs_diff", ".2e"),
        ("|dZ|", "depth_median_abs_diff", ".2e"),
    ]
    print(" ".join(f"{title:>10}" for title, _, _ in columns))
    for row in rows:
        cells = [format(row[key], spec) if row.get(key) is not None else "-" for _, key, spec in columns]
        print(" ".join(f"{cell:>10}" for cell in cells))
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "gsplat": getattr(gsplat, "__version__", "unknown"),
        "python": platform.python_version(),
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "results": rows,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
