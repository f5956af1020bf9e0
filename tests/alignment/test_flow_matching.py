"""The flow-matching loss: interpolation, timestep and target against an independent re-draw of the noise."""

from __future__ import annotations

import pytest
import torch

from vist3a.alignment.flow_matching import flow_matching_loss


class Recorder(torch.nn.Module):
    """Returns ``scale * hidden_states`` and records the call's inputs."""

    def __init__(self, scale: float = 0.5) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(scale))
        self.calls: list[dict[str, torch.Tensor]] = []

    def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
        self.calls.append({"x": hidden_states.detach(), "t": timestep.detach(), "text": encoder_hidden_states})
        return (self.weight * hidden_states,)


def test_inputs_target_and_loss_match_a_hand_computation():
    z0 = torch.randn(3, 16, 2, 4, 4, generator=torch.Generator().manual_seed(5))
    text = torch.randn(3, 7, 8)
    model = Recorder(0.5)
    loss = flow_matching_loss(model, z0, text, generator=torch.Generator().manual_seed(11))

    g = torch.Generator().manual_seed(11)  # the same draws, in the documented order: sigma [B], then eps
    sigma = torch.rand(3, generator=g)
    eps = torch.randn(z0.shape, generator=g)
    s = sigma.view(3, 1, 1, 1, 1)
    z_sigma = (1 - s) * z0 + s * eps
    (call,) = model.calls
    torch.testing.assert_close(call["x"], z_sigma)
    torch.testing.assert_close(call["t"], 1000 * sigma)
    expected = ((0.5 * z_sigma - (eps - z0)) ** 2).mean()
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert model.weight.grad is not None and model.weight.grad.abs() > 0


def test_exact_velocity_gives_zero_loss():
    z0 = torch.randn(2, 16, 1, 2, 2)

    class Oracle(torch.nn.Module):
        """Knows eps: recovers it from z_sigma and sigma, returns the true velocity eps - z0."""

        def __init__(self) -> None:
            super().__init__()
            self.p = torch.nn.Parameter(torch.zeros(()))

        def forward(self, hidden_states, timestep, encoder_hidden_states, return_dict=False):
            s = (timestep / 1000).view(-1, 1, 1, 1, 1)
            eps = (hidden_states - (1 - s) * z0) / s
            return (eps - z0 + self.p,)

    loss = flow_matching_loss(Oracle(), z0, torch.zeros(2, 3, 4), generator=torch.Generator().manual_seed(0))
    assert float(loss.detach()) < 1e-8


def test_shape_errors():
    with pytest.raises(ValueError, match="latents"):
        flow_matching_loss(Recorder(), torch.zeros(2, 16, 4, 4), torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="prompt_embeds"):
        flow_matching_loss(Recorder(), torch.zeros(2, 16, 1, 4, 4), torch.zeros(3, 3, 4))
