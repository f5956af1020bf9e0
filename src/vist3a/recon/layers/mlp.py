"""Two-layer perceptron with GELU (names ``fc1`` / ``fc2`` as in the official checkpoints)."""

from __future__ import annotations

import torch
from torch import nn


class Mlp(nn.Module):
    """``fc2(gelu(fc1(x)))``; ``hidden_features`` and ``out_features`` default to ``in_features``."""

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))
