"""VAE stage: loss pieces, latent statistics, and the stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano import train_vae as tv


def test_kl_to_standard_normal_analytic():
    zeros = torch.zeros(2, 3)
    assert float(tv.kl_to_standard_normal(zeros, zeros)) == 0.0
    # KL(N(1, 1) || N(0, 1)) = 1/2; KL(N(0, e) || N(0, 1)) = (e - 1 - 1) / 2
    assert float(tv.kl_to_standard_normal(torch.ones(4), torch.zeros(4))) == pytest.approx(0.5)
    assert float(tv.kl_to_standard_normal(torch.zeros(4), torch.ones(4))) == pytest.approx((torch.e - 2) / 2)


def test_vae_layout_round_trip():
    frames = torch.rand(2, 5, 3, 8, 8)
    x = tv.to_vae_input(frames)
    assert x.shape == (2, 3, 5, 8, 8) and float(x.min()) >= -1 and float(x.max()) <= 1
    assert torch.allclose(tv.from_vae_output(x), frames, atol=1e-6)


def test_vae_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_vae_config):
    from vist3a.nano.weights import load_component_from
    from vist3a.video.latents import normalize_latents

    cfg = tv.VAETrainConfig(**stage_defaults, steps=2, batch_size=2, model=tiny_vae_config, stats_clips=4)
    run = tv.train_vae(cfg, tmp_path / "vae", "cpu", caches=tiny_caches)
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["saved_dtype"] in ("float16", "float32") and evaluation["heldout_psnr"] > 0
    vae = load_component_from(run, "vae")
    assert vae.config.latents_mean == pytest.approx(evaluation["latents_mean"])
    # the stored statistics normalise the training latents to zero mean and unit std per channel
    z = tv.encode_mean(vae, tiny_caches[0].batch(range(4)).frames)
    flat = normalize_latents(z, vae.config).transpose(0, 1).reshape(z.shape[1], -1)
    assert torch.allclose(flat.mean(1), torch.zeros(z.shape[1]), atol=0.02)
    assert torch.allclose(flat.std(1, unbiased=False), torch.ones(z.shape[1]), atol=0.02)
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "vae" and record["steps_done"] == 2 and record["config"]["model"] == tiny_vae_config


def test_decoder_only_keeps_the_latent_space(tmp_path, tiny_caches, stage_defaults, tiny_vae_config):
    """Fine-tuning the decoder of a trained VAE leaves its encoder and latent statistics bit-identical (so the
    generator and stitched decoder trained on those latents stay valid) while the decoder changes."""
    from vist3a.nano.weights import load_component_from

    base = dict(stage_defaults, batch_size=2, model=tiny_vae_config, stats_clips=4, save_dtype="float32")
    first = tv.train_vae(tv.VAETrainConfig(**base, steps=2), tmp_path / "a", "cpu", caches=tiny_caches)
    cfg = tv.VAETrainConfig(**base, steps=3, lr=1e-2, init=str(first), decoder_only=True, seed=5)
    second = tv.train_vae(cfg, tmp_path / "b", "cpu", caches=tiny_caches)
    old, new = load_component_from(first, "vae"), load_component_from(second, "vae")
    assert new.config.latents_mean == old.config.latents_mean and new.config.latents_std == old.config.latents_std
    changed = {key.split(".")[0] for key, value in new.state_dict().items()
               if not torch.equal(value, old.state_dict()[key])}
    assert changed and changed <= {"decoder", "post_quant_conv"}
    with pytest.raises(ValueError, match="needs `init`"):
        tv.VAETrainConfig(decoder_only=True)


@pytest.mark.slow
def test_vae_loss_decreases_on_a_fixed_batch(tiny_caches, tiny_vae_config):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**tiny_vae_config)
    cfg = tv.VAETrainConfig(num_frames=5, size=16, model=tiny_vae_config)
    frames = tiny_caches[0].batch([0, 1]).frames
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    losses = []
    for step in range(40):
        opt.zero_grad()
        loss, _ = tv.vae_loss(vae, frames, cfg, torch.Generator().manual_seed(step))
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5
