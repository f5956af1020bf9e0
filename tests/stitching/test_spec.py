"""Stitching-layer spec parsing, output shapes, the upsampling and the layer (incl. the stitched oracle)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from vist3a.stitching import (
    StitchingLayer,
    StitchSpec,
    build_stitching_layer,
    output_hw,
    output_shape,
    parse_spec,
    upsample_latent,
    upsampled_frames,
)

RELEASE_SPEC = "conv3d_k5x3x3_o1024_s1x2x2_p2x1x1"


def test_parse_release_spec_and_round_trip():
    spec = parse_spec(RELEASE_SPEC)
    assert spec == StitchSpec(kernel=(5, 3, 3), out_channels=1024, stride=(1, 2, 2), padding=(2, 1, 1))
    assert str(spec) == RELEASE_SPEC
    assert parse_spec(spec) is spec


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("conv3d_k3_o32", "conv3d_k3x3x3_o32_s1x1x1_p0x0x0"),
        ("conv3d_k5x7x7_o64_s1x3x3_p2x0x0", "conv3d_k5x7x7_o64_s1x3x3_p2x0x0"),
        ("conv3d_k3x3x3_o8_p1", "conv3d_k3x3x3_o8_s1x1x1_p1x1x1"),
        ("Conv3D_K3x3x3_O8_S2_D1x2x2", "conv3d_k3x3x3_o8_s2x2x2_p0x0x0_d1x2x2"),
    ],
)
def test_parse_short_forms(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        "",
        "conv2d_k3_o32",
        "conv3d_k3x3_o32",  # two kernel values
        "conv3d_k3x3x3",  # no output channels
        "conv3d_k3x3x3_o32_p1x1x1_s1x2x2",  # stride after padding
        "conv3d_k3x3x3_o32_extra",
        "conv3d_k0x3x3_o32",  # zero kernel
        "conv3d_k3x3x3_o0",  # zero channels
        "conv3d_k3x3x3_o32_s0",  # zero stride
        "conv3d_k3x3x3x3_o32",
    ],
)
def test_parse_rejects_malformed(text):
    with pytest.raises(ValueError) as info:
        parse_spec(text)
    message = str(info.value)
    assert "spec" in message or "StitchSpec" in message


def test_parse_rejects_non_string():
    with pytest.raises(ValueError, match="string"):
        parse_spec(5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("spec", "latent_thw", "target_hw"),
    [
        (RELEASE_SPEC.replace("o1024", "o8"), (4, 16, 16), None),  # release geometry, narrow
        ("conv3d_k5x7x7_o4_s1x3x3_p2x0x0", (2, 12, 13), None),  # MVDUSt3R geometry, odd sizes
        ("conv3d_k3x3x3_o4_s2x1x2_p1x0x1_d1x2x1", (3, 9, 10), None),
        ("conv3d_k3x3x3_o4_s1x2x2_p1x1x1", (2, 5, 5), (6, 8)),
    ],
)
def test_output_shape_matches_the_layer(spec, latent_thw, target_hw):
    layer = build_stitching_layer(spec, in_channels=3, target_hw=target_hw)
    latent = torch.randn(2, 3, *latent_thw)
    out = layer(latent)
    assert tuple(out.shape[1:]) == layer.output_shape(latent_thw)
    if target_hw is None:
        assert tuple(out.shape[1:]) == output_shape(spec, latent_thw)
        assert tuple(out.shape[-2:]) == output_hw(spec, *latent_thw[1:])


def test_release_geometry():
    # 13 frames at 512 px -> latent (16, 4, 64, 64) -> tokens (1024, 13, 32, 32)
    assert output_shape(RELEASE_SPEC, (4, 64, 64)) == (1024, 13, 32, 32)
    assert output_hw("conv3d_k5x7x7_o1024_s1x3x3_p2x0x0", 48, 48) == (14, 14)


def test_output_size_too_small_raises():
    with pytest.raises(ValueError, match="kernel span"):
        output_hw("conv3d_k1x7x7_o4", 5, 9)


def test_upsample_frames_exact_at_latent_positions():
    latent = torch.randn(2, 3, 4, 5, 6, dtype=torch.float64)
    up = upsample_latent(latent)
    assert up.shape == (2, 3, upsampled_frames(4), 5, 6) == (2, 3, 13, 5, 6)
    for k in range(4):
        assert torch.equal(up[:, :, 4 * k], latent[:, :, k])
    # in between: linear in time
    torch.testing.assert_close(up[:, :, 1], 0.75 * latent[:, :, 0] + 0.25 * latent[:, :, 1])
    torch.testing.assert_close(up[:, :, 6], 0.5 * latent[:, :, 1] + 0.5 * latent[:, :, 2])
    # other temporal factor and a single latent frame
    assert upsample_latent(latent, temporal_factor=2).shape[2] == 7
    assert torch.equal(upsample_latent(latent[:, :, :1]), latent[:, :, :1])
    # spatial resize with align_corners: the corners are kept
    resized = upsample_latent(latent, target_hw=(9, 11))
    assert resized.shape[-2:] == (9, 11)
    assert torch.equal(resized[:, :, ::4, 0, 0], latent[:, :, :, 0, 0])
    assert torch.equal(resized[:, :, ::4, -1, -1], latent[:, :, :, -1, -1])


def test_replicate_padding_on_constant_input():
    layer = build_stitching_layer("conv3d_k3x3x3_o5_s1x2x2_p1x1x1", in_channels=4)
    latent = torch.full((1, 4, 2, 6, 6), 0.7)
    out = layer(latent)
    # replicate padding sees the constant everywhere, borders included (zero padding would not)
    expected = 0.7 * layer.weight.sum(dim=(1, 2, 3, 4)) + layer.bias
    torch.testing.assert_close(out, expected[None, :, None, None, None].expand_as(out))


def test_layer_is_the_conv_for_checkpoints():
    layer = build_stitching_layer(RELEASE_SPEC.replace("o1024", "o8"))
    assert isinstance(layer, StitchingLayer) and isinstance(layer, torch.nn.Conv3d)
    assert set(layer.state_dict()) == {"weight", "bias"}
    assert layer.padding_mode == "replicate"
    assert layer.weight.shape == (8, 16, 5, 3, 3)
    state = {"weight": torch.randn(8, 16, 5, 3, 3), "bias": torch.randn(8)}
    layer.load_state_dict(state, strict=True)
    assert torch.equal(layer.weight, state["weight"])
    with pytest.raises(ValueError, match="latent"):
        layer(torch.randn(1, 3, 2, 8, 8))


def test_stitched_oracle_upsample_and_conv(oracle_dir):
    folder = oracle_dir / "anysplat_stitched_tiny"
    cfg = json.loads((folder / "config.json").read_text())["constructor"]["StitchVAE3D"]
    resolution = next(v for k, v in cfg.items() if k.startswith("resolution"))
    with safe_open(str(folder / "state_dict.safetensors"), "pt") as f:
        state = {key: f.get_tensor(f"stitching_layer.{key}") for key in ("weight", "bias")}
    inputs = load_file(str(folder / "inputs.safetensors"))
    inter = load_file(str(folder / "intermediates.safetensors"))
    latent = inputs["latent"]
    # the release resizes the latent grid to resolution // 8 (the VAE's spatial factor)
    layer = build_stitching_layer(
        cfg["stitching_layer_config"], in_channels=latent.shape[1], target_hw=(resolution // 8, resolution // 8)
    )
    layer.load_state_dict(state, strict=True)
    with torch.no_grad():
        up = layer.upsample(latent)
        tokens = layer(latent)
    for got, ref in ((up, inter["stitch.latent_upsampled"]), (tokens, inter["stitch.tokens_bcvhw"])):
        assert got.shape == ref.shape
        bound = 1e-4 * ref.abs().max() + 1e-3 * ref.abs()
        assert ((got - ref).abs() <= bound).all()
