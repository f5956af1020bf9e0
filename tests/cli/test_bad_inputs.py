"""Bad inputs and faults through the CLI entry point, as a new user would meet them.

Every case must end in exit code 2 with one ``error: ...`` line naming the argument, no traceback, and no file
changed anywhere in a fresh working folder (old outputs byte-identical). Interruptions use real SIGINT/SIGTERM
sent to a ``vist3a generate`` subprocess. One tiny-random scene is generated per session and copied where a
test needs an earlier output.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import vist3a
from vist3a.cli.main import main

SRC = Path(vist3a.__file__).resolve().parents[1]


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in args])
    captured = capsys.readouterr()
    return int(info.value.code or 0), captured.out, captured.err


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256 | "dir"}`` of everything under ``root``, hidden entries included."""
    out = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_line_error(code: int, err: str, names: str) -> str:
    assert code == 2, err
    assert "Traceback" not in err, err
    errors = [line for line in err.strip().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err
    assert names in errors[0], errors[0]
    return errors[0]


@pytest.fixture(scope="session")
def scene_dir(tmp_path_factory) -> Path:
    """One tiny-random scene folder (read-only use: copy it)."""
    out = tmp_path_factory.mktemp("scene") / "scene"
    with pytest.raises(SystemExit) as info:
        main(["generate", "a red cube", "--preset", "tiny-random", "--out", str(out), "--flythrough-frames", "2"])
    assert info.value.code == 0
    return out


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A fresh working folder as the current directory (relative outputs land here)."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def _garbage_lora(root: Path) -> Path:
    folder = root / "lora"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (folder / "adapter_model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not a header at all")
    return folder


def _bad_images(root: Path) -> tuple[Path, Path]:
    import imageio.v3 as iio
    import numpy as np

    corrupt = root / "corrupt"
    corrupt.mkdir()
    for i in range(2):
        iio.imwrite(corrupt / f"{i}.jpg", np.full((32, 32, 3), 40 * i, np.uint8))
    data = (corrupt / "1.jpg").read_bytes()
    (corrupt / "1.jpg").write_bytes(data[: len(data) // 2])
    text = root / "text"
    text.mkdir()
    iio.imwrite(text / "0.png", np.zeros((32, 32, 3), np.uint8))
    (text / "1.png").write_text("these are my notes, not a picture\n")
    return corrupt / "1.jpg", text / "1.png"


GEN = ["generate", "a red cube", "--preset", "tiny-random"]

# (arguments, text the error line must contain); {w} is the working folder
CASES = [
    (GEN + ["--device", "tpu9"], "--device"),
    (GEN + ["--device", "cuda:7"], "--device"),
    (GEN + ["--cfg", "nan"], "--cfg"),
    (GEN + ["--cfg", "inf"], "--cfg"),
    (GEN + ["--cfg", "-1"], "--cfg"),
    (GEN + ["--seed", "99999999999999999999"], "--seed"),
    (GEN + ["--seed", "-1"], "--seed"),
    (GEN + ["--seed", "abc"], "--seed"),
    (GEN + ["--frames", "12"], "--num-frames"),
    (GEN + ["--num-frames", "0"], "--num-frames"),
    (GEN + ["--height", "100"], "--height"),
    (GEN + ["--width", "0"], "--width"),
    (GEN + ["--steps", "0"], "--steps"),
    (GEN + ["--flow-shift", "nan"], "--flow-shift"),
    (GEN + ["--scheduler", "dpm"], "--scheduler"),
    (GEN + ["--template", "typo"], "--template"),
    (GEN + ["--direction", "sideways"], "--direction"),
    (GEN + ["--dtype", "float8"], "--dtype"),
    (GEN + ["--vae-dtype", "float8"], "--vae-dtype"),
    (GEN + ["--vae-dtype", "float16"], "--vae-dtype"),
    (GEN + ["--flythrough-frames", "-1"], "--flythrough-frames"),
    (GEN + ["--lora", "{w}/no-such-lora"], "--lora"),
    (GEN + ["--lora", "{w}/lora/adapter_model.safetensors"], "--lora"),
    (GEN + ["--lora", "{w}/lora"], "--lora"),
    (GEN + ["--out", "/proc/vist3a-test/x"], "--out"),
    (GEN + ["--out", "{w}/notes.txt/scene"], "--out"),
    (GEN + ["--out", "{w}/notes.txt"], "--out"),
    (GEN + ["--out", "{w}/user"], "--out"),
    (["generate", "--preset", "tiny-random", "--prompts-file", "{w}/missing.txt"], "--prompts-file"),
    (["generate", "--preset", "tiny-random", "--prompts-file", "{w}/user"], "--prompts-file"),
    (["generate", "x", "--preset", "tiny-random", "--no-such-flag"], "--no-such-flag"),
    (["reconstruct", "{w}/corrupt", "--weights", "random-tiny", "--out", "{w}/r"], "1.jpg"),
    (["reconstruct", "{w}/text", "--weights", "random-tiny", "--out", "{w}/r"], "1.png"),
    (["reconstruct", "{w}/text", "--weights", "random-tiny", "--out", "{w}/r", "--device", "tpu9"], "--device"),
    (["reconstruct", "{w}/text", "--weights", "random-tiny", "--out", "{w}/r", "--size", "50"], "--size"),
    (["stitch", "search", "--preset", "tiny-random", "--num-frames", "14", "--out", "{w}/s"], "--num-frames"),
    (["stitch", "search", "--preset", "tiny-random", "--rank-by", "best", "--out", "{w}/s"], "--rank-by"),
    (["stitch", "search", "--preset", "tiny-random", "--device", "tpu9", "--out", "{w}/s"], "--device"),
    (["stitch", "train", "--preset", "tiny-random", "--init", "{w}/nope", "--max-steps", "2", "--out", "{w}/t"],
     "--init"),
    (["stitch", "train", "--preset", "tiny-random", "--init", "{w}/user", "--max-steps", "2", "--out", "{w}/t"],
     "--init"),
    (["stitch", "train", "--preset", "tiny-random", "--resume", "{w}/user", "--max-steps", "2", "--out", "{w}/t"],
     "--resume"),
    (["stitch", "train", "--preset", "tiny-random", "--init", "{w}/search", "--max-steps", "2", "--out",
      "{w}/other_run"], "--out"),
    (["stitch", "train", "--preset", "tiny-random", "--init", "{w}/search", "--resume",
      "{w}/other_run/checkpoint-12", "--overwrite", "--max-steps", "20", "--out", "{w}/other_run"], "--overwrite"),
    (["align", "--preset", "tiny-random", "--prompts-file", "{w}/prompts.txt", "--out", "{w}/other_run"], "--out"),
    (["align", "--preset", "tiny-random", "--prompts", "{w}/missing.txt", "--out", "{w}/a"], "--prompts"),
    (["align", "--preset", "tiny-random", "--prompts-file", "{w}/prompts.txt", "--out", "{w}/a", "--device",
      "tpu9"], "--device"),
    (["nano", "train", "vae", "--out", "{w}/nano_runs"], "--out"),
    (GEN + ["--out", "{w}", "--overwrite"], "--overwrite"),
    (GEN + ["--out", ".", "--overwrite"], "--overwrite"),
    (["stitch", "train", "--preset", "tiny-random", "--init", "{w}/search", "--max-steps", "2", "--out", "..",
      "--overwrite"], "--overwrite"),
    (["nano", "train", "vae", "--out", "{w}/fresh", "--device", "tpu9"], "--device"),
    (["nano", "train", "vae", "--out", "{w}/fresh", "--steps", "0"], "--steps"),
    (["nano", "eval", "--out", "{w}/e", "--cfg", "nan"], "--cfg"),
    (["nano", "eval", "--out", "{w}/e", "--device", "tpu9"], "--device"),
    (["eval", "text3d", "--out", "{w}/e", "--device", "tpu9"], "--device"),
    (["eval", "text3d", "--out", "{w}/notes.txt"], "--out"),
    (["eval", "text3d", "--out", "{w}/e", "--seed", "-1"], "--seed"),
    (["eval", "text3d", "--out", "{w}/e", "--guidance-scale", "nan"], "--cfg"),
    (["eval", "text3d", "--out", "{w}/e", "--judge-prompt", "{w}/notes.txt"], "--judge-prompt"),
    (["eval", "text3d", "--out", "{w}/e", "--dpg-prompt", "{w}/missing.txt"], "--dpg-prompt"),
    (["eval", "nvs", "--device", "tpu9"], "--device"),
    (["eval", "nvs", "--direction", "sideways", "--out", "{w}/n"], "--direction"),
    (["eval", "geometry", "--direction", "mirror", "--out", "{w}/g"], "--direction"),
    (["eval", "geometry", "--num-frames", "14"], "--num-frames"),
    (["eval", "geometry", "--out", "{w}/notes.txt"], "--out"),
    (["refine", "{w}/user", "--device", "tpu9"], "--device"),
    (["refine", "{w}/user", "--steps", "0"], "--steps"),
    (["refine", "{w}/user", "--out", "{w}/user"], "--out"),
    (["refine", "{w}/user", "--out", "{w}/notes.txt", "--overwrite"], "--out"),
]


def _populate(work: Path) -> None:
    """What the corpus points at: a user's file and folder, another run's folders, bad LoRA and images."""
    (work / "notes.txt").write_text("my notes\n")
    (work / "user").mkdir()
    (work / "user" / "thesis.tex").write_text("\\section{Intro}\n")
    run = work / "other_run"
    (run / "checkpoint-12").mkdir(parents=True)
    (run / "checkpoint-12" / "meta.json").write_text('{"step": 12}')
    (run / "train_config.json").write_text("{}")
    (work / "nano_runs" / "vae").mkdir(parents=True)
    (work / "nano_runs" / "vae" / "train_config.json").write_text("{}")
    (work / "prompts.txt").write_text("a red cube\n")
    (work / "search").mkdir()
    (work / "search" / "report.json").write_text("{}")
    _garbage_lora(work)
    _bad_images(work)


@pytest.mark.parametrize(("args", "names"), CASES, ids=[" ".join(a[:1] + a[-2:]) for a, _ in CASES])
def test_bad_input_is_one_line_and_changes_nothing(work, capsys, args, names):
    if "cuda:7" in args and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    if "/proc/vist3a-test/x" in args and not Path("/proc").is_dir():
        pytest.skip("no /proc here")
    _populate(work)
    before = snapshot(work)
    code, _, err = run_cli([a.replace("{w}", str(work)) for a in args], capsys)
    assert_one_line_error(code, err, names)
    assert snapshot(work) == before


def test_device_cuda_without_cuda(work, capsys):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    code, _, err = run_cli(GEN + ["--device", "cuda", "--out", "o"], capsys)
    assert "no CUDA device" in assert_one_line_error(code, err, "--device")
    assert not any(work.iterdir())


@pytest.mark.parametrize("frames", [129, 257, 1025, 10001])
def test_frames_beyond_the_rope_table(work, capsys, frames):
    code, _, err = run_cli(GEN + ["--frames", frames, "--out", "o"], capsys)
    line = assert_one_line_error(code, err, "--num-frames")
    assert "at most 125" in line  # tiny-random: 32 RoPE rows, temporal factor 4, patch 1 -> 4 * 31 + 1
    assert not any(work.iterdir())


@pytest.mark.parametrize("height", [528, 2048, 100000])
def test_height_beyond_the_rope_table(work, capsys, height):
    code, _, err = run_cli(GEN + ["--height", height, "--out", "o"], capsys)
    assert "at most 512" in assert_one_line_error(code, err, "--height")  # 32 rows x patch 2 x factor 8


def test_rope_limit_matches_diffusers():
    """The stated limits are exactly where diffusers' Wan rotary table stops working (independent check)."""
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("tiny-random", device="cpu")
    limits = pipe.max_sizes()
    rope = pipe.generator.transformer.rope
    temporal, spatial = pipe.generator.scale_factors
    channels = pipe.generator.transformer.config.in_channels

    def latent(frames: int, height: int) -> torch.Tensor:
        return torch.zeros(1, channels, (frames - 1) // temporal + 1, height // spatial, 16 // spatial)

    rope(latent(limits["num_frames"], 16))
    rope(latent(17, limits["height"]))
    with pytest.raises(RuntimeError):
        rope(latent(limits["num_frames"] + temporal, 16))
    with pytest.raises(RuntimeError):
        rope(latent(17, limits["height"] + 16))


# ------------------------------------------------------------------------------------------------ outputs
def test_existing_file_is_refused_then_replaced_with_overwrite(work, capsys):
    notes = work / "notes.txt"
    notes.write_text("my notes\n")
    code, _, err = run_cli(GEN + ["--out", notes, "--flythrough-frames", "0"], capsys)
    assert_one_line_error(code, err, "--overwrite")
    assert notes.read_text() == "my notes\n" and sorted(p.name for p in work.iterdir()) == ["notes.txt"]
    code, _, err = run_cli(GEN + ["--out", notes, "--flythrough-frames", "0", "--overwrite"], capsys)
    assert code == 0, err
    assert (notes / "meta.json").is_file()
    assert sorted(p.name for p in work.iterdir()) == ["notes.txt"]  # no hidden .notes.txt.old left


def test_scene_folder_vist3a_wrote_is_replaced(work, capsys, scene_dir):
    target = work / "scene"
    shutil.copytree(scene_dir, target)
    (target / "meta.json").write_text('{"prompt": "old"}')
    code, _, err = run_cli(GEN + ["--out", target, "--flythrough-frames", "0"], capsys)
    assert code == 0, err
    assert "a red cube" in (target / "meta.json").read_text()
    assert sorted(p.name for p in work.iterdir()) == ["scene"]


def test_default_names_are_unique(work, capsys):
    from vist3a.cli.generate import default_out

    prompts = ["a red cube", "A red cube!", "🎲🎲", "一个红色的立方体", "x" * 48 + " one", "x" * 48 + " two"]
    names = [default_out(p) for p in prompts]
    assert len(set(names)) == len(prompts)
    assert all(n.parent == Path("outputs") for n in names)
    assert default_out("a red cube") == default_out("a red cube")  # the same prompt finds its folder again
    for prompt in prompts[2:4]:
        code, _, err = run_cli(["generate", prompt, "--preset", "tiny-random", "--flythrough-frames", "0"], capsys)
        assert code == 0, err
    assert sorted(p.name for p in (work / "outputs").iterdir()) == sorted(n.name for n in names[2:4])


def test_second_writer_of_one_out_fails(work, capsys):
    from vist3a.io_utils import output_lock

    with output_lock(work / "scene"):
        code, _, err = run_cli(GEN + ["--out", work / "scene", "--flythrough-frames", "0"], capsys)
        assert "another vist3a process" in assert_one_line_error(code, err, "--out")
    assert not any(p for p in work.iterdir())  # the lock file goes with its holder
    with output_lock(work / "scene"):  # and can be taken again
        pass


def _dead_pid() -> int:
    """The id of a process that has exited."""
    return int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)


def test_stale_temporaries_are_cleaned_and_nothing_else(work):
    from vist3a.io_utils import _HOST, atomic_dir

    dead_pid = _dead_pid()
    stale = work / f".scene.vist3a-{_HOST}-{dead_pid}-abc123.tmp"
    stale.mkdir()
    (stale / "scene.ply").write_bytes(b"x" * 1000)
    (work / f".scene.vist3a-{_HOST}-{dead_pid}-def456.tmp.ply").write_bytes(b"x")
    (work / f".checkpoint-12.vist3a-{_HOST}-{dead_pid}-ghi789.tmp").mkdir()  # a killed run's checkpoint
    legacy = work / ".scene.ab12cd34.tmp"
    legacy.mkdir()
    os.utime(legacy, (time.time() - 3 * 86400, time.time() - 3 * 86400))
    live = work / f".scene.vist3a-{_HOST}-{os.getpid()}-live99.tmp"
    live.mkdir()
    other_host = work / f".scene.vist3a-otherhost-{dead_pid}-abc123.tmp"  # its pid means nothing here
    other_host.mkdir()
    fresh_legacy = work / ".scene.zz12cd34.tmp"  # may belong to an older vist3a that is still writing
    fresh_legacy.mkdir()
    keep = [work / ".scene.notes", work / "scene.tmp", work / ".scenery.vist3a-1-x.tmp"]
    for path in keep:
        path.write_text("mine")
    keep += [other_host, fresh_legacy]
    with atomic_dir(work / "scene") as tmp:
        (tmp / "meta.json").write_text("{}")
    names = sorted(p.name for p in work.iterdir())
    assert names == sorted(["scene", live.name, *(p.name for p in keep)])


def test_interrupted_swap_is_rolled_back(work):
    """A process killed between the two renames of a replacement leaves ``.<name>.old``; the next write to the
    same target puts it back first, so the old output is never lost."""
    from vist3a.io_utils import _HOST, atomic_dir

    old = work / ".scene.old"
    old.mkdir()
    (old / "meta.json").write_text("old")
    (work / ".scene.old.pid").write_text(f"{_HOST}:{_dead_pid()}")
    with pytest.raises(RuntimeError), atomic_dir(work / "scene"):
        raise RuntimeError("the new write fails too")
    assert (work / "scene" / "meta.json").read_text() == "old"
    assert sorted(p.name for p in work.iterdir()) == ["scene"]


def test_write_after_interrupt_is_dropped(work):
    from vist3a.errors import Interrupted
    from vist3a.io_utils import INTERRUPTED, atomic_dir, atomic_path

    (work / "scene").mkdir()
    (work / "scene" / "meta.json").write_text("old")
    INTERRUPTED.set()
    try:
        with pytest.raises(Interrupted), atomic_dir(work / "scene") as tmp:
            (tmp / "meta.json").write_text("new")
        with pytest.raises(Interrupted), atomic_path(work / "a.txt") as tmp:
            tmp.write_text("new")
    finally:
        INTERRUPTED.clear()
    assert (work / "scene" / "meta.json").read_text() == "old"
    assert sorted(p.name for p in work.iterdir()) == ["scene"]


# ------------------------------------------------------------------------------------------------ run folders
@pytest.fixture(scope="session")
def search_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("search") / "search"
    with pytest.raises(SystemExit) as info:
        main(["stitch", "search", "--preset", "tiny-random", "--num-clips", "4", "--out", str(out)])
    assert info.value.code == 0
    return out


def test_stitch_train_checks_layer_before_rendering_and_sizes_the_pool(work, capsys, search_dir, monkeypatch):
    import vist3a.stitching.models as models

    calls = []

    def fake_clips(data, num_clips, *args, **kwargs):
        calls.append(num_clips)
        raise SystemExit(0)  # stop here: only the pool size matters

    monkeypatch.setattr(models, "resolve_clips", fake_clips)
    base = ["stitch", "train", "--preset", "tiny-random", "--init", search_dir, "--max-steps", "2", "--device", "cpu"]
    code, _, err = run_cli(base + ["--layer", "enc_blocks_99", "--out", work / "a"], capsys)
    assert_one_line_error(code, err, "--layer")
    assert calls == []  # refused before any clip was rendered
    code, _, err = run_cli(base + ["--out", work / "b"], capsys)
    assert code == 0 and calls == [2]  # 2 steps x 1 clip per step on a CPU, not 256 clips
    assert not (work / "a").exists()


def test_stitch_train_overwrite_starts_afresh(work, capsys, search_dir):
    run = work / "run"
    (run / "checkpoint-12").mkdir(parents=True)
    (run / "checkpoint-12" / "meta.json").write_text('{"step": 12}')
    (run / "train_config.json").write_text("{}")
    args = ["stitch", "train", "--preset", "tiny-random", "--init", search_dir, "--max-steps", "1", "--device", "cpu",
            "--out", run, "--overwrite"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert not (run / "checkpoint-12").exists() and (run / "checkpoint-1").is_dir()


def test_overwrite_never_deletes_a_user_folder(work, capsys, search_dir):
    (work / "user").mkdir()
    (work / "user" / "thesis.tex").write_text("mine")
    args = ["stitch", "train", "--preset", "tiny-random", "--init", search_dir, "--max-steps", "1", "--out",
            work / "user", "--overwrite"]
    code, _, err = run_cli(args, capsys)
    assert_one_line_error(code, err, "--overwrite")
    assert (work / "user" / "thesis.tex").read_text() == "mine"


# ------------------------------------------------------------------------------------------------ silent garbage
def test_nano_warns_about_sizes_and_unknown_words(work, capsys, caplog):
    # --frames 257 stops the run right after the warnings (the RoPE check), so nothing is generated
    code, _, err = run_cli(["generate", "a cozy cabin in the snow", "--height", "128", "--width", "128",
                            "--frames", "257", "--out", "o"], capsys)
    assert code == 2
    err += caplog.text  # under pytest the warnings go to its log capture
    assert "trained at 64x64 px" in err and "128x128" in err
    assert "'cozy'" in err and "'cabin'" in err and "'snow'" in err and "vist3a nano vocab" in err
    assert "'the'" not in err and "'in'" not in err  # words the nano captions use are not reported


def test_known_nano_prompt_gets_no_word_warning():
    from vist3a.cli.nano import unknown_words

    assert unknown_words("a small red cube left of a large shiny blue sphere") == []
    assert unknown_words("green cylinders behind a zebra") == ["zebra"]  # plural shapes are known
    assert unknown_words("a cozy cabin") == ["cozy", "cabin"]


def test_nano_vocab_command(capsys):
    code, out, err = run_cli(["nano", "vocab"], capsys)
    assert code == 0, err
    assert "shapes:" in out and "sphere" in out and "left of" in out


def test_offline_message_names_only_what_is_set(monkeypatch):
    from vist3a.hub import offline_hint

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    assert "HF_HUB_OFFLINE" not in offline_hint(None)
    assert "--offline" in offline_hint(True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert "unset HF_HUB_OFFLINE" in offline_hint(None)


def test_offline_cli_message(work, capsys, monkeypatch):
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "model_index.json"), str):
        pytest.skip("the release weights are cached here: the command would load them")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    code, _, err = run_cli(["generate", "a cabin", "--preset", "vist3a-1.3b", "--offline", "--device", "cpu",
                            "--out", "o"], capsys)
    line = assert_one_line_error(code, err, "--offline")
    assert "HF_HUB_OFFLINE" not in line and "Wan-AI/Wan2.1-T2V-1.3B-Diffusers" in line
    assert not any(work.iterdir())


# ------------------------------------------------------------------------------------------------ help
@pytest.mark.parametrize("args", [[], ["stitch"], ["nano"], ["info"]])
def test_no_arguments_show_help(capsys, args):
    code, out, err = run_cli(args, capsys)
    assert code == 2
    assert "Usage: vist3a" in out + err and "error:" not in out + err


def test_help_is_plain_and_keeps_examples(capsys):
    code, out, _ = run_cli(["generate", "--help"], capsys)
    assert code == 0
    assert "<bool>" not in out
    assert 'vist3a generate "a red cube left of a blue sphere" --out scene/' in out
    lines = out.splitlines()
    example = next(line for line in lines if "--prompts-file prompts.txt --out runs/batch/ --preset" in line)
    assert example.strip().endswith("vist3a-1.3b")  # one example, one line
    assert "64x64 px" in out and "vist3a nano vocab" in out
    for flag in ("--guidance-scale", "--num-inference-steps", "--num-frames", "--overwrite"):
        assert flag in out


# ------------------------------------------------------------------------------------------------ signals
def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
@pytest.mark.parametrize("moment", ["loading", "saving"])
def test_signal_keeps_the_old_scene(work, scene_dir, sig, moment):
    """A real signal to ``vist3a generate`` while it loads, and while its writer thread saves the new scene:
    the old scene stays byte-identical, no temporary is left, one 'interrupted' line, exit 128 + signal."""
    target = work / "scene"
    shutil.copytree(scene_dir, target)
    before = snapshot(work)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vist3a.cli.main", "generate", "a blue sphere", "--preset", "tiny-random", "--out",
         str(target), "--flythrough-frames", "24"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        if moment == "loading":  # the lock exists once every input check passed, before the models load
            seen = _wait_for(lambda: (work / ".scene.vist3a.lock").exists(), 60)
        else:  # the writer thread has started the new folder beside the old one
            seen = _wait_for(lambda: any(p.name.startswith(".scene.vist3a-") and p.name.endswith(".tmp")
                                         for p in work.iterdir()), 90)
        assert seen, "the moment to interrupt never came"
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    assert f"interrupted ({signal.Signals(sig).name})" in err
    assert snapshot(work) == before


@pytest.mark.slow
def test_sigterm_during_training_keeps_complete_checkpoints(work, search_dir):
    """SIGTERM to ``stitch train`` while it writes a checkpoint every step: exit 143 with one 'interrupted' line,
    every checkpoint folder complete (resumable), no temporary left behind."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    run = work / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "vist3a.cli.main", "stitch", "train", "--preset", "tiny-random", "--init",
         str(search_dir), "--max-steps", "1000", "--checkpoint-every", "1", "--vae-size", "16", "--recon-size", "28",
         "--num-clips", "2", "--lora-rank", "2", "--device", "cpu", "--out", str(run)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert _wait_for(lambda: (run / "checkpoint-3").is_dir(), 120), "training never reached step 3"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "interrupted (SIGTERM)" in err
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]
    checkpoints = sorted(p for p in run.iterdir() if p.name.startswith("checkpoint-"))
    assert checkpoints and all((p / "meta.json").is_file() for p in checkpoints)
