"""Wall time of the nano quickstart, ``vist3a generate "a red cube left of a blue sphere"``, as a user runs it.

Each run is a fresh process started as the ``vist3a`` console script starts (``from vist3a.cli.main import main;
sys.exit(main())``) with ``generate PROMPT --seed S --out <new folder>``, timed from start to exit. The median over
``--runs`` is reported with the process's CPU time (user + system, less disturbed than the wall time by other jobs
on a shared machine), the 1-minute load average at each run's end and the stage timings of its ``meta.json``.
``--compare OTHER/src`` times a second checkout too, alternating the two run by run so that both see the same load,
and checks that both wrote byte-identical ``cameras.json``, ``scene.ply``, ``frames.mp4``, ``scene.splat`` and
``flythrough.mp4``.

    python benchmarks/quickstart_cpu.py --runs 3 --out quickstart.json
    python benchmarks/quickstart_cpu.py --runs 3 --compare /path/to/old-checkout/src --out quickstart.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PROMPT = "a red cube left of a blue sphere"
COMPARED = ("cameras.json", "scene.ply", "frames.mp4", "scene.splat", "flythrough.mp4")
SRC = Path(__file__).resolve().parents[1] / "src"
#: What the installed ``vist3a`` entry point runs.
CONSOLE_SCRIPT = "import sys; from vist3a.cli.main import main; sys.argv[0] = 'vist3a'; sys.exit(main())"


def run_once(src: Path, out: Path, seed: int) -> dict[str, float]:
    """One ``vist3a generate`` in a fresh process importing vist3a from ``src``: wall and CPU seconds."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, "generate", PROMPT, "--out", str(out), "--seed", str(seed)],
                   env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    timings = json.loads((out / "meta.json").read_text()).get("timings_s", {})
    return {"wall_s": wall, "cpu_s": cpu, "load_average": os.getloadavg()[0], "timings_s": timings}


def digests(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest() for name in COMPARED}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None, help="the src/ folder of another checkout")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)

    trees = {"this": SRC, **({"compare": args.compare.resolve()} if args.compare else {})}
    runs: dict[str, list[dict[str, float]]] = {label: [] for label in trees}
    hashes: dict[str, set[tuple[tuple[str, str], ...]]] = {label: set() for label in trees}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for label, src in (trees.items() if i % 2 == 0 else reversed(trees.items())):
                out = Path(tmp) / f"{label}-{i}"
                runs[label].append(run_once(src, out, args.seed))
                hashes[label].add(tuple(digests(out).items()))
                print(f"{label} run {i + 1}: {runs[label][-1]['wall_s']:.2f} s wall, "
                      f"{runs[label][-1]['cpu_s']:.2f} s CPU, load {runs[label][-1]['load_average']:.1f}", flush=True)
    result: dict[str, Any] = {"prompt": PROMPT, "seed": args.seed, "python": sys.version.split()[0],
                              "cpus": os.cpu_count(), "load_average_after": os.getloadavg()}
    for label, src in trees.items():
        stages = sorted({stage for r in runs[label] for stage in r["timings_s"]})
        result[label] = {"src": str(src), "runs": runs[label],
                         "median_wall_s": statistics.median(r["wall_s"] for r in runs[label]),
                         "median_cpu_s": statistics.median(r["cpu_s"] for r in runs[label]),
                         "median_timings_s": {stage: statistics.median(r["timings_s"].get(stage, 0.0)
                                                                       for r in runs[label]) for stage in stages},
                         "repeatable_outputs": len(hashes[label]) == 1}
        print(f"{label}: median {result[label]['median_wall_s']:.2f} s wall, "
              f"{result[label]['median_cpu_s']:.2f} s CPU over {args.runs} runs ({src}); stages (meta.json): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result[label]["median_timings_s"].items()))
    if args.compare:
        result["identical_outputs"] = hashes["this"] == hashes["compare"] and len(hashes["this"]) == 1
        print("outputs identical:", result["identical_outputs"])
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
