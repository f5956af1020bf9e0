"""Time to first scene: ``vist3a generate`` in fresh processes, eager and with ``--compile`` (cold and warm cache).

Every ``vist3a generate`` is a new process, so what a user waits for is process start -> scene written, compilation
included. This script saves random-weight models as a pipeline folder (the builders of ``generate_e2e.py``: Wan 2.1
T2V 1.3B, the Wan VAE, a UMT5-XXL-sized text encoder and the stitched AnySplat, in bf16 on CUDA; ``--tiny``: the
tiny CPU models), then runs ``python -m vist3a.cli.main generate PROMPT --preset <folder>`` as subprocesses, one
fresh process per row, in this order:

- ``warmup``: eager; pays the one-off costs of a fresh machine (weights into the page cache, gsplat's build) so
  that they land in no row below,
- ``eager``: no compilation,
- ``compile_cold``: ``--compile`` (regional: the repeated transformer block) with an empty cache directory,
- ``compile_warm``: the same again, a second process finding the first one's cache,
- ``compile_artifact_only``: an empty cache directory holding only the portable artifact the cold run saved (what
  copying ``~/.cache/vist3a/compile-artifacts`` to a new machine gives; on CPU the C++ kernels are rebuilt),
- ``compile_model_cold`` / ``compile_model_warm``: ``--compile-scope model`` (the whole transformer graph, as
  ``--compile`` did before regional compilation), cold and warm (``--skip-model-scope`` leaves them out),
- ``fp8_cold`` / ``fp8_warm`` with ``--fp8`` (CUDA with torchao),
- ``batch_N`` with ``--batch N``: one eager process generating N prompts (``--prompts-file``): its time to the
  first scene, and its steady rate in scenes per minute from the first scene written to the last,
- ``eager_offload_text`` with ``--compare-offload``: eager with ``--offload text`` (the text encoder streamed from
  pinned CPU memory) against the ``eager`` row's ``--offload auto``, the real presets' default.

Each cache directory is a fresh ``VIST3A_CACHE`` under the work folder (``TORCHINDUCTOR_CACHE_DIR`` is removed from
the children's environment, so that inductor uses it). Per row: time to first scene (process start -> the CLI's
``wrote <folder>`` line), when the process had imported the model libraries and loaded the pipeline (the CLI's
``startup:`` lines under ``VIST3A_VERBOSITY=info``: what precedes the pipeline's own stages), process wall time, the
stages of ``meta.json``, and the compile cache's log lines (how
long the first compiled forward took, how many inductor graphs were compiled or came from the cache, whether an
artifact was loaded / saved) and, on CUDA, the most device memory in use while it ran (polled by this process). A
markdown table is printed and JSON written to ``--out``.

    python benchmarks/first_scene.py --out first.json            # GPU: real-size 1.3B, bf16
    python benchmarks/first_scene.py --out first.json --fp8      # plus fp8 rows (Ada/Hopper, torchao)
    python benchmarks/first_scene.py --tiny --out first_tiny.json  # CPU smoke test
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
PROMPT = "w11 w12 w13 w14 w15 w16 w17 w18"
FIRST_FORWARD = re.compile(r"torch\.compile \((\w+)\): first forward at new shapes took ([\d.]+) s; inductor graphs: "
                           r"(\d+) compiled, (\d+) from cache")
#: The CLI's start-up log lines (INFO, vist3a.cli.generate) -> the row keys of their arrival times.
STARTUP_LINES = {"libraries_imported_at_s": "startup: model libraries imported",
                 "pipeline_loaded_at_s": "startup: pipeline loaded"}
LOADED_IN = re.compile(r"startup: pipeline loaded in ([\d.]+) s")
LOADED = re.compile(r"compile cache: loaded (\d+) compiled artifacts")
SAVED = re.compile(r"compile cache: saved (\d+) compiled artifacts .*\(([\d.]+) MB\)")


def save_models(folder: Path, tiny: bool, steps: int, device: torch.device) -> dict[str, Any]:
    """Build ``generate_e2e.py``'s random models, cast them as its vist3a path does, save a pipeline folder."""
    sys.path.insert(0, str(HERE))
    from generate_e2e import build, cast, make_pipeline, release_settings

    settings = release_settings(tiny, steps, None)
    half = torch.bfloat16 if device.type == "cuda" else torch.float32
    parts = build(tiny, device, half)
    for key in ("transformer", "text_model", "decoder"):
        cast(parts[key], half)
    pipe = make_pipeline(parts, settings, device)
    pipe.preset["name"] = "first-scene-benchmark"
    pipe.preset["defaults"].update(dtype="bfloat16" if device.type == "cuda" else "float32",
                                   offload="auto" if device.type == "cuda" else "none")
    pipe.save_pretrained(folder)
    del pipe, parts
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return settings


def child_env(cache: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("TORCHINDUCTOR_CACHE_DIR", None)
    env.pop("VIST3A_COMPILE_CACHE", None)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONUNBUFFERED"] = "1"  # the "wrote" line must arrive when it is printed, not at exit
    env["HF_HUB_OFFLINE"] = "1"
    env["VIST3A_VERBOSITY"] = "info"  # the CLI's "startup:" lines (libraries imported, pipeline loaded)
    if cache is not None:
        env["VIST3A_CACHE"] = str(cache)
    return env


def run_generate(name: str, models: Path, out: Path, args: list[str], cache: Path | None, device: str,
                 timeout: float, log_dir: Path, prompts_file: Path | None = None) -> dict[str, Any]:
    """One fresh ``vist3a generate`` process; times the ``wrote`` lines and the exit, parses logs and meta.json."""
    prompt = ["--prompts-file", str(prompts_file)] if prompts_file else [PROMPT]
    command = [sys.executable, "-m", "vist3a.cli.main", "generate", *prompt, "--preset", str(models), "--out",
               str(out), "--device", device, "--overwrite", *args]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=child_env(cache), bufsize=1)
    used, stop = [0], threading.Event()
    if device == "cuda":  # device-wide memory in use (the child's allocations as nvidia-smi sees them)
        def poll() -> None:
            while not stop.wait(0.1):
                free, total = torch.cuda.mem_get_info()
                used[0] = max(used[0], total - free)
        threading.Thread(target=poll, daemon=True).start()
    written, lines, startup = [], [], {}
    assert process.stdout is not None
    for line in process.stdout:  # tqdm's carriage returns stay inside lines; every log line ends with \n
        lines.append(line)
        if line.startswith("wrote "):
            written.append(time.perf_counter() - start)
        for key, marker in STARTUP_LINES.items():
            if marker in line and key not in startup:
                startup[key] = time.perf_counter() - start
        if time.perf_counter() - start > timeout:
            process.kill()
            break
    code = process.wait()
    wall = time.perf_counter() - start
    stop.set()
    text = "".join(lines)
    (log_dir / f"{name}.log").write_text(text)
    row: dict[str, Any] = {"command": " ".join(["vist3a", *command[3:]]), "returncode": code,
                           "time_to_first_scene_s": written[0] if written else None, "wall_s": wall,
                           "load_average_1min": load, "scenes": len(written), **startup}
    if (loading := LOADED_IN.findall(text)):
        row["pipeline_load_s"] = float(loading[0])
    if len(written) > 1:
        row["scenes_per_min_after_first"] = 60 * (len(written) - 1) / (written[-1] - written[0])
    if used[0]:
        row["device_memory_used_max_gib"] = used[0] / 2**30
    meta = out / "meta.json"
    if meta.is_file():
        row["stages_s"] = json.loads(meta.read_text()).get("timings_s", {})
    forwards = FIRST_FORWARD.findall(text)
    if forwards:
        scope, seconds, compiled, cached = forwards[0]
        row.update(scope=scope, first_compiled_forward_s=float(seconds), graphs_compiled=int(compiled),
                   graphs_from_cache=int(cached))
    if (loaded := LOADED.findall(text)):
        row["artifacts_loaded"] = int(loaded[0])
    if (saved := SAVED.findall(text)):
        row["artifacts_saved"], row["artifact_mb"] = int(saved[0][0]), float(saved[0][1])
    if code != 0:
        row["log_tail"] = text[-3000:]
    return row


def _median(rows: list[dict[str, Any]], get) -> float | None:
    values = [v for v in map(get, rows) if v is not None]
    return statistics.median(values) if values else None


def markdown(runs: dict[str, list[dict[str, Any]]]) -> str:
    """One line per run kind: medians over the repeats (time to first scene also as min-max when repeated)."""
    def fmt(value: Any, spec: str = ".1f") -> str:
        return "–" if value is None else format(value, spec)

    head = ("| run | time to first scene (s) | libraries imported at (s) | pipeline loaded at (s) | process wall (s) | "
            "first compiled forward (s) | inductor graphs "
            "compiled / from cache | artifact | denoise (s) | VAE decode (s) | stitched decode (s) | device memory "
            "max (GiB) | scenes/min after the first | load avg |")
    lines = [head, "|---|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
    for name, rows in runs.items():
        ttfs = [r["time_to_first_scene_s"] for r in rows if r["time_to_first_scene_s"] is not None]
        spread = f" ({min(ttfs):.1f}–{max(ttfs):.1f})" if len(ttfs) > 1 else ""
        last = rows[-1]
        graphs = f"{last['graphs_compiled']} / {last['graphs_from_cache']}" if "graphs_compiled" in last else "–"
        artifact = ", ".join(filter(None, [f"loaded {last['artifacts_loaded']}" if "artifacts_loaded" in last else "",
                                           f"saved {last['artifacts_saved']}" if "artifacts_saved" in last else ""]))
        failed = sum(r["returncode"] != 0 for r in rows)
        status = f" ({failed} failed)" if failed else ""
        stages = {key: _median(rows, lambda r, key=key: r.get("stages_s", {}).get(key))
                  for key in ("denoise", "vae_decode", "stitched_decode")}
        lines.append(f"| {name}{status} | {fmt(_median(rows, lambda r: r['time_to_first_scene_s']))}{spread} | "
                     f"{fmt(_median(rows, lambda r: r.get('libraries_imported_at_s')))} | "
                     f"{fmt(_median(rows, lambda r: r.get('pipeline_loaded_at_s')))} | "
                     f"{fmt(_median(rows, lambda r: r['wall_s']))} | "
                     f"{fmt(_median(rows, lambda r: r.get('first_compiled_forward_s')))} | {graphs} | "
                     f"{artifact or '–'} | {fmt(stages['denoise'], '.2f')} | {fmt(stages['vae_decode'], '.2f')} | "
                     f"{fmt(stages['stitched_decode'], '.2f')} | "
                     f"{fmt(_median(rows, lambda r: r.get('device_memory_used_max_gib')))} | "
                     f"{fmt(_median(rows, lambda r: r.get('scenes_per_min_after_first')))} | "
                     f"{fmt(_median(rows, lambda r: r.get('load_average_1min')), '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="JSON results")
    parser.add_argument("--tiny", action="store_true", help="tiny models on the CPU (smoke test)")
    parser.add_argument("--work", type=Path, default=Path("out") / "first_scene",
                        help="models, outputs, logs and cache directories (kept; the models are reused next time; "
                        "~15 GB at real size)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 50; 8 with --tiny)")
    parser.add_argument("--fp8", action="store_true", help="also fp8_cold / fp8_warm (CUDA, torchao)")
    parser.add_argument("--skip-model-scope", action="store_true", help="leave out the whole-model compile rows")
    parser.add_argument("--skip-artifact-only", action="store_true", help="leave out compile_artifact_only")
    parser.add_argument("--compare-offload", action="store_true",
                        help="also eager_offload_text: --offload text against the eager row's auto")
    parser.add_argument("--batch", type=int, default=0, metavar="N",
                        help="also batch_N: one process generating N prompts from a --prompts-file")
    parser.add_argument("--eager-only", action="store_true", help="leave out every compile row")
    parser.add_argument("--repeats", type=int, default=1,
                        help="run the sequence (after one warm-up) this many times, fresh caches each time; the "
                        "table shows medians")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per process")
    parser.add_argument("--generate-args", default="",
                        help="more options for every vist3a generate, e.g. '--flythrough-frames 0'")
    args = parser.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() and not args.tiny else "cpu")
    steps = args.steps or (8 if args.tiny else 50)
    work = args.work.resolve()
    models = work / ("models-tiny" if args.tiny else "models-1.3b")
    if (models / "preset.json").is_file() and json.loads((models / "preset.json").read_text())["defaults"].get(
            "num_steps") == steps:
        print(f"reusing the models in {models}")
    else:
        print(f"saving random-weight models to {models} ...")
        save_models(models, args.tiny, steps, device)
    for sub in ("out", "logs", "caches"):
        shutil.rmtree(work / sub, ignore_errors=True)
        (work / sub).mkdir(parents=True)

    results: dict[str, Any] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({os.cpu_count()} cores)",
        "torch": torch.__version__, "python": platform.python_version(), "tiny": args.tiny, "steps": steps,
        "date": time.strftime("%Y-%m-%d"), "generate_args": args.generate_args, "runs": {},
    }

    def save() -> None:
        if args.out:
            args.out.write_text(json.dumps(results, indent=2))

    def run(name: str, extra: list[str], cache: Path | None, repeat: int,
            prompts_file: Path | None = None) -> dict[str, Any]:
        extra = [*extra, *shlex.split(args.generate_args)]
        print(f"{name} ({repeat + 1}/{args.repeats}): vist3a generate {' '.join(extra)} ...", flush=True)
        row = run_generate(f"{name}-{repeat}", models, work / "out" / name, extra, cache, device.type, args.timeout,
                           work / "logs", prompts_file)
        results["runs"].setdefault(name, []).append(row)
        save()
        print(f"  first scene after {row['time_to_first_scene_s']} s (exit {row['returncode']}); "
              f"compile: {row.get('first_compiled_forward_s', '-')} s, graphs compiled "
              f"{row.get('graphs_compiled', '-')}, from cache {row.get('graphs_from_cache', '-')}", flush=True)
        if row["returncode"] != 0:  # say why here: a GPU call's output may be all that comes back
            last = [line for line in row.get("log_tail", "").splitlines() if line.strip()][-1:]
            print(f"  failed: {last[0] if last else '(no output)'}", flush=True)
        return row

    run("warmup", [], None, 0)
    for repeat in range(args.repeats):
        caches = work / "caches" / str(repeat)
        run("eager", [], None, repeat)
        if args.compare_offload:
            run("eager_offload_text", ["--offload", "text"], None, repeat)
        if args.batch:
            prompts = work / "prompts.txt"
            prompts.write_text("".join(f"{PROMPT} w{i}\n" for i in range(args.batch)))
            run(f"batch_{args.batch}", [], None, repeat, prompts)
        if args.eager_only:
            continue
        run("compile_cold", ["--compile"], caches / "blocks", repeat)
        run("compile_warm", ["--compile"], caches / "blocks", repeat)
        if not args.skip_artifact_only and (caches / "blocks" / "compile-artifacts").is_dir():
            shutil.copytree(caches / "blocks" / "compile-artifacts", caches / "artifact-only" / "compile-artifacts")
            run("compile_artifact_only", ["--compile"], caches / "artifact-only", repeat)
        if not args.skip_model_scope:
            run("compile_model_cold", ["--compile", "--compile-scope", "model"], caches / "model", repeat)
            run("compile_model_warm", ["--compile", "--compile-scope", "model"], caches / "model", repeat)
        if args.fp8:
            run("fp8_cold", ["--compile", "--fp8"], caches / "fp8", repeat)
            run("fp8_warm", ["--compile", "--fp8"], caches / "fp8", repeat)
    table = markdown(results["runs"])
    results["table"] = table
    print(f"\n{results['device']}, torch {results['torch']}, {steps} steps, median of {args.repeats}\n\n{table}")
    save()
    return results


if __name__ == "__main__":
    main()
