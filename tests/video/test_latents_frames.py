"""Latent normalisation and the frame / resolution rules of the Wan VAE."""

from __future__ import annotations

import logging

import pytest
import torch

from vist3a.video.frames import (
    check_num_frames,
    check_resolution,
    latent_shape,
    num_latent_frames,
    vae_scale_factors,
)
from vist3a.video.latents import denormalize_latents, latent_stats, normalize_latents

# Wan 2.1's published VAE statistics (first and last channel), written out independently of diffusers.
WAN_MEAN_0, WAN_STD_0 = -0.7571, 2.8184
WAN_MEAN_15, WAN_STD_15 = -0.2921, 1.9160


@pytest.fixture(scope="module")
def vae_config():
    """The default Wan 2.1 VAE config as diffusers registers it (a FrozenDict), built on the meta device."""
    from diffusers import AutoencoderKLWan

    with torch.device("meta"):
        return AutoencoderKLWan().config


def test_latent_stats_are_wan_values(vae_config):
    mean, std = latent_stats(vae_config)
    assert mean.shape == std.shape == (1, 16, 1, 1, 1)
    assert mean[0, 0].item() == pytest.approx(WAN_MEAN_0)
    assert std[0, 15].item() == pytest.approx(WAN_STD_15)
    assert mean[0, 15].item() == pytest.approx(WAN_MEAN_15)
    assert std[0, 0].item() == pytest.approx(WAN_STD_0)


def test_normalize_analytic_and_round_trip(vae_config):
    mean, std = latent_stats(vae_config)
    raw = mean + std * torch.tensor([0.0, 1.0, -2.0]).view(1, 1, 3, 1, 1)  # [1, 16, 3, 1, 1]
    raw = raw.expand(2, 16, 3, 2, 2).contiguous()
    z = normalize_latents(raw, vae_config)
    expected = torch.tensor([0.0, 1.0, -2.0]).view(1, 1, 3, 1, 1).expand_as(raw)
    torch.testing.assert_close(z, expected, atol=1e-6, rtol=0)
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 16, 4, 3, 5, generator=g)
    torch.testing.assert_close(normalize_latents(denormalize_latents(noise, vae_config), vae_config), noise)
    torch.testing.assert_close(denormalize_latents(normalize_latents(raw, vae_config), vae_config), raw)


def test_normalize_keeps_dtype_and_accepts_plain_dict():
    cfg = {"latents_mean": [1.0, -1.0], "latents_std": [2.0, 0.5]}
    raw = torch.tensor([3.0, 0.0]).view(1, 2, 1, 1, 1).to(torch.bfloat16)
    z = normalize_latents(raw, cfg)
    assert z.dtype == torch.bfloat16
    assert z.flatten().float().tolist() == [1.0, 2.0]


def test_normalize_rejects_wrong_channels(vae_config):
    with pytest.raises(ValueError, match=r"raw_latents.*\[B, 16, T_lat, h, w\].*\(1, 4, 2, 2, 2\)"):
        normalize_latents(torch.zeros(1, 4, 2, 2, 2), vae_config)
    with pytest.raises(ValueError, match="latents_std"):
        latent_stats({"latents_mean": [0.0], "latents_std": [0.0]})


def test_scale_factors_derived_from_architecture(vae_config):
    assert vae_scale_factors(vae_config) == (4, 8)
    assert vae_scale_factors({"temperal_downsample": [True, True, True]}) == (8, 8)
    assert vae_scale_factors({"temperal_downsample": [False, True, True], "patch_size": 2}) == (4, 16)
    with pytest.raises(ValueError, match="scale_factor_temporal"):
        vae_scale_factors({"temperal_downsample": [False, False, True], "scale_factor_temporal": 4})


@pytest.mark.parametrize("n", [1, 5, 9, 13, 17, 21, 81])
def test_valid_frame_counts_pass(n):
    assert check_num_frames(n) == n


def test_invalid_frame_count_message():
    with pytest.raises(ValueError) as info:
        check_num_frames(12)
    msg = str(info.value)
    assert "4k+1" in msg and "got 12" in msg and "9, 13, 17" in msg and "--round-frames" in msg and "13" in msg


@pytest.mark.parametrize(("n", "expected"), [(12, 13), (10, 13), (14, 17), (2, 5)])
def test_round_up_logs(n, expected, caplog):
    with caplog.at_level(logging.WARNING, logger="vist3a.data.clip"):
        assert check_num_frames(n, round_up=True) == expected
    assert f"{n} -> {expected}" in caplog.text


def test_frame_count_type_and_range():
    with pytest.raises(ValueError, match="at least 1"):
        check_num_frames(0, round_up=True)
    with pytest.raises(ValueError, match="int"):
        check_num_frames(13.0)
    assert check_num_frames(7, temporal_factor=2) == 7
    assert num_latent_frames(13) == 4 and num_latent_frames(81) == 21


def test_resolution_rules():
    assert check_resolution(512, 480) == (512, 480)
    with pytest.raises(ValueError, match=r"multiples of \(16, 16\).*`width`=500.*512x496"):
        check_resolution(512, 500)
    with pytest.raises(ValueError, match="`height`=0"):
        check_resolution(0, 16)
    assert check_resolution(24, 16, (8, 16)) == (24, 16)


def test_latent_shape(vae_config):
    assert latent_shape(13, 512, 512, vae_config) == (16, 4, 64, 64)
    assert latent_shape(81, 480, 832, vae_config) == (16, 21, 60, 104)
    with pytest.raises(ValueError, match="4k\\+1"):
        latent_shape(12, 512, 512, vae_config)
