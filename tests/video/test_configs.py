"""Full-size Wan 2.1 transformer configs, built on the meta device (no memory, no weights)."""

from __future__ import annotations

import inspect

import pytest
import torch
from diffusers import WanTransformer3DModel  # imported at collection: the first diffusers import takes seconds

from vist3a.video.configs import WAN_REPOS, wan_repo_id, wan_transformer_config


def _meta_parameter_count(size: str) -> int:
    with torch.device("meta"):
        model = WanTransformer3DModel(**wan_transformer_config(size))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("size", "billions"), [("1.3b", 1.419), ("14b", 14.288)])
def test_parameter_counts_match_design(size, billions):
    """DESIGN.md: 1.419 B and 14.288 B = the transformer alone (no UMT5, no VAE, RoPE tables are buffers)."""
    assert round(_meta_parameter_count(size) / 1e9, 3) == billions


def test_14b_is_the_class_default_and_1_3b_differs_in_width_depth():
    defaults = {
        name: p.default
        for name, p in inspect.signature(WanTransformer3DModel.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty
    }
    big = wan_transformer_config("14b")
    assert {k: v for k, v in big.items() if k in defaults} == {k: defaults[k] for k in big if k in defaults}
    small = wan_transformer_config("1.3B")
    assert {k for k in small if small[k] != big[k]} == {"num_attention_heads", "ffn_dim", "num_layers"}
    assert small["num_attention_heads"] * small["attention_head_dim"] == 1536


def test_repo_ids_and_errors():
    assert wan_repo_id("1.3b") == WAN_REPOS["1.3b"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert wan_repo_id("14B") == "Wan-AI/Wan2.1-T2V-14B-Diffusers"
    with pytest.raises(ValueError, match=r"`size` must be one of \['1.3b', '14b'\], got '7b'"):
        wan_transformer_config("7b")
