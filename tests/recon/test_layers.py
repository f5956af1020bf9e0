"""Building blocks against independent references (complex-number RoPE, naive attention, analytic cases)."""

from __future__ import annotations

import math

import pytest
import torch

from vist3a.recon.aggregator import expand_special_tokens
from vist3a.recon.heads.activations import activate_dense, activate_pose, inverse_log
from vist3a.recon.heads.dpt_head import ResidualConvUnit, select_layers, uv_pos_embed
from vist3a.recon.layers import Attention, DinoVisionTransformer, RotaryEmbedding2D, grid_positions


def complex_rope(x: torch.Tensor, pos: torch.Tensor, base: float) -> torch.Tensor:
    """Reference 2D RoPE: per axis, feature k pairs with k + d/2 as one complex number rotated by p·θ_k."""
    out = []
    for axis, part in enumerate(x.double().chunk(2, dim=-1)):
        d = part.shape[-1]
        theta = base ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)
        z = torch.complex(part[..., : d // 2], part[..., d // 2 :])
        z = z * torch.polar(torch.ones_like(theta), pos[:, None, :, axis, None].double() * theta)
        out.append(torch.cat((z.real, z.imag), -1))
    return torch.cat(out, -1)


def test_rope_matches_complex_reference_and_is_relative():
    rope = RotaryEmbedding2D(100.0)
    q = torch.randn(2, 3, 7, 16, dtype=torch.float64)
    pos = torch.randint(0, 9, (2, 7, 2))
    torch.testing.assert_close(rope(q, pos), complex_rope(q, pos, 100.0))
    # scores depend only on position differences
    k = torch.randn_like(q)
    shift = torch.tensor([3, 5])
    s1 = (rope(q, pos) * rope(k, pos)).sum(-1)
    s2 = (rope(q, pos + shift) * rope(k, pos + shift)).sum(-1)
    torch.testing.assert_close(s1, s2)
    torch.testing.assert_close(rope(q, torch.zeros_like(pos)), q)


def test_grid_positions_layout():
    pos = grid_positions(2, (2, 3), num_special=2)
    assert pos.shape == (2, 8, 2)
    assert pos[0, :2].tolist() == [[0, 0], [0, 0]]
    assert pos[0, 2:].tolist() == [[1, 1], [1, 2], [1, 3], [2, 1], [2, 2], [2, 3]]  # (y, x), row-major, +1


def test_attention_matches_naive_softmax():
    torch.manual_seed(1)
    rope = RotaryEmbedding2D(100.0)
    attn = Attention(24, 3, qk_norm=True, rope=rope).double()
    x = torch.randn(2, 6, 24, dtype=torch.float64)
    pos = torch.randint(0, 4, (2, 6, 2))
    qkv = attn.qkv(x).reshape(2, 6, 3, 3, 8).permute(2, 0, 3, 1, 4)
    q, k, v = attn.q_norm(qkv[0]), attn.k_norm(qkv[1]), qkv[2]
    q, k = complex_rope(q, pos, 100.0), complex_rope(k, pos, 100.0)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(8), -1)
    ref = attn.proj((weights @ v).transpose(1, 2).reshape(2, 6, 24))
    torch.testing.assert_close(attn(x, pos), ref)
    with pytest.raises(ValueError, match="pos"):
        attn(x)


def test_special_tokens_first_frame_slot():
    token = torch.stack((torch.zeros(1, 4), torch.ones(1, 4)))[None]  # [1, 2, 1, 4]: slot 0 zeros, slot 1 ones
    out = expand_special_tokens(token, batch=2, views=3).reshape(2, 3, 1, 4)
    assert bool((out[:, 0] == 0).all()) and bool((out[:, 1:] == 1).all())


def test_dino_positional_embedding_interpolation():
    dino = DinoVisionTransformer(img_size=56, patch_size=14, embed_dim=8, depth=1, num_heads=2)
    with torch.no_grad():
        dino.pos_embed.normal_()
    native = dino.interpolate_pos_encoding((4, 4), torch.float32)
    torch.testing.assert_close(native, dino.pos_embed)
    assert dino.interpolate_pos_encoding((3, 5), torch.float32).shape == (1, 1 + 15, 8)
    # a constant field stays constant under (antialiased) bicubic resampling; CLS is untouched
    with torch.no_grad():
        dino.pos_embed[:, 1:] = 0.7
    resized = dino.interpolate_pos_encoding((2, 7), torch.float32)
    torch.testing.assert_close(resized[:, 1:], torch.full((1, 14, 8), 0.7))
    torch.testing.assert_close(resized[:, 0], dino.pos_embed[:, 0])


def test_dpt_layer_selection_rule():
    tokens = [torch.full((1,), float(i)) for i in range(24)]
    assert [float(t) for t in select_layers(tokens, (4, 11, 17, 23))] == [4, 11, 17, 23]  # > 10: layer ids
    few = [torch.full((1,), float(i)) for i in range(6)]
    assert [float(t) for t in select_layers(few, (1, 3, 4, 5))] == [0, 1, 2, 3]  # <= 10: positions


def test_uv_pos_embed_analytic_values():
    emb = uv_pos_embed(2, 3, 8, aspect_ratio=1.5, dtype=torch.float32, device=torch.device("cpu"))
    assert emb.shape == (8, 2, 3)
    diag = math.sqrt(1.5**2 + 1)
    u = -1.5 / diag * 2 / 3  # left column
    v = 1 / diag * 1 / 2  # bottom row
    omega = [1.0, 100.0**-0.5]
    expected = [math.sin(u * w) for w in omega] + [math.cos(u * w) for w in omega]
    expected += [math.sin(v * w) for w in omega] + [math.cos(v * w) for w in omega]
    torch.testing.assert_close(emb[:, 1, 0], torch.tensor(expected))


def test_residual_unit_skip_carries_relu():
    unit = ResidualConvUnit(2)
    for conv in (unit.conv1, unit.conv2):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    x = torch.randn(1, 2, 3, 3)
    torch.testing.assert_close(unit(x), x.relu())


def test_activations():
    y = torch.tensor([-2.0, 0.0, 1.5])
    torch.testing.assert_close(inverse_log(y), torch.sign(y) * (torch.exp(y.abs()) - 1))
    raw = torch.randn(2, 4, 3, 5)  # [N, C + 1, H, W]
    values, conf = activate_dense(raw, "exp", "expp1")
    torch.testing.assert_close(values, raw[:, :3].permute(0, 2, 3, 1).exp())
    torch.testing.assert_close(conf, 1 + raw[:, 3].exp())
    pose = torch.tensor([[1.0, -1.0, 2.0, 0.1, 0.2, 0.3, 0.9, -0.5, 0.4]])
    torch.testing.assert_close(activate_pose(pose), torch.tensor([[1.0, -1.0, 2.0, 0.1, 0.2, 0.3, 0.9, 0.0, 0.4]]))
    with pytest.raises(ValueError, match="activation"):
        activate_dense(raw, "nope", "expp1")
