"""Video-VAE adapters: factors, frame rules, normalisation and encode/decode for every diffusers family.

Oracles: the latent shapes diffusers' own encoders produce (tiny random VAEs of every class), the diffusion
scaling conventions of the diffusers pipelines written out by hand, and the released checkpoints' architecture
keys (built on the meta device, no weights) for the issue's table.
"""

from __future__ import annotations

import diffusers
import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.video.vae_adapters import (
    VAE_ADAPTERS,
    family_name,
    load_video_vae,
    released_vae_config,
    tiny_vae,
    vae_adapter,
)

FAMILIES = list(VAE_ADAPTERS)


@pytest.fixture(scope="module")
def tiny():
    return {family: tiny_vae(family, seed=0) for family in FAMILIES}


def _clip(adapter, latent_frames: int = 3, side: int = 2, seed: int = 0) -> torch.Tensor:
    frames = adapter.frames_for_latents(latent_frames)
    size = side * adapter.spatial_factor
    return torch.rand(1, frames, 3, size, size, generator=torch.Generator().manual_seed(seed))


# Architecture keys of the released VAEs (their config.json), enough to build them on the meta device.
RELEASED = {
    "wan2.1": ("AutoencoderKLWan", {}),
    "wan2.2": ("AutoencoderKLWan", {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "in_channels": 12,
                                    "out_channels": 12, "is_residual": True, "patch_size": 2,
                                    "scale_factor_spatial": 16, "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48}),
    "cogvideox": ("AutoencoderKLCogVideoX", {}),
    "hunyuanvideo": ("AutoencoderKLHunyuanVideo", {}),
    "svd": ("AutoencoderKLTemporalDecoder", {"block_out_channels": (128, 256, 512, 512),
                                             "down_block_types": ("DownEncoderBlock2D",) * 4, "layers_per_block": 2}),
    "ltx": ("AutoencoderKLLTXVideo", {}),
}
# The issue's table: channels, spatial, temporal, frame rule.
TABLE = {"wan2.1": (16, 8, 4, "4n+1"), "wan2.2": (48, 16, 4, "4n+1"), "cogvideox": (16, 8, 4, "4n+1"),
         "hunyuanvideo": (16, 8, 4, "4n+1"), "svd": (4, 8, 1, "any"), "ltx": (128, 32, 8, "8n+1")}


@pytest.mark.parametrize("family", FAMILIES)
def test_released_configs_give_the_issue_table(family):
    class_name, kwargs = RELEASED[family]
    with torch.device("meta"):
        vae = getattr(diffusers, class_name)(**kwargs)
    adapter = vae_adapter(vae)
    assert adapter.name == family
    channels, spatial, temporal, rule = TABLE[family]
    assert (adapter.latent_channels, adapter.spatial_factor, adapter.temporal_factor, adapter.frame_rule) == (
        channels, spatial, temporal, rule)


@pytest.mark.parametrize("family", FAMILIES)
def test_benchmark_configs_are_the_released_architectures(family):
    with torch.device("meta"):
        vae = getattr(diffusers, RELEASED[family][0])(**released_vae_config(family))
    adapter = vae_adapter(vae)
    facts = (adapter.latent_channels, adapter.spatial_factor, adapter.temporal_factor, adapter.frame_rule)
    assert facts == TABLE[family]


@pytest.mark.parametrize("family", FAMILIES)
def test_latent_shape_matches_the_vae(tiny, family):
    adapter = vae_adapter(tiny[family])
    assert adapter.name == family
    clip = _clip(adapter)
    with torch.no_grad():
        z = adapter.encode(clip)
        mode = adapter.encode(clip, sample=False)
    assert tuple(z.shape[1:]) == adapter.latent_shape(clip.shape[1], clip.shape[3], clip.shape[4])
    assert z.shape[2] == 3 and z.shape[-1] == 2
    assert not torch.equal(z, mode)  # a sample is not the mode


@pytest.mark.parametrize("family", FAMILIES)
def test_encode_decode_shapes(tiny, family):
    adapter = vae_adapter(tiny[family])
    clip = _clip(adapter)
    with torch.no_grad():
        frames = adapter.decode(adapter.encode(clip))
    assert frames.shape == clip.shape
    assert frames.dtype == torch.float32 and float(frames.min()) >= 0.0 and float(frames.max()) <= 1.0


@pytest.mark.parametrize("family", FAMILIES)
def test_frame_rule(tiny, family):
    adapter = vae_adapter(tiny[family])
    f = adapter.temporal_factor
    for k in (0, 1, 3):
        assert adapter.check_num_frames(f * k + 1) == f * k + 1
    if f == 1:
        assert [adapter.num_latent_frames(n) for n in (1, 2, 7)] == [1, 2, 7]
        return
    with pytest.raises(ValueError, match=f"{f}k\\+1"):
        adapter.check_num_frames(f + 2)
    assert adapter.check_num_frames(f + 2, round_up=True) == 2 * f + 1
    assert adapter.num_latent_frames(2 * f + 1) == 3
    with pytest.raises(ValueError):
        adapter.encode(torch.rand(1, f, 3, adapter.spatial_factor, adapter.spatial_factor))
    with pytest.raises(ValueError, match="multiples"):
        adapter.latent_shape(f + 1, adapter.spatial_factor + 1, adapter.spatial_factor)


def _pipeline_normalise(family: str, vae, raw: torch.Tensor) -> torch.Tensor:
    """The diffusion-space latent as each family's diffusers pipeline computes it."""
    shape = (1, -1, 1, 1, 1)
    if family.startswith("wan"):
        mean = torch.tensor(vae.config.latents_mean).view(shape)
        std = torch.tensor(vae.config.latents_std).view(shape)
        return (raw - mean) / std
    if family == "ltx":
        return (raw - vae.latents_mean.view(shape)) * vae.config.scaling_factor / vae.latents_std.view(shape)
    return raw * vae.config.scaling_factor


@pytest.mark.parametrize("family", FAMILIES)
def test_normalisation_matches_pipeline_and_round_trips(tiny, family):
    vae = tiny[family]
    adapter = vae_adapter(vae)
    raw = torch.randn(2, adapter.latent_channels, 3, 2, 2, generator=torch.Generator().manual_seed(1)) * 2 + 0.5
    norm = adapter.normalize(raw)
    torch.testing.assert_close(norm, _pipeline_normalise(family, vae, raw), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(adapter.denormalize(norm), raw, rtol=1e-5, atol=1e-5)
    assert adapter.normalize(raw.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(ValueError, match=str(adapter.latent_channels)):
        adapter.normalize(torch.zeros(1, adapter.latent_channels + 1, 1, 2, 2))


def test_families_with_per_channel_statistics_are_not_scalars(tiny):
    for family in ("wan2.2", "ltx"):
        adapter = vae_adapter(tiny[family])
        shift, gain = adapter._shift_gain()
        assert shift.unique().numel() > 1 and gain.unique().numel() > 1


def test_cogvideox_decode_needs_an_odd_latent_count(tiny):
    adapter = vae_adapter(tiny["cogvideox"])
    with pytest.raises(ValueError, match="odd"):
        adapter.decode(torch.zeros(1, adapter.latent_channels, 2, 2, 2))


def test_image_vae_is_one_clear_error(tmp_path):
    vae = diffusers.AutoencoderKL(block_out_channels=(32,), norm_num_groups=32)
    with pytest.raises(UserInputError, match=r"image VAE \(AutoencoderKL\)"):
        vae_adapter(vae)
    vae.save_pretrained(tmp_path / "image" / "vae")
    with pytest.raises(UserInputError, match="image VAE"):
        load_video_vae(str(tmp_path / "image"))


def test_a_subclass_is_its_family(tiny):
    class MyWan(diffusers.AutoencoderKLWan):
        pass

    vae = MyWan(**{k: v for k, v in tiny["wan2.2"].config.items() if not k.startswith("_")})
    assert vae_adapter(vae).name == "wan2.2"


def test_unknown_module_is_rejected():
    with pytest.raises(UserInputError, match="not a supported video VAE"):
        vae_adapter(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("family", ["wan2.2", "svd"])
def test_load_from_folder_and_family_name(tmp_path, tiny, family):
    tiny[family].save_pretrained(tmp_path / "pipe" / "vae")
    for source in (tmp_path / "pipe", tmp_path / "pipe" / "vae"):
        vae, desc = load_video_vae(str(source))
        assert type(vae) is type(tiny[family]) and desc == str(source)
        for (name, a), b in zip(vae.state_dict().items(), tiny[family].state_dict().values(), strict=True):
            assert torch.equal(a, b), name
    vae, desc = load_video_vae(family.upper(), tiny=True, seed=0)
    assert vae_adapter(vae).name == family and "tiny" in desc


def test_family_aliases():
    assert family_name("Hunyuan") == "hunyuanvideo"
    assert family_name("ltx-video") == "ltx"
    assert family_name("wan") == "wan2.1"
    assert family_name("Wan-AI/Wan2.1-T2V-1.3B-Diffusers") is None


@pytest.mark.parametrize("family", FAMILIES)
def test_posterior_and_decoder_output_are_what_encode_and_decode_use(tiny, family):
    """The training-side views of a VAE (issue 18's nano VAE stage): the posterior in the latent layout, and the
    VAE's own unclamped output in the input's ``[B, 3, T, H, W]`` layout, of which encode/decode are the mode and
    the clamped frames."""
    from vist3a.video.frames import vae_to_frames

    adapter = vae_adapter(tiny[family])
    clip = _clip(adapter)
    with torch.no_grad():
        posterior = adapter.posterior(clip)
        z = adapter.encode(clip, sample=False)
        pixels = adapter.decode_pixels(z)
        frames = adapter.decode(z)
    assert posterior.mean.shape == posterior.logvar.shape == z.shape
    torch.testing.assert_close(posterior.mode(), z, rtol=0, atol=0)
    assert pixels.shape == adapter.pixels(clip).shape == clip.transpose(1, 2).shape
    torch.testing.assert_close(vae_to_frames(pixels), frames, rtol=0, atol=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_fit_normalization_follows_the_family_convention(family):
    """Per-channel statistics of raw latents -> the family's normalisation: per-channel N(0, 1) for Wan and LTX,
    one ``scaling_factor`` (1 / pooled std, no shift) for the others; the values land in the saved config."""
    vae = tiny_vae(family, seed=1)
    adapter = vae_adapter(vae)
    channels = adapter.latent_channels
    scale = 0.5 + torch.arange(channels, dtype=torch.float64) / channels
    offset = torch.linspace(-1, 1, channels, dtype=torch.float64)
    z = torch.randn(4, channels, 3, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    z = z * scale.view(1, -1, 1, 1, 1) + offset.view(1, -1, 1, 1, 1)
    flat = z.transpose(0, 1).reshape(channels, -1)
    fitted = adapter.fit_normalization(flat.mean(1).tolist(), flat.std(1, unbiased=False).tolist())
    norm = adapter.normalize(z.float()).double()
    if family in ("wan2.1", "wan2.2", "ltx"):
        assert set(fitted) == {"latents_mean", "latents_std"}
        norm_flat = norm.transpose(0, 1).reshape(channels, -1)
        torch.testing.assert_close(norm_flat.mean(1), torch.zeros(channels, dtype=torch.float64), atol=1e-5, rtol=0)
        torch.testing.assert_close(norm_flat.std(1, unbiased=False), torch.ones(channels, dtype=torch.float64),
                                   atol=1e-5, rtol=0)
    else:
        assert set(fitted) == {"scaling_factor"} and vae.config.scaling_factor == fitted["scaling_factor"]
        assert float(norm.std(unbiased=False)) == pytest.approx(1.0, abs=1e-5)
        torch.testing.assert_close(norm, z * fitted["scaling_factor"], atol=1e-5, rtol=1e-5)
    if family.startswith("wan"):
        assert list(vae.config.latents_mean) == fitted["latents_mean"]
    with pytest.raises(ValueError, match="one value per latent channel"):
        adapter.fit_normalization([0.0], [1.0])
