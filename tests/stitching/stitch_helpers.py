"""Helpers shared by the stitching tests."""

from __future__ import annotations

import torch


def assert_close_to_oracle(x: torch.Tensor, ref: torch.Tensor, name: str) -> None:
    """The oracle README tolerance: ``|x − ref| ≤ 1e-4·max|ref| + 1e-3·|ref|`` elementwise (bool: exact)."""
    assert tuple(x.shape) == tuple(ref.shape), f"{name}: shape {list(x.shape)} vs oracle {list(ref.shape)}"
    if ref.dtype == torch.bool:
        assert torch.equal(x, ref), f"{name}: {int((x != ref).sum())} entries differ"
        return
    x, ref = x.detach().double(), ref.double()
    bound = 1e-4 * ref.abs().max() + 1e-3 * ref.abs()
    worst = float(((x - ref).abs() - bound).max())
    assert worst <= 0, f"{name}: exceeds the oracle tolerance by {worst:.3g} (max |ref| {float(ref.abs().max()):.3g})"


def perturbed_tiny_model(kind: str, seed: int = 0, dino_depth: int = 3, scale: float = 0.05):
    """A tiny random ``kind`` ("anysplat", "vggt") whose every parameter is moved by ``N(0, scale²)`` so that no
    branch is trivial (fresh inits have zero biases and tiny LayerScales)."""
    from vist3a.recon import random_tiny_model
    from vist3a.recon.hub import tiny_config

    aggregator = dict(tiny_config(kind)["aggregator_config"])
    aggregator["patch_embed"] = {**aggregator["patch_embed"], "depth": dino_depth}
    model = random_tiny_model(kind, seed=seed, aggregator_config=aggregator)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(scale * torch.randn(param.shape, generator=generator))
        model.camera_head.pose_branch.fc2.bias[-2:] += 1.0  # positive fields of view (the FoV activation is a ReLU)
    return model.eval()


def perturbed_tiny_anysplat(seed: int = 0, dino_depth: int = 3, scale: float = 0.05):
    """:func:`perturbed_tiny_model` of AnySplat."""
    return perturbed_tiny_model("anysplat", seed, dino_depth, scale)


def random_frames(batch: int, views: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """``[B, V, 3, H, W]`` uniform in ``[0, 1]``."""
    return torch.rand(batch, views, 3, height, width, generator=torch.Generator().manual_seed(seed))
