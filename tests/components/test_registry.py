"""The component registry: one vocabulary of presets for every command, one error for missing repos."""

from __future__ import annotations

import logging

import pytest
import torch

from vist3a.components import (
    Components,
    LoadOptions,
    available_providers,
    load_components,
    recon_preset,
    register_provider,
    resolve_preset,
    stitching_sizes,
)
from vist3a.errors import UserInputError

RELEASE_REPOS = ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "lhjiang/anysplat", "HJGO/VIST3A")


def test_builtins_are_registered_providers():
    assert {"nano", "tiny-random", "hub", "folder"} <= set(available_providers())


def test_tiny_random_parts_and_their_classes():
    from diffusers import AutoencoderKLWan

    from vist3a.recon import VGGT, AnySplat
    from vist3a.stitching.decoder import StitchedDecoder

    parts = load_components("tiny-random", {"vae", "recon"})
    assert isinstance(parts.vae, AutoencoderKLWan) and isinstance(parts.recon, AnySplat)
    assert parts.generator is None and parts.stitched is None
    full = load_components("tiny-random")
    assert isinstance(full.stitched, StitchedDecoder) and full.vae is full.generator.vae
    assert isinstance(load_components("tiny-random", {"recon"}, recon_model="vggt").recon, VGGT)
    # seeded: the same seed gives the same weights, another seed others
    again = load_components("tiny-random", {"recon"}).recon.state_dict()
    other = load_components("tiny-random", {"recon"}, seed=1).recon.state_dict()
    name = next(k for k, v in again.items() if v.is_floating_point() and v.numel() > 8 and v.std() > 0)
    assert torch.equal(parts.recon.state_dict()[name], again[name])
    assert not torch.equal(again[name], other[name])


def test_old_names_still_work_with_a_deprecation_message(caplog):
    with caplog.at_level(logging.WARNING, logger="vist3a.presets"):
        assert resolve_preset("random-tiny")["name"] == "tiny-random"
        assert resolve_preset("release")["name"] == "vist3a-1.3b"
    assert caplog.text.count("deprecated") == 2


@pytest.mark.parametrize(("parts", "expected"), [
    ({"stitched"}, RELEASE_REPOS[1:]),  # stitch/align/generate's 3D side
    ({"vae", "recon"}, RELEASE_REPOS[:2]),  # what `stitch search` needs
    ({"vae", "transformer", "text_encoder", "scheduler", "stitched"}, RELEASE_REPOS),  # `generate`
])
def test_missing_release_repos_are_named_in_one_error(monkeypatch, tmp_path, parts, expected):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(UserInputError) as err:
        load_components("vist3a-1.3b", parts, local_files_only=True)
    message = str(err.value)
    assert all(repo in message for repo in expected) and message.count("\n") == 0
    assert "HF_HUB_OFFLINE" not in message  # only advised when it is set
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError, match="unset HF_HUB_OFFLINE"):
        load_components("vist3a-1.3b", parts)


def test_every_shipped_preset_has_the_stitching_sizes():
    from vist3a.presets import available_presets

    for name in available_presets():
        preset = resolve_preset(name)
        sizes = stitching_sizes(preset)
        patch = 16 if preset.get("recon", {}).get("model", "").startswith("mvdust3r") else 14
        assert sizes["vae_size"] % 8 == 0 and sizes["recon_size"] % patch == 0 and (sizes["num_frames"] - 1) % 4 == 0


def test_stitch_models_of_a_preset_are_its_own_model_kind():
    """Without --recon, the preset's 3D model is stitched (not the --recon-type default)."""
    from vist3a.recon import MVDust3r
    from vist3a.stitching.models import resolve_stitch_models

    models = resolve_stitch_models("tiny-random-mvdust3r")
    assert isinstance(models.recon, MVDust3r) and models.recon.config.multi_path
    assert models.recon_size % 16 == 0


def test_mvdust3r_recon_preset_names_the_release_repo():
    from vist3a.recon.mvdust3r_hub import RELEASE_REPO

    for kind in ("mvdust3r", "mvdust3r-plus"):
        preset = recon_preset(kind, None)
        assert preset["recon"] == {"model": kind, "repo_id": RELEASE_REPO}


def test_recon_preset_vocabulary():
    assert recon_preset("anysplat", "tiny-random") == "tiny-random"
    assert recon_preset("vggt", None)["recon"] == {"model": "vggt", "repo_id": "facebook/VGGT-1B"}
    assert recon_preset("anysplat", "me/my-anysplat")["recon"]["repo_id"] == "me/my-anysplat"


def test_a_new_provider_is_one_registration():
    class Constant:
        def load(self, preset, parts, options: LoadOptions, out: Components) -> None:
            out.recon = torch.nn.Linear(1, 1)
            out.sources["seed"] = options.seed

    register_provider("test-constant", Constant())
    preset = {"name": "mine", "provider": "test-constant", "defaults": {}}
    assert isinstance(load_components(preset, {"recon"}, seed=5).recon, torch.nn.Linear)
    with pytest.raises(UserInputError, match="provides no stitched"):
        load_components(preset, {"stitched"})
