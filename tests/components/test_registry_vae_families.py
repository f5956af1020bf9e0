"""The registry with other video-VAE families: tiny random parts of the preset's family, and ``hub`` presets that
point at the user's stitched decoder folder (no released stitched weights exist for Wan 2.2 or CogVideoX)."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.components import load_components
from vist3a.errors import UserInputError
from vist3a.stitching.models import resolve_stitch_models
from vist3a.video.vae_adapters import vae_adapter


@pytest.mark.parametrize(("preset", "family", "channels"), [
    ("tiny-random", "wan2.1", 16), ("tiny-random-wan22", "wan2.2", 48), ("tiny-random-cogvideox", "cogvideox", 16),
])
def test_tiny_parts_follow_the_preset_family(preset, family, channels):
    parts = load_components(preset, {"vae", "stitched"})
    assert vae_adapter(parts.vae).name == family and vae_adapter(parts.vae).latent_channels == channels
    assert parts.stitched.config.latent_channels == channels  # the stitching layer takes this VAE's latents
    models = resolve_stitch_models(preset, device="cpu")  # `stitch search --preset <it>`: sizes from its block
    assert models.vae_adapter.name == family and models.sources["vae_family"] == family


def _saved(tmp_path, preset: str):
    from vist3a.pipeline import Text2ScenePipeline

    return Text2ScenePipeline.from_pretrained(preset, device="cpu").save_pretrained(tmp_path / preset)


def _hub_preset(tmp_path, generator: str, decoder: str, family: str) -> str:
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({
        "name": "mine", "provider": "hub", "generator": {"repo_id": generator, "family": family},
        "stitched": {"folder": decoder}, "defaults": {"num_frames": 5, "height": 64, "width": 64, "num_steps": 2},
    }))
    return str(path)


def test_hub_preset_with_a_decoder_folder_loads_it_and_checks_its_latents(tmp_path):
    wan22 = _saved(tmp_path, "tiny-random-wan22")
    preset = _hub_preset(tmp_path, str(wan22 / "generator"), str(wan22 / "decoder"), "wan")
    parts = load_components(preset, local_files_only=True)
    assert vae_adapter(parts.vae).name == "wan2.2" and parts.stitched.config.latent_channels == 48
    saved = load_components(wan22, {"stitched"}).stitched.state_dict()
    assert all(torch.equal(v, saved[k]) for k, v in parts.stitched.state_dict().items())
    wan21 = _saved(tmp_path, "tiny-random")  # a decoder stitched on 16-channel latents
    mismatch = _hub_preset(tmp_path, str(wan22 / "generator"), str(wan21 / "decoder"), "wan")
    with pytest.raises(UserInputError, match=r"takes 16-channel latents.*stitch it on this VAE"):
        load_components(mismatch, local_files_only=True)
    with pytest.raises(UserInputError, match=r"generator\.family must be one of"):
        load_components(_hub_preset(tmp_path, str(wan22 / "generator"), str(wan22 / "decoder"), "sora"),
                        local_files_only=True)
