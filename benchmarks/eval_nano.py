"""Wall time and results of the ``vist3a eval`` commands on the nano preset (the numbers of docs/evaluation.md).

Runs, each as its own ``vist3a`` process (so model loading is included, as a user sees it):
``eval text3d --suite scenebench --limit N``, ``eval nvs --compare original``, ``eval geometry`` and
``refine`` on the first generated scene; prints a table and writes JSON to ``--out``::

    python benchmarks/eval_nano.py --out eval_nano.json
    python benchmarks/eval_nano.py --out quick.json --limit 2 --clips 2 --refine-steps 5 --device cpu

nvs and geometry decode with the nano preset's ``--direction`` (mirror-select) unless ``--direction`` says otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from render_backends import write_report

SRC = Path(__file__).resolve().parents[1] / "src"


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    """Seconds and stdout of ``vist3a ARGS`` (raises on failure)."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "vist3a.cli.main", *args], env=env, capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise SystemExit(f"vist3a {' '.join(args)} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=8, help="SceneBench prompts")
    parser.add_argument("--clips", type=int, default=8, help="nano clips of nvs and geometry")
    parser.add_argument("--refine-steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--direction", default=None, choices=("as-is", "mirror-select"),
                        help="--direction of eval nvs / geometry (default: the preset's)")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    report: dict = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "device": args.device, "runs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        common = ["--device", args.device, "--quiet"]
        seconds, _ = run(["eval", "text3d", "--suite", "scenebench", "--preset", "nano", "--limit", str(args.limit),
                          "--out", str(work / "t3d"), *common], env)
        report["runs"]["text3d"] = {"seconds": seconds,
                                    "means": json.loads((work / "t3d" / "results.json").read_text())["means"]}
        for name in ("nvs", "geometry"):
            extra = ["--compare", "original"] if name == "nvs" else []
            extra += ["--direction", args.direction] if args.direction else []
            seconds, _ = run(["eval", name, "--data", "nano", "--num-clips", str(args.clips), *extra,
                              "--out", str(work / name), *common], env)
            result = json.loads((work / name / f"{name}.json").read_text())
            report["runs"][name] = {"seconds": seconds, "direction": result["direction"], "rows": result["rows"],
                                    "mirror_taken": result.get("mirror_taken")}
        scene = sorted((work / "t3d" / "scenes").iterdir())[0]
        seconds, _ = run(["refine", str(scene), "--steps", str(args.refine_steps), "--device", args.device], env)
        report["runs"]["refine"] = {"seconds": seconds, "steps": args.refine_steps,
                                    **json.loads((scene / "scene_refined.json").read_text())}
    for name, row in report["runs"].items():
        print(f"{name:9s} {row['seconds']:8.1f} s")
    write_report(args.out, report)


if __name__ == "__main__":
    main()
