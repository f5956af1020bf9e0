"""Full-size models built on the meta device have exactly the official state-dict keys and shapes."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.recon import VGGT, AnySplat
from vist3a.recon.convert import config_from_official, vist3a_to_official_state_dict


def _manifest(oracle_dir, name):
    path = oracle_dir / name
    if not path.is_file():
        pytest.skip(f"{name} missing")
    return json.loads(path.read_text())


def _shapes(state_dict):
    return {k: list(v.shape) for k, v in state_dict.items()}


def _assert_same_keys(ours: dict, manifest_keys: list[dict], label: str) -> None:
    expected = {e["key"]: e["shape"] for e in manifest_keys}
    missing, extra = sorted(set(expected) - set(ours)), sorted(set(ours) - set(expected))
    assert not missing and not extra, f"{label}: missing {missing[:10]} extra {extra[:10]}"
    wrong = [k for k in expected if ours[k] != expected[k]]
    assert not wrong, f"{label}: shapes differ for {[(k, ours[k], expected[k]) for k in wrong[:10]]}"


def test_vggt_1b_state_dict_matches_manifest(oracle_dir):
    manifest = _manifest(oracle_dir, "vggt_1b_manifest.json")
    _, kwargs = config_from_official(manifest["constructor"])  # the Hub config form: img/patch/embed only
    with torch.device("meta"):
        model = VGGT(**{**kwargs, "heads": ("camera", "depth", "point", "track")})
    official = vist3a_to_official_state_dict("vggt", model.state_dict())
    assert len(official) == manifest["num_keys"]
    _assert_same_keys(_shapes(official), manifest["keys"], "VGGT-1B")
    for module, count in manifest["parameters_by_module"].items():
        got = sum(p.numel() for name, p in official.items() if name.startswith(module + "."))
        assert got == count, f"{module}: {got} parameters, manifest {count}"
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]


def test_vggt_defaults_are_vggt_1b(oracle_dir):
    manifest = _manifest(oracle_dir, "vggt_1b_manifest.json")
    with torch.device("meta"):
        model = VGGT(heads=("camera", "depth", "point", "track"))
    assert sum(p.numel() for p in model.parameters()) == manifest["total_parameters"]


def test_anysplat_state_dict_matches_manifest(oracle_dir):
    manifest = _manifest(oracle_dir, "anysplat_full_manifest.json")
    hub_config = {"encoder_cfg": manifest["encoder_cfg"], "decoder_cfg": manifest["decoder_cfg"]}
    kind, kwargs = config_from_official(hub_config)
    assert kind == "anysplat"
    assert kwargs["voxel_size"] == manifest["encoder_cfg"]["voxel_size"]
    with torch.device("meta"):
        model = AnySplat(**kwargs)
    official = vist3a_to_official_state_dict("anysplat", model.state_dict())
    assert len(official) == manifest["num_keys"]
    _assert_same_keys(_shapes(official), manifest["keys"], "AnySplat")
    for module, count in manifest["parameters_by_module"].items():
        got = sum(p.numel() for name, p in official.items() if name.startswith(module + "."))
        assert got == count, f"{module}: {got} parameters, manifest {count}"
    # the released model is the class default
    with torch.device("meta"):
        default = AnySplat()
    assert _shapes(default.state_dict()) == _shapes(model.state_dict())


@pytest.mark.parametrize("name", ["MVDp", "MVD"])
def test_mvdust3r_state_dict_matches_manifest(oracle_dir, name):
    """MV-DUSt3R+ (``MVDp_s1/s2.pth``) and MV-DUSt3R (``MVD.pth``) from the constructor strings of ``demo.py``."""
    from vist3a.recon.mvdust3r import MVDust3r

    manifest = _manifest(oracle_dir, "mvdust3r_manifest.json")["models"][name]
    with torch.device("meta"):
        model = MVDust3r.from_official_config(manifest["constructor"])
    state = model.state_dict()
    assert len(state) == manifest["num_keys"]
    _assert_same_keys(_shapes(state), manifest["keys"], name)
    dtypes = {e["key"]: e["dtype"] for e in manifest["keys"]}
    assert all(str(v.dtype).removeprefix("torch.") == dtypes[k] for k, v in state.items())
    params = dict(model.named_parameters())
    for table in ("parameters_by_module", "parameters_by_submodule"):
        for module, count in manifest[table].items():
            got = sum(p.numel() for key, p in params.items() if key == module or key.startswith(module + "."))
            assert got == count, f"{name} {module}: {got} parameters, manifest {count}"
    assert sum(p.numel() for p in params.values()) == manifest["total_parameters"]
    assert sum(v.numel() for v in state.values()) == manifest["total_elements_in_state_dict"]
    if name == "MVD":  # the released single-path model is the class default
        with torch.device("meta"):
            default = MVDust3r()
        assert _shapes(default.state_dict()) == _shapes(state)
