"""``vist3a generate --compile`` on the tiny random preset (CPU): regional compilation and the compile cache."""

from __future__ import annotations

import shutil

import pytest

from vist3a.cli.main import run as run_cli


@pytest.mark.parametrize("extra", [["--compile-scope", "blocks"], ["--no-compile-cache"]])
def test_compile_options_need_compile(tmp_path, capsys, extra):
    code = run_cli(["generate", "x", "--preset", "tiny-random", "--out", str(tmp_path / "o"), *extra])
    assert code == 2 and "go with --compile" in capsys.readouterr().err


def test_compile_scope_is_checked(tmp_path, capsys):
    code = run_cli(["generate", "x", "--preset", "tiny-random", "--out", str(tmp_path / "o"), "--compile",
                    "--compile-scope", "everything"])
    assert code == 2 and "--compile-scope must be one of blocks, model" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("cc") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_generate_with_compile_writes_scene_and_artifact(tmp_path, monkeypatch, capsys, caplog):
    """~1 min on 2 CPU cores (inductor compiles the tiny transformer block)."""
    import torch

    monkeypatch.setenv("VIST3A_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache" / "inductor"))
    out = tmp_path / "scene"
    torch._dynamo.reset()
    try:
        with caplog.at_level("INFO", logger="vist3a.video.compile_cache"):
            code = run_cli(["generate", "a red cube", "--preset", "tiny-random", "--out", str(out), "--compile",
                            "--flythrough-frames", "2"])
    finally:
        torch._dynamo.reset()
    assert code == 0 and (out / "scene.ply").is_file()
    assert "wrote" in capsys.readouterr().out
    assert list((tmp_path / "cache" / "compile-artifacts").glob("*.bin"))
    assert any("torch.compile (blocks)" in r.getMessage() for r in caplog.records)
