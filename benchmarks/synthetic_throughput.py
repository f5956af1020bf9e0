"""Throughput of the nano world's ray-caster: clips per second for T x S x S clips, on CPU or GPU.

Per size: ``render`` times :func:`vist3a.world.render_clip` one clip at a time on pre-sampled scenes and
paths; ``batched`` times :func:`~vist3a.world.render_clips` on ``--batch`` scenes per call (the way to
use a GPU); ``item`` times whole :class:`vist3a.data.SyntheticClips` items (scene + path + render + caption)
fetched as a DataLoader does, ``--batch`` keys per ``__getitems__``; ``--workers N`` adds a CPU DataLoader
with N one-thread worker processes (on a many-core host, usually the fastest way to make training clips).
GPU timings use CUDA events around each call (after a synchronize); CPU timings use ``perf_counter``.

    python benchmarks/synthetic_throughput.py                        # CPU, 13 x 64^2 and 13 x 128^2
    python benchmarks/synthetic_throughput.py --device cuda --clips 64 --json out.json
    python benchmarks/synthetic_throughput.py --clips 4 --workers 16          # CPU worker processes
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch

from vist3a.data import SyntheticClips
from vist3a.world import (
    CAMERA_PATH_KINDS,
    make_rng,
    render_clip,
    render_clips,
    sample_camera_path,
    sample_scene,
)


def _timer(device: torch.device):
    """A function that runs ``fn()`` and returns its wall time in seconds on ``device``."""
    if device.type == "cuda":
        def run(fn):
            torch.cuda.synchronize(device)
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            return start.elapsed_time(end) / 1000.0
    else:
        def run(fn):
            t0 = time.perf_counter()
            fn()
            return time.perf_counter() - t0
    return run


def bench(device: torch.device, size: int, frames: int, clips: int, warmup: int, shadows: bool, ssaa: int,
          batch: int) -> dict:
    """Seconds per clip, mean over ``clips`` timed clips after ``warmup`` untimed ones, three ways."""
    timed = _timer(device)
    jobs = []
    for i in range(warmup + clips):
        rng = make_rng(1234, i)
        scene = sample_scene(rng)
        kind = CAMERA_PATH_KINDS[i % len(CAMERA_PATH_KINDS)]
        w2c, K = sample_camera_path(kind, frames, rng, height=size, width=size, target=scene.centre,
                                    scene_radius=scene.radius)
        jobs.append((scene, w2c.to(device), K.to(device)))
    kwargs = {"shadows": shadows, "ssaa": ssaa}
    times: dict[str, list[float]] = {"render": []}
    for i, (scene, w2c, K) in enumerate(jobs):
        t = timed(lambda s=scene, w=w2c, k=K: render_clip(s, w, k, size, size, device, **kwargs))
        if i >= warmup:
            times["render"].append(t)
    if batch > 1:  # render_clips over chunks of `batch` scenes; time per clip
        times["batched"] = []
        for start in range(0, warmup + clips, batch):
            chunk = jobs[start : start + batch]
            t = timed(lambda c=chunk: render_clips([j[0] for j in c], torch.stack([j[1] for j in c]),
                                                   torch.stack([j[2] for j in c]), size, size, device, **kwargs))
            if start >= warmup:
                times["batched"] += [t / len(chunk)] * len(chunk)
    dataset = SyntheticClips(warmup + clips, num_frames=frames, size=size, seed=99, device=device,
                             batch_render=batch > 1, render_batch_size=max(batch, 1), **kwargs)
    times["item"] = []
    step = max(batch, 1)
    for start in range(0, warmup + clips, step):
        keys = list(range(start, min(start + step, warmup + clips)))
        t = timed(lambda k=keys: dataset.__getitems__(k))
        if start >= warmup:
            times["item"] += [t / len(keys)] * len(keys)
    out = {"size": size, "frames": frames, "clips": clips, "shadows": shadows, "ssaa": ssaa, "batch": batch}
    for name, values in times.items():
        if not values:
            continue
        mean = statistics.fmean(values)
        out[f"{name}_s_per_clip"] = mean
        out[f"{name}_clips_per_s"] = 1.0 / mean
        out[f"{name}_mpix_per_s"] = frames * size * size / mean / 1e6
    return out


def _one_thread(_worker_id: int) -> None:
    torch.set_num_threads(1)


def _as_list(items):
    return items


def bench_workers(size: int, frames: int, clips: int, workers: int, shadows: bool, ssaa: int) -> float:
    """Clips per second from a DataLoader with ``workers`` CPU processes of one thread each (start-up excluded:
    the clock starts when the first clip arrives, so ``clips`` should be several times ``workers``)."""
    from torch.utils.data import DataLoader

    dataset = SyntheticClips(clips + 1, num_frames=frames, size=size, seed=7, shadows=shadows, ssaa=ssaa)
    loader = DataLoader(dataset, batch_size=1, num_workers=workers, worker_init_fn=_one_thread,
                        collate_fn=_as_list, prefetch_factor=4)
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    count = sum(1 for _ in it)
    return count / (time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... or auto")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--frames", type=int, default=13)
    parser.add_argument("--clips", type=int, default=8, help="timed clips per size")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--ssaa", type=int, default=1)
    parser.add_argument("--batch", type=int, default=None,
                        help="scenes per render_clips call (default: 32 on a GPU, 1 = one at a time on a CPU)")
    parser.add_argument("--no-shadows", action="store_true")
    parser.add_argument("--workers", type=int, default=0,
                        help="also time a CPU DataLoader with this many one-thread worker processes")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else (
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads")
    print(f"device: {device} ({where}); torch {torch.__version__}")
    batch = args.batch if args.batch is not None else (32 if device.type == "cuda" else 1)
    print(f"batch: {batch} scenes per call (the 'batched' and 'item' columns)")
    print(f"{'clip':>14} {'render clips/s':>15} {'ms/clip':>9} {'batched clips/s':>16} {'ms/clip':>9} "
          f"{'item clips/s':>13} {'ms/clip':>9}")
    results = []
    for size in args.sizes:
        r = bench(device, size, args.frames, args.clips, args.warmup, not args.no_shadows, args.ssaa, batch)
        r["device"], r["device_name"], r["threads"] = str(device), where, torch.get_num_threads()
        results.append(r)
        batched = (f"{r['batched_clips_per_s']:>16.2f} {1e3 * r['batched_s_per_clip']:>9.1f}" if batch > 1
                   else f"{'-':>16} {'-':>9}")
        print(f"{args.frames:>4} x {size:>3}^2   {r['render_clips_per_s']:>15.2f} {1e3 * r['render_s_per_clip']:>9.1f} "
              f"{batched} {r['item_clips_per_s']:>13.2f} {1e3 * r['item_s_per_clip']:>9.1f}")
        if args.workers > 0:
            r["workers"] = args.workers
            r["workers_clips_per_s"] = bench_workers(size, args.frames, max(args.clips, 8 * args.workers),
                                                     args.workers, not args.no_shadows, args.ssaa)
            print(f"{'':>14} CPU DataLoader, {args.workers} one-thread workers: {r['workers_clips_per_s']:.2f} clips/s")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return results


if __name__ == "__main__":
    main()
