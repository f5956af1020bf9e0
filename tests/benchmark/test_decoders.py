"""The decoders of ``vist3a eval nvs|geometry`` come from the component registry and the preset's sizes."""

from __future__ import annotations

import pytest
import torch

from vist3a.benchmark.decoders import OriginalDecoder, StitchedLatentDecoder, load_decoders, preset_sizes
from vist3a.components import load_components
from vist3a.errors import UserInputError
from vist3a.presets import load_preset
from vist3a.video.frames import frames_to_vae


def test_tiny_random_decoders_are_the_registry_models_at_the_preset_sizes():
    stitched, original = load_decoders("tiny-random", ("stitched", "original"), torch.device("cpu"))
    assert isinstance(stitched, StitchedLatentDecoder) and isinstance(original, OriginalDecoder)
    block = load_preset("tiny-random")["stitching"]
    assert original.size == block["recon_size"] and stitched.frame_step == 4
    frames = torch.rand(5, 3, block["vae_size"], block["vae_size"], generator=torch.Generator().manual_seed(0))
    # the stitched decoder reads the posterior mean of the preset's VAE (the same seeded model from the registry)
    vae = load_components("tiny-random", ["vae"]).vae
    with torch.no_grad():
        expected = vae.encode(frames_to_vae(frames[None])).latent_dist.mean
    torch.testing.assert_close(stitched.encode(frames[None]), expected)
    for decoder in (stitched, original):
        pred = decoder(frames)
        assert pred.w2c.shape == (5, 4, 4) and pred.K.shape == (5, 3, 3) and pred.gaussians is not None
        assert pred.points.shape == (5, *frames.shape[-2:], 3)


def test_sizes_come_from_the_presets_stitching_block():
    block = load_preset("nano")["stitching"]
    assert preset_sizes("nano") == (block["vae_size"], block["recon_size"])
    with pytest.raises(UserInputError, match="no 'stitching' block"):
        preset_sizes({"name": "bare", "defaults": {}})


def test_unknown_decoder_names_fail_before_loading():
    with pytest.raises(UserInputError, match="unknown decoders"):
        load_decoders("tiny-random", ("stitched", "fancy"), torch.device("cpu"))


def test_mvdust3r_decoder_gives_the_world_pointmap_not_the_per_path_stack():
    """MV-DUSt3R's ``points`` are ``[B, P, V, H, W, 3]`` (one stack per reference path); a prediction takes its
    ``world_points`` (``[B, V, H, W, 3]``, path 0), as ``vist3a eval geometry --preset nano-mvdust3r`` needs."""
    (stitched,) = load_decoders("nano-mvdust3r", ("stitched",), torch.device("cpu"))
    vae_size, _ = preset_sizes("nano-mvdust3r")
    frames = torch.rand(5, 3, vae_size, vae_size, generator=torch.Generator().manual_seed(0))
    out = stitched.run(frames)
    assert out.points.dim() == 6
    pred = stitched(frames)
    assert pred.points.shape == (5, vae_size, vae_size, 3)
    world = torch.nn.functional.interpolate(out.world_points[0].float().permute(0, 3, 1, 2), size=(vae_size,) * 2,
                                            mode="nearest-exact").permute(0, 2, 3, 1)
    torch.testing.assert_close(pred.points, world)
