"""Batch throughput of ``vist3a generate --prompts-file`` on one GPU and across several (``accelerate launch``).

Each process builds the real-size models with random weights on its own GPU (``generate_e2e.build``: Wan 2.1
1.3B or 14B, Wan VAE, a UMT5-XXL-sized text encoder, the stitched AnySplat), takes the prompts
``[rank::world]`` exactly as the CLI shards a prompts file, generates every scene at the release settings and
writes it with :func:`vist3a.scene.save_scene` in a background thread while the next one generates (what the CLI
does; the written scene is the 300k-splat stand-in of ``generate_e2e``, as trained models give ~240-310k). After
one warm-up scene per process, the batch is timed between two barriers. Rank 0 prints scenes per minute in all
and per GPU and writes JSON. Run it once with one process and once with several, on the same machine:

    accelerate launch --num_processes 1 benchmarks/generate_multi_gpu.py --scenes-per-gpu 6 --out one.json
    accelerate launch --num_processes 2 benchmarks/generate_multi_gpu.py --scenes-per-gpu 6 --out two.json

``--tiny`` runs the same code on tiny models on the CPU (add ``--cpu`` to ``accelerate launch``).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark, run from anywhere
import generate_e2e as e2e


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    from accelerate import PartialState
    from accelerate.utils import gather_object

    from vist3a.scene import save_scene

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--scenes-per-gpu", type=int, default=6)
    parser.add_argument("--tiny", action="store_true", help="tiny models (CPU smoke test)")
    parser.add_argument("--generator", choices=["1.3b", "14b"], default="1.3b")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--compile", action="store_true", help="torch.compile the transformer (after warm-up)")
    parser.add_argument("--num-gaussians", type=int, default=None, help="stand-in scene splats (default 300000)")
    args = parser.parse_args(argv)

    state = PartialState(cpu=args.tiny)
    device = state.device if not args.tiny else torch.device("cpu")
    settings = e2e.release_settings(args.tiny, args.steps, args.num_gaussians)
    backend = "gsplat" if device.type == "cuda" else "torch"
    half = torch.bfloat16 if device.type == "cuda" else torch.float32
    parts = e2e.build(args.tiny, device, half, args.generator)  # transformer + text encoder created in `half`
    for key in ("transformer", "text_model", "decoder"):
        e2e.cast(parts[key], half)
    pipe = e2e.make_pipeline(parts, settings, device)
    if args.compile:
        pipe.compile()
    stand_in = e2e.stand_in_scene(settings["num_gaussians"], settings["num_frames"])

    total = args.scenes_per_gpu * state.num_processes
    prompts = [e2e.fresh_prompt() for _ in range(total + state.num_processes)]
    warmup, batch = prompts[:state.num_processes], prompts[state.num_processes:]

    def one_scene(prompt: str, seed: int, out: Path, writer: ThreadPoolExecutor):
        scene = pipe(prompt, generator=torch.Generator("cpu").manual_seed(seed), progress=False)[0]
        scene.gaussians, scene.w2c = stand_in
        return writer.submit(save_scene, scene, out, flythrough_frames=settings["flythrough_frames"],
                             render_backend=backend)

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(max_workers=1) as writer:
        start = time.perf_counter()
        one_scene(warmup[state.process_index], 0, Path(tmp) / "warmup", writer).result()
        warmup_s = time.perf_counter() - start
        if device.type == "cuda":  # peak memory of generating starts here, after the warm-up scene
            torch.cuda.reset_peak_memory_stats(device)
        state.wait_for_everyone()
        start = time.perf_counter()
        jobs = list(enumerate(batch))[state.process_index::state.num_processes]
        pending = [one_scene(text, index, Path(tmp) / f"{index:04d}", writer) for index, text in jobs]
        for job in pending:
            job.result()
        mine = time.perf_counter() - start
        state.wait_for_everyone()
        wall = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else 0.0
    per_rank = gather_object([{"rank": state.process_index, "scenes": len(jobs), "seconds": mine,
                               "warmup_s": warmup_s, "peak_gib": peak}])
    if not state.is_main_process:
        return None
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "python": platform.python_version(), "generator": args.generator,
        "compile": args.compile, "settings": settings, "num_gpus": state.num_processes, "scenes": total,
        "wall_s": wall, "scenes_per_min": 60.0 * total / wall,
        "scenes_per_min_per_gpu": 60.0 * total / wall / state.num_processes,
        "seconds_per_scene": wall * state.num_processes / total, "ranks": per_rank,
    }
    print(f"{state.num_processes} GPU(s), {total} scenes in {wall:.1f} s: {result['scenes_per_min']:.2f} scenes/min "
          f"({result['scenes_per_min_per_gpu']:.2f} per GPU, {result['seconds_per_scene']:.2f} s per scene per GPU)")
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
