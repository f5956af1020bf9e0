"""Real SH basis against scipy's complex spherical harmonics, plus orthonormality by exact quadrature."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vist3a.splats.sh import SH_MAX_DEGREE, sh_basis, sh_to_color


def _real_sh_from_scipy(degree: int, theta: np.ndarray, phi: np.ndarray) -> np.ndarray:
    """Real SH with the Condon-Shortley phase kept (the 3DGS convention), ordered l, then m = -l..l."""
    from scipy.special import sph_harm_y

    cols = []
    for band in range(degree + 1):
        for m in range(-band, band + 1):
            y = sph_harm_y(band, abs(m), theta, phi)
            if m > 0:
                cols.append(np.sqrt(2.0) * y.real)
            elif m < 0:
                cols.append(np.sqrt(2.0) * y.imag)
            else:
                cols.append(y.real)
    return np.stack(cols, -1)


def test_basis_matches_scipy_for_all_degrees():
    pytest.importorskip("scipy")
    rng = np.random.default_rng(0)
    dirs = rng.normal(size=(500, 3))
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    theta = np.arccos(np.clip(dirs[:, 2], -1, 1))
    phi = np.arctan2(dirs[:, 1], dirs[:, 0])
    expected = _real_sh_from_scipy(SH_MAX_DEGREE, theta, phi)
    for degree in range(SH_MAX_DEGREE + 1):
        got = sh_basis(torch.from_numpy(dirs * 3.7), degree).numpy()  # un-normalised input on purpose
        assert got.shape == (500, (degree + 1) ** 2)
        np.testing.assert_allclose(got, expected[:, : (degree + 1) ** 2], atol=1e-12)


def test_basis_is_orthonormal_on_the_sphere():
    # Gauss-Legendre in cos(theta) x uniform phi integrates these degree <= 8 polynomials exactly
    nodes, weights = np.polynomial.legendre.leggauss(12)
    phi = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    z, ph = np.meshgrid(nodes, phi, indexing="ij")
    w = np.repeat(weights[:, None], phi.size, 1) * (2 * np.pi / phi.size)
    r = np.sqrt(1 - z**2)
    dirs = torch.from_numpy(np.stack((r * np.cos(ph), r * np.sin(ph), z), -1).reshape(-1, 3))
    basis = sh_basis(dirs, SH_MAX_DEGREE).numpy()
    gram = basis.T @ (basis * w.reshape(-1, 1))
    np.testing.assert_allclose(gram, np.eye(25), atol=1e-12)


def test_sh_to_color_degree_selection_and_clamp():
    sh = torch.zeros(2, 9, 3, dtype=torch.float64)
    sh[:, 0] = torch.tensor([[1.0, -1.0, 0.0], [0.2, 0.4, -3.0]], dtype=torch.float64)
    sh[:, 4:] = 5.0  # degree-2 band: must not matter for degree <= 1
    dirs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    c0 = 0.28209479177387814
    expected = (c0 * sh[:, 0] + 0.5).clamp_min(0)
    torch.testing.assert_close(sh_to_color(sh, dirs, 0), expected)
    torch.testing.assert_close(sh_to_color(sh, dirs, 1), expected)  # degree-1 coefficients are zero
    assert not torch.allclose(sh_to_color(sh, dirs), expected)
    assert sh_to_color(sh, dirs, 0)[1, 2] == 0.0  # negative colour clamped to 0
    with pytest.raises(ValueError, match="degree must be in"):
        sh_to_color(sh, dirs, 3)
