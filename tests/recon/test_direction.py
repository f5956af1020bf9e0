"""Helpers of the test-time direction choice (vist3a.recon.direction)."""

from __future__ import annotations

import pytest
import torch

from vist3a.recon.direction import heldout_views, intrinsics_for


def test_heldout_views_are_interior_and_evenly_spread():
    assert heldout_views(13, 4) == ([0, 1, 3, 4, 6, 8, 9, 11, 12], [2, 5, 7, 10])
    assert heldout_views(5, 1) == ([0, 1, 3, 4], [2])
    with pytest.raises(ValueError):
        heldout_views(5, 4)


def test_intrinsics_follow_the_pixel_they_describe_across_sizes():
    """A ray through the centre of pixel u at the model's size goes through the same physical point of the image
    at any other size: pixel (u + 0.5) * s - 0.5 (vist3a's integer-centre convention)."""
    K_edge = torch.tensor([[100.0, 0.0, 56.0], [0.0, 90.0, 56.0], [0.0, 0.0, 1.0]])  # 112 px, c = size / 2
    K = intrinsics_for(K_edge, (112, 112), (64, 48))
    ray = torch.tensor([0.3, -0.2, 1.0])
    u_model = K_edge @ ray - torch.tensor([0.5, 0.5, 0.0])  # edge -> centre convention at the model's size
    u_image = K @ ray
    assert u_image[0] == pytest.approx(float((u_model[0] + 0.5) * 48 / 112 - 0.5), abs=1e-5)
    assert u_image[1] == pytest.approx(float((u_model[1] + 0.5) * 64 / 112 - 0.5), abs=1e-5)
    assert K[0, 2] == pytest.approx((48 - 1) / 2) and K[1, 2] == pytest.approx((64 - 1) / 2)
