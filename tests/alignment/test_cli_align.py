"""``vist3a align``: help, one-line user errors (exit 2), and the tiny-random run end to end (+ resume)."""

from __future__ import annotations

import json

import pytest

from vist3a.cli.main import run


def _run(argv, capsys):
    code = run(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_help_shows_an_example(capsys):
    code, out, _ = _run(["align", "--help"], capsys)
    assert code == 0
    assert "vist3a align --preset nano --prompts" in " ".join(out.split())
    for option in ("--resume", "--checkpoint-every", "--reward-mix", "--min-steps", "--max-rollout-steps"):
        assert option in out


@pytest.mark.parametrize(
    ("content", "message"), [(None, "does not exist"), ("# nothing\n\n", "holds no prompt")]
)
def test_prompt_file_errors(tmp_path, capsys, content, message):
    path = tmp_path / "prompts.txt"
    if content is not None:
        path.write_text(content)
    code, _, err = _run(["align", "--prompts", str(path), "--out", str(tmp_path / "run"), "--device", "cpu"], capsys)
    assert code == 2
    assert err.startswith("error: --prompts") and message in err and "Traceback" not in err


def test_bad_options_are_user_errors(tmp_path, capsys):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red chair\n")
    base = ["align", "--prompts", str(prompts), "--out", str(tmp_path / "run"), "--device", "cpu"]
    code, _, err = _run([*base, "--reward-mix", "fancy"], capsys)
    assert code == 2 and "--reward-mix" in err
    code, _, err = _run([*base, "--min-steps", "5", "--max-rollout-steps", "3"], capsys)
    assert code == 2 and "max_rollout_steps" in err
    code, _, err = _run([*base, "--resume", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and "not an alignment checkpoint" in err
    (tmp_path / "run" / "checkpoint-1").mkdir(parents=True)
    (tmp_path / "run" / "checkpoint-1" / "meta.json").write_text('{"step": 1}')
    code, _, err = _run(base, capsys)
    assert code == 2 and "already holds checkpoints" in err


@pytest.mark.slow
def test_tiny_random_end_to_end_and_resume(tmp_path, capsys):
    from safetensors.torch import load_file

    from vist3a.alignment.logs import read_metrics
    from vist3a.video.lora import load_lora
    from vist3a.video.tiny import build_tiny_generator

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red chair\n# skipped\na cabin in the woods\n")
    run = tmp_path / "run"
    common = ["--prompts", str(prompts), "--out", str(run), "--device", "cpu", "--min-steps", "1",
              "--max-rollout-steps", "2", "--no-progress", "--log-images-every", "1", "--render-size", "28"]
    code, out, err = _run(["align", "--preset", "tiny-random", "--max-steps", "2", *common], capsys)
    assert code == 0, err
    ckpt = run / "checkpoint-2"
    assert "checkpoint-2" in out
    for name in ("lora/adapter_model.safetensors", "lora_ema/adapter_config.json", "training_state.pt"):
        assert (ckpt / name).is_file()
    assert json.loads((ckpt / "meta.json").read_text())["step"] == 2
    rows = read_metrics(run / "logs" / "metrics.csv")
    assert [r["step"] for r in rows] == ["0", "1"] and all(r["skipped"] == "0" for r in rows)
    assert any(k.startswith("reward/") for k in rows[0])
    assert (run / "logs" / "images" / "step-000000.png").is_file()
    transformer = build_tiny_generator(seed=0, text_max_length=64).transformer
    load_lora(transformer, ckpt / "lora_ema")  # what `vist3a generate --lora` will load

    code, out, err = _run(
        ["align", "--preset", "tiny-random", "--max-steps", "3", "--resume", str(ckpt), *common], capsys
    )
    assert code == 0, err
    assert [r["step"] for r in read_metrics(run / "logs" / "metrics.csv")] == ["0", "1", "2"]
    before, after = load_file(str(ckpt / "lora/adapter_model.safetensors")), load_file(
        str(run / "checkpoint-3" / "lora/adapter_model.safetensors")
    )
    assert before.keys() == after.keys() and any((before[k] != after[k]).any() for k in before)
