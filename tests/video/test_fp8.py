"""fp8 block matmuls: which layers convert, the clear errors where fp8 cannot run, and (GPU) closeness to bf16."""

from __future__ import annotations

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.video.fp8 import check_fp8_supported, fp8_layer_names, quantize_fp8
from vist3a.video.tiny import tiny_transformer_config


def _transformer(inner: int = 64, num_layers: int = 2) -> torch.nn.Module:
    from diffusers import WanTransformer3DModel

    cfg = tiny_transformer_config(text_dim=64)
    cfg.update(attention_head_dim=inner // 2, ffn_dim=2 * inner, num_layers=num_layers)
    torch.manual_seed(0)
    return WanTransformer3DModel(**cfg)


def test_fp8_converts_exactly_the_block_linears():
    model = _transformer(num_layers=3)
    names = fp8_layer_names(model)
    # per block: self-attention q, k, v, out; cross-attention q, k, v, out; feed-forward in, out
    assert len(names) == 3 * 10
    assert all(name.startswith("blocks.") for name in names)
    linears_outside = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear) and n not in names]
    assert linears_outside and not any(n.startswith("blocks.") for n in linears_outside)


def test_fp8_skips_sizes_the_kernels_cannot_take():
    assert fp8_layer_names(_transformer(inner=24)) == []  # 24 is not a multiple of 16


def test_fp8_on_cpu_is_a_clear_error():
    with pytest.raises(UserInputError, match="--fp8 needs a CUDA GPU"):
        check_fp8_supported(torch.device("cpu"))
    with pytest.raises(UserInputError, match="drop --fp8"):
        quantize_fp8(_transformer())


@pytest.mark.gpu
def test_fp8_output_is_close_to_bf16():
    pytest.importorskip("torchao")
    if torch.cuda.get_device_capability() < (8, 9):
        pytest.skip("fp8 matmuls need compute capability >= 8.9")
    model = _transformer(inner=256).to("cuda", torch.bfloat16).eval()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 16, 2, 16, 16, generator=gen).to("cuda", torch.bfloat16)
    text = torch.randn(2, 8, 64, generator=gen).to("cuda", torch.bfloat16)
    t = torch.tensor([300, 700], device="cuda")
    with torch.no_grad():
        ref = model(x, t, text, return_dict=False)[0].float()
        assert quantize_fp8(model) == 2 * 10
        out = model(x, t, text, return_dict=False)[0].float()
    rel = float((out - ref).norm() / ref.norm())
    assert 0 < rel < 0.1  # changed (fp8 really ran), yet close
