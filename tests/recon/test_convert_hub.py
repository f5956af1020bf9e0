"""Official-config parsing, strict checkpoint conversion with readable errors, and loading from folders."""

from __future__ import annotations

import json

import pytest
import torch
from recon_oracles import oracle_case, oracle_vggt
from safetensors.torch import save_file

from vist3a.errors import UserInputError
from vist3a.recon import VGGT, AnySplat, anysplat_from_pretrained, random_tiny_model, vggt_from_pretrained
from vist3a.recon.convert import (
    config_from_official,
    load_official_state_dict,
    official_to_vist3a_state_dict,
    vist3a_to_official_state_dict,
)


@pytest.fixture
def vggt_case(oracle_dir):
    return oracle_case(oracle_dir / "vggt_tiny")


@pytest.fixture
def anysplat_case(oracle_dir):
    return oracle_case(oracle_dir / "anysplat_tiny")


# ----------------------------------------------------------------------------- configs
def test_config_from_official_vggt(vggt_case):
    kind, kwargs = config_from_official(vggt_case.config["constructor"])
    assert kind == "vggt"
    agg = kwargs["aggregator_config"]
    assert (agg["embed_dim"], agg["depth"], agg["num_heads"], agg["img_size"]) == (48, 4, 3, 112)
    assert agg["patch_embed"]["depth"] == 2 and agg["patch_embed"]["num_heads"] == 3
    assert kwargs["camera_config"]["trunk_depth"] == 1
    assert kwargs["depth_config"]["out_channels"] == [8, 16, 32, 32]
    assert "track" in kwargs["heads"] and kwargs["track_config"]["extractor_layer_idx"] == [0, 1, 2, 3]
    model = VGGT(**kwargs)
    assert model.aggregator.num_prefix_tokens == 5
    assert model.aggregator.patch_embed.pos_embed.shape == (1, 1 + (112 // 14) ** 2, 48)


def test_config_from_official_anysplat(anysplat_case):
    kind, kwargs = config_from_official(anysplat_case.config["constructor"])
    assert kind == "anysplat"
    enc = next(v for k, v in anysplat_case.config["constructor"].items() if k.startswith("AnySplat.encoder_cfg"))
    assert kwargs["voxel_size"] == enc["voxel_size"]
    assert kwargs["sh_degree"] == 4 and kwargs["intermediate_layer_idx"] == (4, 11, 17, 23)
    model = AnySplat(**kwargs)
    # raw channels: density + 3 scale + 4 rotation + 3 * 25 SH, plus the confidence channel
    assert model.gaussian_head.scratch.output_conv2[-1].out_channels == 1 + 3 + 4 + 3 * 25 + 1
    assert model.gaussian_head.input_merger[0].out_channels == kwargs["gaussian_config"]["features"] // 2


def test_hub_style_configs():
    kind, kwargs = config_from_official({"img_size": 518, "patch_size": 14, "embed_dim": 1024})
    assert kind == "vggt" and kwargs["aggregator_config"]["embed_dim"] == 1024
    kind, kwargs = config_from_official({"encoder_cfg": {"voxel_size": 0.01, "gaussian_adapter": {"sh_degree": 2}}})
    assert kind == "anysplat" and kwargs["voxel_size"] == 0.01 and kwargs["sh_degree"] == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"pred_head_type": "point"}, "pred_head_type"),
        ({"pose_free": False}, "pose_free"),
        ({"opacity_conf": True}, "opacity_conf"),
    ],
)
def test_unsupported_official_options_are_named(anysplat_case, change, message):
    constructor = json.loads(json.dumps(anysplat_case.config["constructor"]))
    key = next(k for k in constructor if k.startswith("AnySplat.encoder_cfg"))
    constructor[key].update(change)
    with pytest.raises(ValueError, match=message):
        config_from_official(constructor)


def test_inconsistent_head_width_is_rejected(vggt_case):
    constructor = json.loads(json.dumps(vggt_case.config["constructor"]))
    key = next(k for k in constructor if k.startswith("CameraHead"))
    constructor[key]["dim_in"] = 7
    with pytest.raises(ValueError, match=r"CameraHead\.dim_in"):
        config_from_official(constructor)


# ----------------------------------------------------------------------------- state dicts
def test_key_maps_round_trip(anysplat_case):
    official = anysplat_case.load("state_dict")
    ours = official_to_vist3a_state_dict("anysplat", official)
    assert all(k.startswith(("aggregator.", "camera_head.", "depth_head.", "gaussian_head.")) for k in ours)
    assert vist3a_to_official_state_dict("anysplat", ours).keys() == official.keys()


def test_distillation_copies_are_dropped(anysplat_case):
    official = dict(anysplat_case.load("state_dict"))
    official["encoder.distill_aggregator.camera_token"] = official["encoder.aggregator.camera_token"]
    assert "aggregator.camera_token" in official_to_vist3a_state_dict("anysplat", official)
    assert not any("distill" in k for k in official_to_vist3a_state_dict("anysplat", official))


def test_strict_loading_lists_problems(vggt_case):
    model = VGGT.from_official_config(vggt_case.config["constructor"])
    official = dict(vggt_case.load("state_dict"))
    broken = dict(official)
    del broken["camera_head.embed_pose.weight"]
    broken["camera_head.extra.weight"] = torch.zeros(1)
    broken["depth_head.norm.weight"] = torch.zeros(5)
    with pytest.raises(ValueError) as err:
        load_official_state_dict(model, "vggt", broken)
    text = str(err.value)
    for needle in ("camera_head.embed_pose.weight", "camera_head.extra.weight", "depth_head.norm.weight", "[5]"):
        assert needle in text
    with pytest.raises(ValueError, match=r"no vist3a counterpart.*bogus\.key"):
        load_official_state_dict(model, "vggt", {**official, "bogus.key": torch.zeros(1)})


# ----------------------------------------------------------------------------- loading
def _write_official_folder(folder, case, weights_name="model.safetensors", drop_prefix=None):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(case.config["constructor"]))
    state = {k: v for k, v in case.load("state_dict").items() if not (drop_prefix and k.startswith(drop_prefix))}
    if weights_name.endswith(".safetensors"):
        save_file(state, str(folder / weights_name))
    else:
        torch.save(state, folder / weights_name)
    return folder


@pytest.mark.parametrize("weights_name", ["model.safetensors", "model.pt"])
def test_vggt_from_official_folder(tmp_path, vggt_case, weights_name):
    folder = _write_official_folder(tmp_path / "vggt", vggt_case, weights_name)
    images = vggt_case.load("inputs")["images"]
    plain = vggt_from_pretrained(folder)
    assert plain.track_head is None
    with_track = vggt_from_pretrained(folder, load_track_head=True)
    reference = oracle_vggt(vggt_case.folder)
    with torch.no_grad():
        a, b = plain(images), reference(images)
        tracks = with_track(images, query_points=vggt_case.load("inputs")["query_points"]).tracks
    torch.testing.assert_close(a.depth, b.depth, rtol=0, atol=0)
    torch.testing.assert_close(a.cameras.pose_enc, b.cameras.pose_enc, rtol=0, atol=0)
    assert tracks is not None and tracks.tracks.shape[-1] == 2


def test_track_head_requested_but_absent(tmp_path, vggt_case):
    folder = _write_official_folder(tmp_path / "vggt", vggt_case, drop_prefix="track_head.")
    vggt_from_pretrained(folder)  # loads: the track head is optional
    with pytest.raises(ValueError, match="missing keys: track_head"):
        vggt_from_pretrained(folder, load_track_head=True)


def test_anysplat_from_official_folder_is_float32(tmp_path, anysplat_case):
    folder = tmp_path / "anysplat"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(anysplat_case.config["constructor"]))
    # the released checkpoint stores the aggregator in bfloat16
    state = {
        k: (v.bfloat16() if k.startswith("encoder.aggregator.") else v)
        for k, v in anysplat_case.load("state_dict").items()
    }
    save_file(state, str(folder / "model.safetensors"))
    model = anysplat_from_pretrained(folder, voxelize=False)
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert model.config.voxelize is False
    images = anysplat_case.load("inputs")["images"]
    with torch.no_grad():
        out = model(images)
    ref = anysplat_case.load("outputs_novoxel")
    torch.testing.assert_close(out.gaussians_official["means"], ref["gaussians.means"], rtol=1e-5, atol=1e-5)


def test_save_pretrained_round_trip(tmp_path):
    model = random_tiny_model("anysplat", seed=3)
    model.save_pretrained(tmp_path / "tiny")
    loaded = anysplat_from_pretrained(tmp_path / "tiny")
    images = torch.rand(1, 2, 3, 28, 42)
    with torch.no_grad():
        a, b = model(images), loaded(images)
    torch.testing.assert_close(a.gaussians_official["means"], b.gaussians_official["means"], rtol=0, atol=0)
    with pytest.raises(UserInputError, match="not VGGT"):
        vggt_from_pretrained(tmp_path / "tiny")


def test_missing_weights_offline_names_the_repo(tmp_path):
    repo = "vist3a-tests/no-such-repo"
    with pytest.raises(UserInputError, match=repo):
        vggt_from_pretrained(repo, local_files_only=True, cache_dir=str(tmp_path))
    with pytest.raises(UserInputError, match="no such folder"):
        anysplat_from_pretrained(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match="no weight file"):
        anysplat_from_pretrained(tmp_path / "empty")
