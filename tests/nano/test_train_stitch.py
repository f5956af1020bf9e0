"""Stitch stage: the project's layer search + stitched fine-tuning run on nano models, end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano import train_stitch as ts


def test_view_choices_must_fit_the_clips():
    with pytest.raises(ValueError, match="view_choices"):
        ts.StitchStageConfig(num_frames=5, view_choices=(5, 9))


@pytest.mark.slow
@pytest.mark.parametrize("canonical", [False, True])
def test_stitch_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_vae_config, tiny_anysplat_config,
                                 canonical):
    from diffusers import AutoencoderKLWan

    from vist3a.nano.weights import load_component_from
    from vist3a.recon import AnySplat
    from vist3a.stitching.decoder import StitchedDecoder

    torch.manual_seed(0)
    vae, recon = AutoencoderKLWan(**tiny_vae_config), AnySplat(**tiny_anysplat_config)
    # a budget already spent by the search: the fine-tuning stops cleanly after its first step, the stage goes on
    cfg = ts.StitchStageConfig(**stage_defaults, steps=2, batch_size=1, search_clips=4, view_choices=(5,),
                               lora_rank=2, render_backend="torch", time_budget_s=1e-3,
                               canonical_direction=canonical)
    run = ts.train_stitch(cfg, tmp_path / "stitch", "cpu", caches=tiny_caches, models=(vae, recon))
    train_config = json.loads((run / "train_config.json").read_text())
    assert train_config["steps_done"] == 1 and train_config["stopped_by"] == "time_budget"
    assert (run / "finetune" / "checkpoint-1").is_dir()
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    assert set(evaluation["search_mse"]) == {"enc_blocks_1", "enc_blocks_2"}
    best = min(evaluation["search_mse"], key=lambda k: evaluation["search_mse"][k]["mse_fit"])
    assert evaluation["search_best_layer"] == best == evaluation["layer"]
    assert (run / "search" / "report.json").is_file()
    decoder = load_component_from(run, "stitch")
    assert isinstance(decoder, StitchedDecoder) and decoder.layer == best and decoder.config.lora_rank == 0
    # the saved decoder decodes latents of the nano VAE into AnySplat outputs for every frame
    frames = tiny_caches[1].batch([0]).frames
    with torch.no_grad():
        latents = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mean
        out = decoder(latents, frames)
    assert out.depth.shape == (1, 5, 28, 28)
