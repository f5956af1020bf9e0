"""The nano configs build the real classes at the intended sizes, consistently with each other."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vist3a.nano import configs


def test_evenly_spread_layers_end_at_the_last_layer():
    assert configs.evenly_spread_layers(8) == (1, 3, 5, 7)
    assert configs.evenly_spread_layers(24)[-1] == 23
    assert configs.evenly_spread_layers(4) == (0, 1, 2, 3)
    with pytest.raises(ValueError, match="depth"):
        configs.evenly_spread_layers(3)


def test_video_latent_shape_is_16x4x8x8():
    from vist3a.video.frames import latent_shape

    v = configs.NANO_VIDEO
    assert latent_shape(v.num_frames, v.height, v.width, configs.nano_vae_config()) == (16, 4, 8, 8)


def test_stitch_spec_maps_the_latent_grid_onto_the_token_grid():
    from vist3a.stitching import parse_spec
    from vist3a.video.frames import latent_shape

    anysplat = configs.nano_anysplat_config()
    spec = configs.nano_stitch_spec()
    assert spec == "conv3d_k5x3x3_o96_s1x1x1_p2x1x1"
    v = configs.NANO_VIDEO
    _, t_lat, h, w = latent_shape(v.num_frames, v.height, v.width, configs.nano_vae_config())
    frames, rows, cols = parse_spec(spec).output_thw((t_lat - 1) * 4 + 1, h, w)
    agg = anysplat["aggregator_config"]
    assert (rows, cols) == (agg["img_size"] // agg["patch_size"],) * 2
    assert frames == v.num_frames
    assert parse_spec(spec).out_channels == agg["embed_dim"]


def test_stitch_spec_rejects_incompatible_grids():
    with pytest.raises(ValueError, match="multiple of the token grid"):
        configs.nano_stitch_spec(configs.nano_anysplat_config(img_size=98), video=configs.NanoVideo(height=64))


def test_candidates_follow_the_dino_depth():
    assert configs.stitch_candidates(configs.nano_anysplat_config()) == [f"enc_blocks_{i}" for i in range(1, 5)]


def test_transformer_reads_the_minilm_width():
    from vist3a.video.text import minilm_model_dir

    hidden = json.loads((Path(minilm_model_dir()) / "config.json").read_text())["hidden_size"]
    assert configs.nano_transformer_config()["text_dim"] == hidden


def test_models_build_and_fit_the_shipping_budget():
    """fp16 bytes of vae + recon + stitch (at most the recon) + generator stay under the 40 MB budget."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.nano.weights import SIZE_BUDGET_BYTES
    from vist3a.recon import AnySplat

    count = lambda m: sum(p.numel() for p in m.parameters())
    vae = count(AutoencoderKLWan(**configs.nano_vae_config()))
    recon_model = AnySplat(**configs.nano_anysplat_config())
    recon = count(recon_model)
    generator = count(WanTransformer3DModel(**configs.nano_transformer_config()))
    assert recon_model.aggregator.config.patch_embed.depth == 4
    assert 2 * (vae + 2 * recon + generator) <= SIZE_BUDGET_BYTES


def test_nano_configs_are_json():
    data = configs.nano_configs()
    assert json.loads(json.dumps(data)) == data
    assert data["stitch_spec"] == configs.nano_stitch_spec()


def test_mvdust3r_config_stitches_onto_the_nano_latent_within_the_budget():
    """The nano MV-DUSt3R: 112 px, patch 14 -> the 8x8 token grid of the nano latent (stride-1 stitching), its
    encoder blocks the candidates, and a stitched decoder at enc_blocks_1 under ~6 MB in float16."""
    from vist3a.recon import MVDust3r
    from vist3a.stitching.decoder import StitchedDecoder

    config = configs.nano_mvdust3r_config()
    assert configs.recon_input_size(config) == configs.NANO_VIDEO.recon_size and configs.recon_token_grid(config) == 8
    spec = configs.nano_stitch_spec(config)
    assert spec == "conv3d_k5x3x3_o128_s1x1x1_p2x1x1"
    assert configs.stitch_candidates(config) == [f"enc_blocks_{i}" for i in range(5)]
    model = MVDust3r(**config)
    decoder = StitchedDecoder.from_recon(model, "enc_blocks_1", spec)
    assert 2 * sum(p.numel() for p in decoder.parameters()) <= 6e6
    with pytest.raises(ValueError, match="multiple of"):
        configs.nano_mvdust3r_config(img_size=100)
