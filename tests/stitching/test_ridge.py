"""Streamed ridge fit: im2col, dense least-squares reference, noiseless recovery, the ridge_fit oracle."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from vist3a.stitching import (
    DEFAULT_TARGET,
    RidgeAccumulator,
    build_stitching_layer,
    evaluate_mse,
    fit_stitching_layer,
    fit_stitching_layers,
    im2col3d,
    parse_spec,
    upsample_latent,
)
from vist3a.stitching.parity_cases import run_ridge_case


def loop_im2col(frames: torch.Tensor, spec_text: str) -> torch.Tensor:
    """Reference im2col by explicit indexing (zero padding), rows (n, t, i, j), columns (c, kt, kh, kw)."""
    spec = parse_spec(spec_text)
    n, c, t, h, w = frames.shape
    (kt, kh, kw), (st, sh, sw), (pt, ph, pw), (dt, dh, dw) = spec.kernel, spec.stride, spec.padding, spec.dilation
    t_out, h_out, w_out = spec.output_thw(t, h, w)
    rows = []
    for b, to, io, jo in itertools.product(range(n), range(t_out), range(h_out), range(w_out)):
        row = torch.zeros(c, kt, kh, kw, dtype=frames.dtype)
        for a, p, q in itertools.product(range(kt), range(kh), range(kw)):
            ti, hi, wi = to * st - pt + a * dt, io * sh - ph + p * dh, jo * sw - pw + q * dw
            if 0 <= ti < t and 0 <= hi < h and 0 <= wi < w:
                row[:, a, p, q] = frames[b, :, ti, hi, wi]
        rows.append(row.flatten())
    return torch.stack(rows)


def grid_to_tokens(grid: torch.Tensor) -> torch.Tensor:
    """Conv output ``[N, D, T, H, W]`` -> token layout ``[N, T, H·W, D]`` (the hooks' layout)."""
    n, d, t, h, w = grid.shape
    return grid.permute(0, 2, 3, 4, 1).reshape(n, t, h * w, d)


def make_batches(gen, sizes, in_channels, latent_thw, out_channels, spec_text, dtype=torch.float64):
    """Random latents with random token targets on the conv output grid of ``spec_text``."""
    spec = parse_spec(spec_text)
    batches = []
    for n in sizes:
        z = torch.randn(n, in_channels, *latent_thw, generator=gen, dtype=dtype)
        t_out, h_out, w_out = spec.output_thw((latent_thw[0] - 1) * 4 + 1, *latent_thw[1:])
        y = torch.randn(n, t_out, h_out * w_out, out_channels, generator=gen, dtype=dtype)
        batches.append((z, y))
    return batches


# ---------------------------------------------------------------------------- im2col
@pytest.mark.parametrize(
    "spec_text",
    ["conv3d_k3x3x3_o4_s1x2x2_p1x1x1", "conv3d_k2x3x1_o4_s2x1x2_p0x2x1_d1x2x1", "conv3d_k1x1x1_o4"],
)
def test_im2col_matches_loop_and_conv(spec_text):
    gen = torch.Generator().manual_seed(0)
    frames = torch.randn(2, 3, 4, 5, 6, generator=gen, dtype=torch.float64)
    cols = im2col3d(frames, spec_text)
    torch.testing.assert_close(cols, loop_im2col(frames, spec_text), rtol=0, atol=0)
    # X @ W is the zero-padded convolution
    spec = parse_spec(spec_text)
    weight = torch.randn(4, 3, *spec.kernel, generator=gen, dtype=torch.float64)
    conv = F.conv3d(frames, weight, stride=spec.stride, padding=spec.padding, dilation=spec.dilation)
    torch.testing.assert_close(cols @ weight.flatten(1).T, conv.permute(0, 2, 3, 4, 1).reshape(-1, 4))


# ---------------------------------------------------------------------------- dense reference
def test_streamed_fit_matches_dense_lstsq():
    spec_text, ridge = "conv3d_k3x3x3_o5_s1x2x2_p1x1x1", 0.3
    gen = torch.Generator().manual_seed(1)
    batches = make_batches(gen, [2, 1, 3], 3, (2, 6, 6), 5, spec_text)
    acc = RidgeAccumulator(spec_text, in_channels=3, ridge=ridge)
    for z, y in batches:
        acc.update(z, y)
    for z, y in batches:
        acc.update_bias(z, y)
    weight, bias = acc.solve()
    assert weight.dtype == torch.float64 and weight.shape == (5, 3, 3, 3, 3) and bias.shape == (5,)

    # dense: explicit X of all data, ridge as an augmented least-squares problem
    x = torch.cat([loop_im2col(upsample_latent(z), spec_text) for z, _ in batches])
    y = torch.cat([t.reshape(-1, 5) for _, t in batches])
    d = x.shape[1]
    x_aug = torch.cat([x, math.sqrt(ridge) * torch.eye(d, dtype=x.dtype)])
    y_aug = torch.cat([y, torch.zeros(d, 5, dtype=y.dtype)])
    w_ref = torch.linalg.lstsq(x_aug, y_aug).solution
    b_ref = (y - x @ w_ref).mean(0)
    assert acc.num_rows == x.shape[0]
    torch.testing.assert_close(weight.flatten(1).T, w_ref, rtol=1e-9, atol=1e-11)
    torch.testing.assert_close(bias, b_ref, rtol=1e-9, atol=1e-11)


def test_shared_gram_matches_separate_fits():
    spec_text = "conv3d_k1x3x3_o4_s1x1x1_p0x1x1"
    gen = torch.Generator().manual_seed(2)
    batches = make_batches(gen, [2, 2], 2, (2, 4, 4), 4, spec_text)
    other = [torch.randn(y.shape, generator=gen, dtype=y.dtype) for _, y in batches]

    def named():
        return [(z, {"a": y, "b": o}) for (z, y), o in zip(batches, other, strict=True)]

    layers = fit_stitching_layers(spec_text, named, in_channels=2, progress=False)
    assert set(layers) == {"a", "b"}
    single_a = fit_stitching_layer(spec_text, lambda: batches, in_channels=2, progress=False)
    single_b = fit_stitching_layer(
        spec_text, lambda: [(z, o) for (z, _), o in zip(batches, other, strict=True)], in_channels=2, progress=False
    )
    for shared, single in ((layers["a"], single_a), (layers["b"], single_b)):
        torch.testing.assert_close(shared.weight, single.weight, rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(shared.bias, single.bias, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(layers["a"].weight, layers["b"].weight)


# ---------------------------------------------------------------------------- noiseless recovery
def test_recovers_known_conv_on_noiseless_data():
    spec_text = "conv3d_k3x3x3_o6_s1x2x2_p1x1x1"
    spec = parse_spec(spec_text)
    gen = torch.Generator().manual_seed(3)
    w_true = torch.randn(6, 4, *spec.kernel, generator=gen, dtype=torch.float64)
    latents = [torch.randn(2, 4, 3, 8, 8, generator=gen, dtype=torch.float64) for _ in range(3)]
    # targets from the known conv with ZERO padding (the fit's own patch convention), no bias
    tokens = [
        grid_to_tokens(F.conv3d(upsample_latent(z), w_true, stride=spec.stride, padding=spec.padding)) for z in latents
    ]
    data = list(zip(latents, tokens, strict=True))
    acc = RidgeAccumulator(spec_text, in_channels=4, ridge=1e-8)
    for z, y in data:
        acc.update(z, y)
    for z, y in data:
        acc.update_bias(z, y)
    weight, bias = acc.solve()
    torch.testing.assert_close(weight, w_true, rtol=0, atol=1e-7 * float(w_true.abs().max()))
    assert float(bias.abs().max()) < 1e-7

    # the layer pads with REPLICATE: it reproduces the targets exactly wherever no padding is read
    layer = acc.build_layer(dtype=torch.float64)
    with torch.no_grad():
        pred = layer(latents[0])
    target = F.conv3d(upsample_latent(latents[0]), w_true, stride=spec.stride, padding=spec.padding)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, None), slice(1, None))
    torch.testing.assert_close(pred[interior], target[interior], rtol=0, atol=1e-6)
    assert not torch.allclose(pred, target, atol=1e-3)  # the border does differ


# ---------------------------------------------------------------------------- evaluate_mse
def test_evaluate_mse_analytic():
    gen = torch.Generator().manual_seed(4)
    layer = build_stitching_layer("conv3d_k3x3x3_o3_s1x2x2_p1x1x1", in_channels=2)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.copy_(torch.tensor([0.5, -1.0, 2.0]))
    batches = make_batches(gen, [2, 1], 2, (2, 4, 4), 3, str(layer.spec), dtype=torch.float32)
    bias = layer.bias.detach().double()
    expected_sum = sum(float((y.double() - bias).square().sum()) for _, y in batches)
    expected = expected_sum / sum(y.numel() for _, y in batches)
    assert evaluate_mse(layer, batches) == pytest.approx(expected, rel=1e-6)
    assert evaluate_mse(layer, batches, dtype=torch.float64) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="empty"):
        evaluate_mse(layer, [])


# ---------------------------------------------------------------------------- errors
def test_accumulator_errors():
    spec_text = "conv3d_k1x3x3_o4_s1x1x1_p0x1x1"
    gen = torch.Generator().manual_seed(5)
    (z, y), (z2, y2) = make_batches(gen, [2, 1], 2, (2, 4, 4), 4, spec_text)
    with pytest.raises(ValueError, match="out_channels"):
        RidgeAccumulator(spec_text, in_channels=2, out_channels=5)
    acc = RidgeAccumulator(spec_text, in_channels=2)
    with pytest.raises(RuntimeError, match="update"):
        acc.solve()
    with pytest.raises(ValueError, match="latent"):
        acc.update(torch.randn(2, 3, 2, 4, 4), y)
    with pytest.raises(ValueError, match="V=5"):
        acc.update(z, y[:, :4])
    acc.update(z, y)
    acc.update(z2, y2)
    with pytest.raises(ValueError, match="same in every batch"):
        acc.update(z, {"other": y})
    assert acc.targets == [DEFAULT_TARGET]
    with pytest.raises(RuntimeError, match="update_bias"):
        acc.solve()
    acc.update_bias(z, y)
    with pytest.raises(ValueError, match="same data"):
        acc.solve()
    with pytest.raises(RuntimeError, match="after the weights"):
        acc.update(z, y)


# ---------------------------------------------------------------------------- parity cases
def test_ridge_fit_oracle(oracle_dir):
    ref = load_file(str(oracle_dir / "ridge_fit" / "outputs.safetensors"))
    out = run_ridge_case(oracle_dir / "ridge_fit")["outputs"]
    assert set(out) == set(ref)
    for key, value in ref.items():
        got = out[key]
        assert got.dtype == value.dtype and got.shape == value.shape, key
        if key.endswith((".weight", ".bias")):
            assert float((got - value).abs().max()) <= 1e-6 * float(value.abs().max()), key
        else:
            rel = 1e-5 if key.endswith("mse_float64_eval") else 1e-4
            assert float(got) == pytest.approx(float(value), rel=rel), key
    best = min((k for k in out if k.endswith(".mse")), key=lambda k: float(out[k]))
    config = json.loads((oracle_dir / "ridge_fit" / "config.json").read_text())
    assert best.removesuffix(".mse") == config["best_layer"]


def test_ridge_case_on_another_folder(tmp_path):
    """Same format, other sizes/spec/temporal factor: weights match a dense solve, MSEs are consistent."""
    spec_text, ridge = "conv3d_k2x3x3_o3_s1x1x1_p1x1x1", 1e-3
    spec = parse_spec(spec_text)
    gen = torch.Generator().manual_seed(6)
    latents = torch.randn(3, 2, 2, 5, 5, generator=gen).half()
    frames = upsample_latent(latents.double(), temporal_factor=2)  # 3 frames
    t_out, h_out, w_out = spec.output_thw(*frames.shape[2:])
    inputs = {"Z": latents}
    for name in ("enc_blocks_1", "enc_blocks_2"):
        inputs[f"Y.{name}"] = torch.randn(3, t_out, h_out * w_out, 3, generator=gen).half()
    save_file(inputs, str(tmp_path / "inputs.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"conv_spec": spec_text, "ridge": ridge}))

    out = run_ridge_case(tmp_path)["outputs"]
    x = im2col3d(frames, spec)
    eye = torch.eye(x.shape[1], dtype=torch.float64)
    for name in ("enc_blocks_1", "enc_blocks_2"):
        y = inputs[f"Y.{name}"].double().reshape(-1, 3)
        w_ref = torch.linalg.solve(x.T @ x + ridge * eye, x.T @ y)
        b_ref = (y - x @ w_ref).mean(0)
        torch.testing.assert_close(out[f"{name}.weight"].double().flatten(1).T, w_ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(out[f"{name}.bias"].double(), b_ref, rtol=1e-5, atol=1e-6)
        layer = build_stitching_layer(spec, in_channels=2, temporal_factor=2).double()
        layer.load_state_dict({"weight": out[f"{name}.weight"], "bias": out[f"{name}.bias"]})
        mse64 = evaluate_mse(layer, [(latents.double(), inputs[f"Y.{name}"].double())])
        assert float(out[f"{name}.mse_float64_eval"]) == pytest.approx(mse64, rel=1e-12)
        assert float(out[f"{name}.mse"]) == pytest.approx(mse64, rel=1e-3)


@pytest.mark.gpu
def test_streamed_fit_cuda_matches_cpu():
    spec_text = "conv3d_k3x3x3_o8_s1x2x2_p1x1x1"
    gen = torch.Generator().manual_seed(8)
    batches = make_batches(gen, [2, 3], 4, (3, 8, 8), 8, spec_text, dtype=torch.float32)
    cpu = fit_stitching_layer(spec_text, lambda: batches, in_channels=4, progress=False)
    cuda = fit_stitching_layer(
        spec_text, lambda: [(z.cuda(), y.cuda()) for z, y in batches], in_channels=4, progress=False
    )
    assert cuda.weight.is_cuda
    torch.testing.assert_close(cuda.weight.cpu(), cpu.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(cuda.bias.cpu(), cpu.bias, rtol=1e-6, atol=1e-7)
    cuda_batches = [(z.cuda(), y.cuda()) for z, y in batches]
    exact = evaluate_mse(cpu, batches, dtype=torch.float64)
    assert evaluate_mse(cuda, cuda_batches, dtype=torch.float64) == pytest.approx(exact, rel=1e-12)
    # float32 convs on CUDA may run in TF32 (cuDNN's default): only ~1e-4 relative
    assert evaluate_mse(cuda, cuda_batches) == pytest.approx(exact, rel=1e-3)
