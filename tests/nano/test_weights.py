"""Shipped-weights API: install into a manifest with checksums, verified loading, corruption detection."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.nano import weights
from vist3a.nano.training import save_component, write_json


@pytest.fixture
def trained_root(tmp_path, tiny_vae_config, tiny_transformer_config):
    """A training output root with a tiny VAE and generator as `vist3a nano train` would leave them."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    torch.manual_seed(0)
    root = tmp_path / "runs"
    models = {"vae": AutoencoderKLWan(**tiny_vae_config), "generator": WanTransformer3DModel(**tiny_transformer_config)}
    for name, model in models.items():
        save_component(model, root / name, torch.float16)
        write_json(root / name / "eval.json", {"metric": 1.5, "saved_dtype": "float16"})
        write_json(root / name / "train_config.json", {"stage": name, "config": {"seed": 0}})
    return root, models


def test_install_writes_checksums_and_loads_back(tmp_path, trained_root):
    root, models = trained_root
    target = tmp_path / "weights"
    manifest = weights.install_components(root, root=target)
    assert set(manifest["components"]) == {"vae", "generator"}
    for name, entry in manifest["components"].items():
        for rel, info in entry["files"].items():
            data = (target / name / rel).read_bytes()
            assert info == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        assert entry["eval"]["metric"] == 1.5 and entry["train_config"]["stage"] == name
    assert json.loads((target / weights.MANIFEST_NAME).read_text()) == manifest
    vae = weights.load_nano_component("vae", "cpu", torch.float32, root=target)
    assert vae.dtype == torch.float32 and not vae.training
    for key, value in models["vae"].state_dict().items():
        assert torch.equal(vae.state_dict()[key], value.half().float()), key
    assert weights.nano_available(("vae", "generator"), root=target)
    assert not weights.nano_available(root=target)  # no stitched decoder installed


def test_checksum_mismatch_is_detected(tmp_path, trained_root):
    root, _ = trained_root
    target = tmp_path / "weights"
    weights.install_components(root, root=target)
    path = next((target / "vae").glob("*.safetensors"))
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    with pytest.raises(weights.NanoWeightsError, match="checksum mismatch"):
        weights.load_nano_component("vae", root=target)
    path.write_bytes(bytes(data[:-10]))
    with pytest.raises(weights.NanoWeightsError, match="truncated"):
        weights.verify_component("vae", target)
    weights.load_nano_component("generator", root=target)  # the others still load


def test_missing_components_and_sources(tmp_path, trained_root):
    root, _ = trained_root
    target = tmp_path / "weights"
    with pytest.raises(weights.NanoWeightsError, match="not installed"):
        weights.load_nano_component("vae", root=target)
    assert not weights.nano_available(("vae",), root=target)
    with pytest.raises(UserInputError, match=r"no trained \['recon'\]"):
        weights.install_components(root / "vae", root=target, components=["recon"])
    assert set(weights.install_components(root / "vae", root=target)["components"]) == {"vae"}  # one run folder
    with pytest.raises(ValueError, match="nano component"):
        weights.load_nano_component("unet", root=target)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no trained components"):
        weights.install_components(tmp_path / "empty", root=target)


def test_reinstall_replaces_one_component_and_keeps_the_rest(tmp_path, trained_root):
    root, _ = trained_root
    target = tmp_path / "weights"
    weights.install_components(root, root=target)
    before = weights.read_manifest(target)["components"]["generator"]
    write_json(root / "vae" / "eval.json", {"metric": 2.5})
    manifest = weights.install_components(root, components=["vae"], root=target)
    assert manifest["components"]["vae"]["eval"]["metric"] == 2.5
    assert manifest["components"]["generator"] == before


def test_environment_variable_moves_the_weights(tmp_path, trained_root, monkeypatch):
    root, _ = trained_root
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "elsewhere"))
    weights.install_components(root)
    assert weights.weights_dir() == tmp_path / "elsewhere"
    assert weights.verify_component("generator") == tmp_path / "elsewhere" / "generator"


def test_component_folder_accepts_run_and_model_folders(trained_root):
    root, _ = trained_root
    assert weights.component_folder(root / "vae", "vae") == root / "vae" / "model"
    assert weights.component_folder(root / "vae" / "model", "vae") == root / "vae" / "model"
    assert weights.component_folder(root, "vae") == root / "vae" / "model"
    with pytest.raises(UserInputError, match="no trained AutoencoderKLWan"):
        weights.component_folder(root / "generator", "vae")  # a generator is not a VAE


def test_shipped_weights_match_their_manifest():
    """Whatever the package ships must verify (skipped until the trained weights are installed)."""
    manifest = weights.read_manifest()
    if not manifest["components"]:
        pytest.skip("no nano weights installed in this checkout yet")
    for name in manifest["components"]:
        weights.verify_component(name)
    assert manifest["total_bytes"] <= weights.SIZE_BUDGET_BYTES
