"""Regional compilation and the persistent compile caches (:mod:`vist3a.video.compile_cache`), on CPU."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
import torch

from vist3a.video import compile_cache as cc

needs_compiler = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("g++") is None,
                                    reason="torch.compile on CPU needs a C++ compiler")


# ----------------------------------------------------------------------------------------------- locations
def test_cache_root_resolution():
    home = Path("~").expanduser()
    assert cc.cache_root({}) == home / ".cache" / "vist3a"
    assert cc.cache_root({"XDG_CACHE_HOME": "/xdg"}) == Path("/xdg/vist3a")
    assert cc.cache_root({"XDG_CACHE_HOME": "relative/dir"}) == home / ".cache" / "vist3a"  # XDG: ignore relative
    assert cc.cache_root({"XDG_CACHE_HOME": ""}) == home / ".cache" / "vist3a"
    assert cc.cache_root({"VIST3A_CACHE": "/mine", "XDG_CACHE_HOME": "/xdg"}) == Path("/mine")
    assert cc.cache_root({"VIST3A_CACHE": "~/c"}) == home / "c"
    assert cc.inductor_dir({"VIST3A_CACHE": "/mine"}) == Path("/mine/inductor")
    assert cc.artifacts_dir({"VIST3A_CACHE": "/mine"}) == Path("/mine/compile-artifacts")


def test_cache_switch():
    assert cc.cache_enabled(None, {}) and cc.cache_enabled(True, {"VIST3A_COMPILE_CACHE": "0"})
    for off in ("0", "false", "OFF", "no"):
        assert not cc.cache_enabled(None, {"VIST3A_COMPILE_CACHE": off})
    assert not cc.cache_enabled(False, {})


def test_inductor_dir_is_set_only_when_the_user_did_not(tmp_path):
    env = {"VIST3A_CACHE": str(tmp_path / "v")}
    directory, ours = cc.use_persistent_inductor_cache(env)
    assert ours and directory == tmp_path / "v" / "inductor" and directory.is_dir()
    assert env["TORCHINDUCTOR_CACHE_DIR"] == str(directory)
    user = {"VIST3A_CACHE": str(tmp_path / "v"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "user")}
    assert cc.use_persistent_inductor_cache(user) == (tmp_path / "user", False)
    assert user["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "user")
    default = cc._torch_default_inductor_dir()
    if default is not None:  # torch writes its temp default into the variable itself: that counts as unset
        env = {"VIST3A_CACHE": str(tmp_path / "v"), "TORCHINDUCTOR_CACHE_DIR": default}
        assert cc.use_persistent_inductor_cache(env) == (tmp_path / "v" / "inductor", True)


def test_key_ignores_private_config_entries_and_follows_shapes():
    """diffusers' ``_use_default_values`` lists names in set order (differs per process): not part of the key."""

    class Model(torch.nn.Module):
        def __init__(self, private):
            super().__init__()
            self.config = {"num_layers": 2, "_use_default_values": private}
            self.linear = torch.nn.Linear(2, 2)

    a, b = cc._model_description(Model(["eps", "qk_norm"])), cc._model_description(Model(["qk_norm", "eps"]))
    assert a == b
    small = cc._inputs_description((), {"hidden_states": torch.zeros(1, 4), "flag": True})
    large = cc._inputs_description((), {"hidden_states": torch.zeros(2, 4), "flag": True})
    key_small, description = cc.artifact_key(a, small, scope="blocks", mode=None)
    assert description["device"] == [cc.device_name(torch.device("cpu"))]
    assert key_small == cc.artifact_key(b, small, scope="blocks", mode=None)[0]
    assert key_small != cc.artifact_key(a, large, scope="blocks", mode=None)[0]
    assert key_small != cc.artifact_key(a, small, scope="model", mode=None)[0]


# ----------------------------------------------------------------------------------------------- artifacts
def test_load_of_a_missing_or_corrupt_artifact_is_harmless(tmp_path, caplog):
    assert cc.load_artifacts(tmp_path / "none.bin") == 0
    if not cc.mega_cache_supported():
        pytest.skip("this torch has no torch.compiler.save_cache_artifacts / load_cache_artifacts")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not an artifact")
    with caplog.at_level(logging.WARNING):
        assert cc.load_artifacts(bad) == 0


@needs_compiler
@pytest.mark.slow
def test_artifact_round_trip_into_an_empty_cache(tmp_path, monkeypatch):
    """A compiled function's artifact, saved atomically, makes a compilation in an *empty* inductor cache a hit
    (~20 s on 2 CPU cores: the C++ kernel is built twice, the second cache holding no build)."""
    if not cc.mega_cache_supported():
        pytest.skip("this torch has no torch.compiler.save_cache_artifacts / load_cache_artifacts")
    from torch._inductor.utils import clear_caches

    def f(x):
        return torch.sin(x) * 3 + x.cos()

    x = torch.randn(8)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "first"))
    torch._dynamo.reset()
    try:
        torch.compile(f, dynamic=False)(x)
        path = tmp_path / "artifacts" / "key.bin"
        assert cc.save_artifacts(path) >= 1
        assert path.is_file() and [p.name for p in path.parent.iterdir()] == ["key.bin"]  # no temporary left

        monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "second"))  # empty: only the artifact helps
        torch._dynamo.reset()
        clear_caches()
        assert cc.load_artifacts(path) >= 1
        before = cc.compile_counters()
        torch.testing.assert_close(torch.compile(f, dynamic=False)(x), f(x))
        after = cc.compile_counters()
        assert after["fxgraph_hit"] == before["fxgraph_hit"] + 1
        assert after["fxgraph_miss"] == before["fxgraph_miss"]
    finally:
        torch._dynamo.reset()


# ----------------------------------------------------------------------------------------------- compiling
def _tiny_transformer(num_layers: int = 3):
    from diffusers import WanTransformer3DModel

    from vist3a.video.tiny import tiny_transformer_config

    torch.manual_seed(0)
    return WanTransformer3DModel(**{**tiny_transformer_config(32), "num_layers": num_layers}).eval()


def test_models_without_repeated_blocks_compile_whole(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2))
    assert cc.repeated_blocks(model) == []
    assert cc.compile_transformer(model, cache=False) == "model"  # lazy: nothing is compiled before a call
    assert cc.repeated_blocks(_tiny_transformer()) == ["WanTransformerBlock"]


@needs_compiler
@pytest.mark.slow
def test_regional_compile_matches_eager_and_saves_an_artifact(tmp_path, monkeypatch, caplog):
    """Only the blocks are compiled (one graph for all three), the output equals eager's, and the first call writes
    the artifact of its shapes (~25 s of inductor work on 2 CPU cores)."""
    monkeypatch.setenv("VIST3A_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "cache" / "inductor"))
    model = _tiny_transformer()
    inputs = {"hidden_states": torch.randn(2, 16, 2, 8, 8), "timestep": torch.tensor([500, 500]),
              "encoder_hidden_states": torch.randn(2, 16, 32), "return_dict": False}
    torch._dynamo.reset()
    try:
        with torch.no_grad():
            eager = model(**inputs)[0]
            assert cc.compile_transformer(model) == "blocks"
            assert model._compiled_call_impl is None  # the model itself stays eager ...
            assert all(b._compiled_call_impl is not None for b in model.blocks)  # ... its blocks are compiled
            before = cc.compile_counters()
            with caplog.at_level(logging.INFO, logger="vist3a.video.compile_cache"):
                compiled = model(**inputs)[0]
                again = model(**{**inputs, "timestep": torch.tensor([300, 300])})[0]
        torch.testing.assert_close(compiled, eager, atol=1e-5, rtol=1e-4)
        assert again.shape == eager.shape
        assert cc.compile_counters()["fxgraph_miss"] - before["fxgraph_miss"] == 1  # one graph, shared by 3 blocks
        saved = list((tmp_path / "cache" / "compile-artifacts").glob("*.bin"))
        assert len(saved) == 1 and saved[0].with_suffix(".json").is_file()
        messages = [r.getMessage() for r in caplog.records]
        assert any("first forward at new shapes" in m and "1 compiled" in m for m in messages)
        assert sum("compile cache: saved" in m for m in messages) == 1  # the second call (same shapes) is quiet
    finally:
        torch._dynamo.reset()
