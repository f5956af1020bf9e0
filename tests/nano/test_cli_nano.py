"""``vist3a nano``: option parsing, user errors as one line + exit 2, install/status, stage chaining."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.cli.main import main
from vist3a.cli.nano import parse_set
from vist3a.errors import UserInputError
from vist3a.nano import recipes


def _run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr()


def test_parse_set_nests_and_parses_json():
    assert parse_set(["lr=1e-4", "model.base_dim=24", "view_choices=[9, 13]", "vae=runs/vae"]) == {
        "lr": 1e-4, "model": {"base_dim": 24}, "view_choices": [9, 13], "vae": "runs/vae"}
    with pytest.raises(UserInputError, match="KEY=VALUE"):
        parse_set(["lr"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nano", "train", "unet"], "stage must be one of"),
        (["nano", "train", "vae", "--set", "stepz=3"], "not fields of the vae stage"),
        (["nano", "train", "vae", "--set", "model.width=3"], "unknown keys"),
        # the model defaults follow the family: HunyuanVideo's config has no Wan `base_dim`
        (["nano", "train", "vae", "--set", "family=hunyuanvideo", "--set", "model.base_dim=8"], "unknown keys"),
        (["nano", "train", "vae", "--set", "family=ltx"], "has no nano config"),
        (["nano", "train", "all", "--set", "stepz=3"], "not fields of any nano stage"),
        (["nano", "train", "vae", "--set", "save_dtype=int8"], "save_dtype"),
        (["nano", "train", "vggt", "--set", "model.track_config=3"], "unknown keys"),
        (["nano", "train", "stitch-vggt", "--set", "teacher=dust3r"], "`teacher` must be one of"),
        (["nano", "train", "mvdust3r", "--set", "model.enc_width=3"], "unknown keys"),
        (["nano", "train", "mvdust3r", "--set", "trunk_init=runs/recon"], "not fields of the mvdust3r stage"),
        (["nano", "export-text-encoder", "x", "--dtype", "int8"], "--dtype"),
    ],
)
def test_user_errors_are_one_line(argv, message, capsys):
    code, captured = _run(argv, capsys)
    assert code == 2
    assert captured.err.startswith("error: ") and message in captured.err
    assert "Traceback" not in captured.err


def test_install_and_status(tmp_path, capsys, tiny_transformer_config):
    from diffusers import WanTransformer3DModel

    from vist3a.nano.training import save_component

    save_component(WanTransformer3DModel(**tiny_transformer_config), tmp_path / "runs" / "generator", torch.float16)
    code, captured = _run(["nano", "install", str(tmp_path / "runs"), "--weights-dir", str(tmp_path / "w")], capsys)
    assert code == 0 and "generator:" in captured.out
    code, captured = _run(["nano", "status", "--weights-dir", str(tmp_path / "w")], capsys)
    out = captured.out
    assert "generator:" in out and "checksums ok" in out and "vae: not installed" in out
    code, captured = _run(["nano", "install", str(tmp_path / "nothing")], capsys)
    assert code == 2 and "not a folder" in captured.err


def test_later_stages_find_earlier_runs(tmp_path):
    (tmp_path / "vae" / "model").mkdir(parents=True)
    (tmp_path / "vae" / "model" / "config.json").write_text(json.dumps({"_class_name": "AutoencoderKLWan"}))
    assert recipes.resolve_inputs("generator", {}, tmp_path) == {"vae": str(tmp_path / "vae")}
    assert recipes.resolve_inputs("stitch", {"vae": "mine"}, tmp_path) == {"vae": "mine"}  # no recon run yet
    assert recipes.resolve_inputs("vae", {}, tmp_path) == {}
    (tmp_path / "vggt" / "model").mkdir(parents=True)
    (tmp_path / "vggt" / "model" / "config.json").write_text(json.dumps({"_class_name": "VGGT"}))
    assert recipes.resolve_inputs("stitch_vggt", {}, tmp_path) == {"vae": str(tmp_path / "vae"),
                                                                    "recon": str(tmp_path / "vggt")}
    assert recipes.get_stage("stitch-vggt").name == "stitch_vggt" and "vggt" not in recipes.STAGE_ORDER
    (tmp_path / "mvdust3r" / "model").mkdir(parents=True)
    (tmp_path / "mvdust3r" / "model" / "config.json").write_text(json.dumps({"_class_name": "MVDust3r"}))
    assert recipes.resolve_inputs("stitch_mvdust3r", {}, tmp_path)["recon"] == str(tmp_path / "mvdust3r")
    assert recipes.get_stage("stitch-mvdust3r").name == "stitch_mvdust3r" and "mvdust3r" not in recipes.STAGE_ORDER


def test_mvdust3r_stages_have_help(capsys):
    """`vist3a nano train --help` names the MV-DUSt3R stages; `--set` lists the mvdust3r stage's fields."""
    code, captured = _run(["nano", "train", "--help"], capsys)
    assert code == 0 and "mvdust3r" in captured.out and "stitch-mvdust3r" in captured.out
    assert {"render_weight", "conf_alpha", "model"} <= set(recipes.stage_fields("mvdust3r"))


def test_train_all_splits_the_budget(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr(recipes, "run_stage", lambda name, out, device, overrides: seen.setdefault(name, overrides))
    recipes.train_all(tmp_path, "cpu", {"recon": {"time_budget_s": 5.0}}, time_budget_s=100.0)
    assert list(seen) == list(recipes.STAGE_ORDER)
    assert seen["vae"]["time_budget_s"] == pytest.approx(100.0 * recipes.BUDGET_SHARES["vae"])
    assert seen["recon"]["time_budget_s"] == 5.0


@pytest.mark.slow
def test_cli_trains_a_tiny_vae_on_the_world(tmp_path, capsys):
    argv = ["nano", "train", "vae", "--out", str(tmp_path), "--device", "cpu", "--steps", "1", "--batch-size", "1",
            "--quiet", "--set", "size=16", "--set", "num_frames=5", "--set", "num_train_clips=2",
            "--set", "num_eval_clips=1", "--set", "model.base_dim=8", "--set", "stats_clips=2",
            "--set", "data_workers=0", "--set", "eval_reserve_s=0"]
    code, captured = _run(argv, capsys)
    assert code == 0 and captured.out.strip() == str(tmp_path / "vae")
    record = json.loads((tmp_path / "vae" / "train_config.json").read_text())
    assert record["config"]["model"]["base_dim"] == 8 and record["config"]["model"]["z_dim"] == 16
    assert (tmp_path / "vae" / "model" / "config.json").is_file()


def test_train_clip_eval_is_the_clip_eval_stage(monkeypatch, tmp_path, capsys):
    seen = {}
    monkeypatch.setattr(recipes, "run_stage", lambda name, out, device, overrides: seen.update(
        name=name, overrides=overrides) or tmp_path / "clip_eval")
    argv = ["nano", "train", "clip-eval", "--out", str(tmp_path), "--device", "cpu", "--steps", "3",
            "--text-encoder", "minilm", "--set", "canonical_prob=0.5"]
    code, captured = _run(argv, capsys)
    assert code == 0 and seen["name"] == "clip_eval"
    assert seen["overrides"] == {"steps": 3, "text_encoder": "minilm", "canonical_prob": 0.5}
    assert recipes.get_stage("clip-eval").name == "clip_eval"
    code, captured = _run(["nano", "train", "clip", "--set", "model.widths=[8]"], capsys)
    assert code == 2 and "unknown keys" in captured.err


def test_nano_eval_requires_the_evaluation_model(monkeypatch, tmp_path, capsys):
    from types import SimpleNamespace

    from vist3a.nano import evaluate as nano_eval

    pipe = SimpleNamespace(device=torch.device("cpu"), generator=SimpleNamespace(text_encoder=None))

    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "no-weights"))
    with pytest.raises(UserInputError, match="clip-eval"):
        nano_eval.evaluate_nano(nano_eval.NanoEvalConfig(num_prompts=1), tmp_path / "out", pipeline=pipe)
    code, captured = _run(["nano", "eval", "--out", str(tmp_path), "--num-prompts", "0"], capsys)
    assert code == 2 and "num_prompts" in captured.err


def test_nano_eval_passes_sampling_overrides(monkeypatch, tmp_path, capsys):
    from vist3a.nano import evaluate as nano_eval

    seen = {}

    def fake(cfg, out, device=None):
        seen["cfg"] = cfg
        return {"num_prompts": cfg.num_prompts}

    monkeypatch.setattr(nano_eval, "evaluate_nano", fake)
    code, captured = _run(["nano", "eval", "--out", str(tmp_path), "--num-prompts", "4", "--cfg", "7.5",
                           "--steps", "10", "--quiet"], capsys)
    assert code == 0 and "num_prompts: 4" in captured.out
    assert seen["cfg"].guidance_scale == 7.5 and seen["cfg"].num_steps == 10 and not seen["cfg"].progress
