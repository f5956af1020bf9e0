"""``vist3a generate`` from the command line (tiny random preset, CPU)."""

from __future__ import annotations

import gc

import pytest

from vist3a.cli.main import run as run_cli
from vist3a.splats import load_ply


def test_generate_writes_scene(tmp_path, capsys):
    out = tmp_path / "scene"
    code = run_cli(["generate", "a red cube", "--preset", "tiny-random", "--out", str(out), "--flythrough-frames", "2"])
    assert code == 0 and gc.isenabled()
    assert (out / "scene.ply").is_file() and (out / "meta.json").is_file()
    assert "wrote" in capsys.readouterr().out
    # cameras.json: pixel centres at integer coordinates, so the principal point the model puts at the image
    # centre is ((W - 1) / 2, (H - 1) / 2) of the 3D model's input size recorded in meta.json
    import json

    import torch

    from vist3a.cameras import load_cameras_json

    height, width = json.loads((out / "meta.json").read_text())["image_size"]
    _, Ks, w, h = load_cameras_json(out / "cameras.json")
    assert (w, h) == (width, height)
    torch.testing.assert_close(Ks[:, 0, 2], torch.full((Ks.shape[0],), (width - 1) / 2, dtype=Ks.dtype))
    torch.testing.assert_close(Ks[:, 1, 2], torch.full((Ks.shape[0],), (height - 1) / 2, dtype=Ks.dtype))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "x", "--preset", "tiny-random", "--frames", "12"], "4k+1"),
        (["generate", "x", "--preset", "no-such-preset"], "unknown preset"),
        (["generate", "--preset", "tiny-random"], "exactly one of"),
        (["generate", "--prompts-file", "/no/such/file.txt", "--preset", "tiny-random"], "does not exist"),
        (["generate", "x", "--preset", "tiny-random", "--offload", "gpu"], "--offload must be one of"),
        (["generate", "x", "--preset", "tiny-random", "--device", "cpu", "--fp8"], "--fp8 needs a CUDA GPU"),
        (["generate", "x", "--preset", "tiny-random", "--offload", "model", "--fp8"], "--fp8 needs the transformer"),
    ],
)
def test_generate_bad_input_is_one_line(tmp_path, capsys, args, message):
    code = run_cli([*args, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and gc.isenabled()  # the start-up's collector pause ends with the error
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_prompts_file_sharding_matches_single_process(tmp_path, monkeypatch):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# comment\na red cube\n\na blue sphere\n")
    common = ["--preset", "tiny-random", "--prompts-file", str(prompts), "--flythrough-frames", "0"]
    assert run_cli(["generate", *common, "--out", str(tmp_path / "single")]) == 0
    for rank in (0, 1):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", "2")
        assert run_cli(["generate", *common, "--out", str(tmp_path / "sharded")]) == 0
    single = sorted(p.name for p in (tmp_path / "single").iterdir())
    assert single == ["0000_a-red-cube", "0001_a-blue-sphere"]
    assert sorted(p.name for p in (tmp_path / "sharded").iterdir()) == single
    for name in single:
        a = load_ply(tmp_path / "single" / name / "scene.ply")
        b = load_ply(tmp_path / "sharded" / name / "scene.ply")
        assert (a.means == b.means).all()


@pytest.mark.slow
def test_prompts_file_loads_the_pipeline_once_and_encodes_each_text_once(tmp_path, monkeypatch):
    """One process, one pipeline for the whole file; the negative prompt and a repeated prompt are encoded once
    (the text encoder's cache), not once per scene."""
    from vist3a.pipeline import Text2ScenePipeline
    from vist3a.video.text import HFTextEncoder

    loads, encoded = [], []
    load = Text2ScenePipeline.from_pretrained.__func__
    encode = HFTextEncoder._run

    def counting_load(cls, *args, **kwargs):
        loads.append(args)
        return load(cls, *args, **kwargs)

    def recording_encode(self, prompts):
        encoded.extend(prompts)
        return encode(self, prompts)

    monkeypatch.setattr(Text2ScenePipeline, "from_pretrained", classmethod(counting_load))
    monkeypatch.setattr(HFTextEncoder, "_run", recording_encode)
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red cube\na blue sphere\na red cube\n")
    args = ["generate", "--preset", "tiny-random", "--prompts-file", str(prompts), "--cfg", "5",
            "--negative-prompt", "blurry", "--flythrough-frames", "0", "--out", str(tmp_path / "batch")]
    assert run_cli(args) == 0
    assert len(list((tmp_path / "batch").iterdir())) == 3
    assert len(loads) == 1
    assert len(encoded) == len(set(encoded)) == 3  # "a red cube", "a blue sphere" (templated), "blurry"
    assert "blurry" in encoded
