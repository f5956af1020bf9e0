"""Speed of the PyTorch reference rasteriser on the CPU (the backend of CPU previews and fly-throughs).

For each case it renders ``--views`` orbit views (``vist3a.splats.orbit_cameras``, the scene framed as
``vist3a render`` does) one view per call, as ``vist3a generate`` does on a CPU, and reports the median and
total wall time per view (``perf_counter``, after one untimed warm-up view). Cases are random scenes
(``--splats``, the generator of ``render_backends.py``) at each ``--size``, plus any ``--ply`` scene, e.g.
the ``scene.ply`` of ``vist3a generate "a red cube left of a blue sphere"`` (106k splats) at 64 px, the
nano video size. Prints a table and writes JSON to ``--out``::

    python benchmarks/render_cpu.py --out render_cpu.json
    python benchmarks/render_cpu.py --out nano.json --ply scene/scene.ply --sizes 64 --splats

Only the public API is used, so the same script times another checkout:
``PYTHONPATH=/path/to/other/src python benchmarks/render_cpu.py ...``.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import torch
from render_backends import random_scene, write_report

from vist3a.splats import Gaussians, load_gaussians, orbit_cameras, render


def time_views(g: Gaussians, size: int, views: int, sh_degree: int | None) -> dict:
    """Seconds per view for ``views`` orbit views of ``size``² pixels, one view per ``render`` call."""
    w2c, K = orbit_cameras(g, views + 1, size, size)
    w2c, K = w2c.to(g.dtype), K.to(g.dtype)
    times = []
    with torch.no_grad():
        for i in range(views + 1):
            start = time.perf_counter()
            out = render(g, w2c[i : i + 1], K, size, size, backend="torch", sh_degree=sh_degree)
            if i > 0:  # the first call is a warm-up
                times.append(time.perf_counter() - start)
    return {
        "size": size,
        "views": views,
        "s_per_view_median": statistics.median(times),
        "s_per_view_mean": sum(times) / len(times),
        "s_total": sum(times),
        "alpha_mean": out.alphas.mean().item(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the results")
    parser.add_argument("--splats", type=int, nargs="*", default=[20_000, 100_000], help="random scene sizes")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], help="image sizes (square)")
    parser.add_argument("--ply", type=Path, nargs="*", default=[], help="scene files (.ply / .splat) to time")
    parser.add_argument("--views", type=int, default=16)
    parser.add_argument("--sh-degree", type=int, default=1, help="SH degree of the random scenes")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    scenes: list[tuple[str, Gaussians]] = [
        (f"random {n}", random_scene(n, args.sh_degree, args.seed, torch.device("cpu"))) for n in args.splats
    ]
    scenes += [(path.name, load_gaussians(path).to(dtype=torch.float32)) for path in args.ply]
    rows = []
    for name, g in scenes:
        for size in args.sizes:
            row = {"scene": name, "splats": len(g), **time_views(g, size, args.views, None)}
            rows.append(row)
            print(f"{name:>16} {len(g):>8} splats {size:>4} px: {row['s_per_view_median']:.3f} s/view "
                  f"(median of {args.views}), {row['s_total']:.2f} s in all", flush=True)
    report = {
        "cpu": platform.processor() or platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "args": {k: [str(p) for p in v] if k == "ply" else str(v) if isinstance(v, Path) else v
                 for k, v in vars(args).items()},
        "results": rows,
    }
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
