"""PSNR / SSIM against a hand computation, an independent scipy SSIM and (when installed) torchmetrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from vist3a.evaluation.image_metrics import image_metrics


def test_psnr_of_a_constant_error_is_hand_computed():
    target = torch.full((2, 3, 8, 8), 0.5)
    pred = target + torch.tensor([0.1, 0.01])[:, None, None, None]
    out = image_metrics(pred, target)
    torch.testing.assert_close(out["psnr"], torch.tensor([-10 * math.log10(0.01), -10 * math.log10(1e-4)]))


def ssim_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al. 2004 with scipy's Gaussian filter (sigma 1.5, truncated to 11 taps), valid region only."""
    from scipy.ndimage import gaussian_filter

    blur = lambda a: gaussian_filter(a, sigma=1.5, truncate=3.5, mode="constant")[5:-5, 5:-5]
    values = []
    for c in range(x.shape[0]):
        a, b = x[c].astype(np.float64), y[c].astype(np.float64)
        mx, my = blur(a), blur(b)
        vx, vy, cxy = blur(a * a) - mx**2, blur(b * b) - my**2, blur(a * b) - mx * my
        c1, c2 = 0.01**2, 0.03**2
        values.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_an_independent_scipy_computation():
    pytest.importorskip("scipy")
    gen = torch.Generator().manual_seed(0)
    target = torch.rand(2, 3, 32, 40, generator=gen)
    pred = (target + 0.1 * torch.randn(2, 3, 32, 40, generator=gen)).clamp(0, 1)
    out = image_metrics(pred, target)["ssim"]
    for i in range(2):
        assert float(out[i]) == pytest.approx(ssim_reference(pred[i].numpy(), target[i].numpy()), abs=1e-5)
    assert float(image_metrics(target, target)["ssim"].min()) == pytest.approx(1.0, abs=1e-6)


def test_psnr_ssim_match_torchmetrics():
    functional = pytest.importorskip("torchmetrics.functional.image")
    gen = torch.Generator().manual_seed(1)
    target = torch.rand(3, 3, 24, 24, generator=gen)
    pred = (target + 0.05 * torch.randn(3, 3, 24, 24, generator=gen)).clamp(0, 1)
    out = image_metrics(pred, target)
    for i in range(3):
        tm_psnr = functional.peak_signal_noise_ratio(pred[i : i + 1], target[i : i + 1], data_range=1.0)
        tm_ssim = functional.structural_similarity_index_measure(pred[i : i + 1], target[i : i + 1], data_range=1.0)
        assert float(out["psnr"][i]) == pytest.approx(float(tm_psnr), abs=1e-4)
        # torchmetrics' SSIM differs from the valid-window definition (and from the scipy reference above, which
        # ours matches to 1e-5) by up to ~5e-4 on small images; it is a cross-check, not the oracle.
        assert float(out["ssim"][i]) == pytest.approx(float(tm_ssim), abs=1e-3)


def test_lpips_without_its_library_is_one_clear_error(monkeypatch):
    import sys

    from vist3a.errors import UserInputError
    from vist3a.evaluation.image_metrics import load_lpips

    monkeypatch.setitem(sys.modules, "torchmetrics.image.lpip", None)
    with pytest.raises(UserInputError, match=r"vist3a\[eval\]"):
        load_lpips()


class FakeLpips(torch.nn.Module):
    """Mean absolute difference per image, with a torchmetrics-like ``reset``."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.resets = 0

    def forward(self, a, b):
        return (a - b).abs().mean(dim=(1, 2, 3))

    def reset(self):
        self.resets += 1


def test_lpips_values_are_per_image():
    target = torch.zeros(3, 3, 8, 8)
    pred = target + torch.tensor([0.0, 0.1, 0.2])[:, None, None, None]
    fake = FakeLpips()
    out = image_metrics(pred, target, fake)
    torch.testing.assert_close(out["lpips"], torch.tensor([0.0, 0.1, 0.2]))
    assert fake.resets == 1
