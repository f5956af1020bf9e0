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


# ----------------------------------------------------------------------------- other VAE families (issue 18)
def _tiny_hunyuan_config() -> dict:
    from vist3a.video.vae_adapters import tiny_vae_config

    return tiny_vae_config("hunyuanvideo")


def test_wan_loss_and_latents_are_the_plain_diffusers_ones(tiny_caches, tiny_vae_config):
    """Going through the adapter leaves the Wan path bit-identical: the loss, its terms and the posterior means are
    those of the stage's former direct diffusers calls, written out here."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(**tiny_vae_config)
    cfg = tv.VAETrainConfig(num_frames=5, size=16)
    frames = tiny_caches[0].batch([0, 1]).frames
    loss, terms = tv.vae_loss(vae, frames, cfg, torch.Generator().manual_seed(3))

    x = frames.permute(0, 2, 1, 3, 4) * 2 - 1
    posterior = vae.encode(x).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=torch.Generator().manual_seed(3))
    recon = vae.decode(posterior.mean + posterior.std * noise).sample
    l1, mse = (recon - x).abs().mean(), (recon - x).square().mean()
    kl = 0.5 * (posterior.mean.square() + posterior.logvar.exp() - 1 - posterior.logvar).mean()
    assert torch.equal(loss, l1 + mse + 1e-6 * kl)
    assert terms == {"l1": float(l1.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}
    assert torch.equal(tv.encode_mean(vae, frames), vae.encode(x).latent_dist.mean)


def test_family_config_rules():
    from vist3a.nano.configs import nano_hunyuan_vae_config, nano_vae_config
    from vist3a.video.vae_adapters import tiny_vae_config

    assert tv.VAETrainConfig().model == nano_vae_config()
    cfg = tv.VAETrainConfig(family="Hunyuan")
    assert cfg.family == "hunyuanvideo" and cfg.model == nano_hunyuan_vae_config()
    with pytest.raises(ValueError, match="`family` must be a video-VAE family"):
        tv.VAETrainConfig(family="sdxl")
    with pytest.raises(ValueError, match="has no nano config"):
        tv.VAETrainConfig(family="ltx")
    with torch.device("meta"):
        vae = tv.build_vae(cfg)
        assert type(vae).__name__ == "AutoencoderKLHunyuanVideo"
        with pytest.raises(ValueError, match=r"builds a wan2\.2 VAE"):
            tv.build_vae(tv.VAETrainConfig(model=tiny_vae_config("wan2.2")))
        with pytest.raises(ValueError, match="4k\\+1"):
            tv.build_vae(tv.VAETrainConfig(family="hunyuanvideo", num_frames=6))


def test_nano_hunyuan_vae_gives_the_wan_latent_shape():
    """The nano HunyuanVideo VAE maps a nano clip (13 x 64 px) onto the nano Wan VAE's latent grid [16, 4, 8, 8]."""
    from vist3a.nano.configs import NANO_VIDEO
    from vist3a.video.vae_adapters import vae_adapter

    shapes = {}
    for family in ("wan2.1", "hunyuanvideo"):
        with torch.device("meta"):
            adapter = vae_adapter(tv.build_vae(tv.VAETrainConfig(family=family)))
        shapes[family] = adapter.latent_shape(NANO_VIDEO.num_frames, NANO_VIDEO.height, NANO_VIDEO.width)
    assert shapes["hunyuanvideo"] == shapes["wan2.1"] == (16, 4, 8, 8)


def test_hunyuan_vae_stage_end_to_end(tmp_path, tiny_caches, stage_defaults):
    """The stage trains another family through its adapter, sets HunyuanVideo's scaling_factor (1 / std of the
    training latents), saves and loads it through the nano loaders; a decoder-only run keeps its latent space."""
    from vist3a.nano.weights import load_component_from
    from vist3a.video.vae_adapters import vae_adapter

    base = dict(stage_defaults, batch_size=2, family="hunyuanvideo", model=_tiny_hunyuan_config(), stats_clips=4,
                save_dtype="float32")
    first = tv.train_vae(tv.VAETrainConfig(**base, steps=2), tmp_path / "a", "cpu", caches=tiny_caches)
    evaluation = json.loads((first / "eval.json").read_text())
    assert "latents_mean" not in evaluation and evaluation["heldout_psnr"] > 0
    record = json.loads((first / "train_config.json").read_text())
    assert record["config"]["family"] == "hunyuanvideo" and record["steps_done"] == 2
    vae = load_component_from(first, "vae")
    assert type(vae).__name__ == "AutoencoderKLHunyuanVideo"
    assert vae.config.scaling_factor == pytest.approx(evaluation["scaling_factor"])
    # the normalised training latents have unit std over all elements (the scalar convention)
    adapter = vae_adapter(vae)
    z = tv.encode_mean(vae, tiny_caches[0].batch(range(4)).frames)
    assert float(adapter.normalize(z).std(unbiased=False)) == pytest.approx(1.0, abs=1e-3)

    cfg = tv.VAETrainConfig(**base, steps=3, lr=1e-2, init=str(first), decoder_only=True, seed=5)
    second = tv.train_vae(cfg, tmp_path / "b", "cpu", caches=tiny_caches)
    new = load_component_from(second, "vae")
    assert new.config.scaling_factor == vae.config.scaling_factor
    changed = {key.split(".")[0] for key, value in new.state_dict().items()
               if not torch.equal(value, vae.state_dict()[key])}
    assert changed and changed <= {"decoder", "post_quant_conv"}


def test_another_family_is_not_shipped(tmp_path, tiny_caches, stage_defaults):
    """A VAE run of another family is usable from its folder, but neither installs as the nano VAE nor feeds the
    generator stage (both live on the Wan VAE's latents)."""
    from vist3a.errors import UserInputError
    from vist3a.nano.train_generator import GeneratorTrainConfig, train_generator
    from vist3a.nano.training import save_component
    from vist3a.nano.weights import install_components
    from vist3a.video.vae_adapters import tiny_vae

    save_component(tiny_vae("hunyuanvideo"), tmp_path / "runs" / "vae", torch.float16)
    with pytest.raises(UserInputError, match="only AutoencoderKLWan installs"):
        install_components(tmp_path / "runs", root=tmp_path / "weights")
    with pytest.raises(ValueError, match="holds a hunyuanvideo VAE"):
        train_generator(GeneratorTrainConfig(**stage_defaults, vae=str(tmp_path / "runs" / "vae")),
                        tmp_path / "generator", "cpu", caches=tiny_caches)
