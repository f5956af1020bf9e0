"""The scored views of a scene and its renders at its predicted cameras (:mod:`vist3a.evaluation.views`)."""

from __future__ import annotations

import torch

from vist3a.evaluation.views import evenly_spaced, render_predicted_views


def test_evenly_spaced_views():
    assert evenly_spaced(13, 8) == [0, 2, 3, 5, 7, 9, 10, 12]
    assert evenly_spaced(5, 8) == [0, 1, 2, 3, 4]
    assert evenly_spaced(13, 1) == [0]


def test_renders_at_the_frames_size_with_rescaled_intrinsics():
    """A splat on the optical axis lands on the image centre of the smaller frames (pixel-centre convention)."""
    from vist3a.scene import Scene
    from vist3a.splats import Gaussians

    splat = Gaussians(means=torch.tensor([[0.0, 0.0, 4.0]]), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                      scales=torch.full((1, 3), 0.05), opacities=torch.ones(1), sh=torch.ones(1, 1, 3))
    K = torch.tensor([[40.0, 0.0, 15.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]])  # principal point at the centre
    scene = Scene(prompt="p", frames=torch.zeros(2, 3, 16, 16), w2c=torch.eye(4).expand(2, 4, 4).clone(),
                  K=K.expand(2, 3, 3).clone(), image_size=(32, 32), gaussians=splat)
    out = render_predicted_views(scene, [1], backend="torch")
    assert out.shape == (1, 3, 16, 16)
    brightness = out[0].sum(0)
    # symmetric about the centre (7.5, 7.5) of the 16 px image
    torch.testing.assert_close(brightness, brightness.flip(0).flip(1), atol=1e-5, rtol=0)
    assert float(brightness[7:9, 7:9].mean()) > 2 * float(brightness.mean())
