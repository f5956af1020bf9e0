"""LoRA on the Wan transformer: release-format (PeftModel) adapters load, merge and save compatibly."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors.torch import load_file

from vist3a.errors import UserInputError
from vist3a.video.lora import (
    DEFAULT_TARGET_MODULES,
    add_lora,
    has_lora,
    load_lora,
    lora_state_dict,
    merge_lora,
    save_lora,
)


def _forward(transformer, cond):
    x = torch.randn(2, 16, 3, 4, 4, generator=torch.Generator().manual_seed(11))
    t = torch.tensor([700, 700])
    with torch.no_grad():
        return transformer(hidden_states=x, timestep=t, encoder_hidden_states=cond, return_dict=False)[0]


@pytest.fixture(scope="module")
def release_adapter(tiny_gen, tiny_embeds, tmp_path_factory):
    """An adapter written the way the release writes it: peft.get_peft_model + PeftModel.save_pretrained."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(
        copy.deepcopy(tiny_gen.transformer),
        LoraConfig(r=8, lora_alpha=16, init_lora_weights=True, target_modules=list(DEFAULT_TARGET_MODULES)),
    )
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(0.05 * torch.randn(param.shape, generator=g))
    folder = tmp_path_factory.mktemp("lora") / "vist3a_tiny_lora_ema"
    model.save_pretrained(folder)
    return folder, _forward(model, tiny_embeds[0])


def test_release_folder_layout(release_adapter):
    folder, _ = release_adapter
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["r"] == 8 and config["lora_alpha"] == 16
    keys = load_file(folder / "adapter_model.safetensors")
    assert all(k.startswith("base_model.model.blocks.") for k in keys)
    assert "base_model.model.blocks.0.attn1.to_q.lora_A.weight" in keys
    assert len(keys) == 2 * 2 * len(DEFAULT_TARGET_MODULES)  # (A, B) x 2 blocks x 8 modules


def test_load_matches_peft_model_and_changes_output(tiny_gen, tiny_embeds, release_adapter):
    folder, reference = release_adapter
    transformer = copy.deepcopy(tiny_gen.transformer)
    base = _forward(transformer, tiny_embeds[0])
    assert load_lora(transformer, folder) is transformer
    assert has_lora(transformer)
    out = _forward(transformer, tiny_embeds[0])
    torch.testing.assert_close(out, reference, atol=1e-6, rtol=1e-6)
    assert (out - base).abs().max() > 1e-3
    assert type(transformer).__name__ == "WanTransformer3DModel"
    assert not any(p.requires_grad for n, p in transformer.named_parameters() if "lora_" in n)


def test_merge_keeps_outputs(tiny_gen, tiny_embeds, release_adapter):
    folder, reference = release_adapter
    transformer = load_lora(copy.deepcopy(tiny_gen.transformer), folder, merge=True)
    assert not has_lora(transformer)
    assert type(transformer.blocks[0].attn1.to_q) is torch.nn.Linear
    assert set(transformer.state_dict()) == set(tiny_gen.transformer.state_dict())
    torch.testing.assert_close(_forward(transformer, tiny_embeds[0]), reference, atol=1e-5, rtol=1e-5)
    unloaded = merge_lora(copy.deepcopy(tiny_gen.transformer))  # nothing to merge: a no-op
    torch.testing.assert_close(_forward(unloaded, tiny_embeds[0]), _forward(tiny_gen.transformer, tiny_embeds[0]))


def test_save_lora_is_read_by_peft(tiny_gen, tiny_embeds, release_adapter, tmp_path):
    from peft import PeftModel

    folder, reference = release_adapter
    transformer = load_lora(copy.deepcopy(tiny_gen.transformer), folder)
    out_dir = save_lora(transformer, tmp_path / "lora_ema")
    assert set(load_file(out_dir / "adapter_model.safetensors")) == set(load_file(folder / "adapter_model.safetensors"))
    peft_model = PeftModel.from_pretrained(copy.deepcopy(tiny_gen.transformer), out_dir)
    torch.testing.assert_close(_forward(peft_model, tiny_embeds[0]), reference, atol=1e-6, rtol=1e-6)


def test_add_lora_for_training(tiny_gen, tiny_embeds):
    transformer = copy.deepcopy(tiny_gen.transformer)
    base = _forward(transformer, tiny_embeds[0])
    config = add_lora(transformer, r=4, alpha=8)
    assert config.r == 4 and config.lora_alpha == 8
    trainable = {n: p for n, p in transformer.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    inner = transformer.config.num_attention_heads * transformer.config.attention_head_dim
    # all 8 targets map inner -> inner (the text is projected to the model width before cross-attention):
    # lora_A [r, inner] + lora_B [inner, r] each
    per_block = len(DEFAULT_TARGET_MODULES) * (4 * inner + inner * 4)
    assert sum(p.numel() for p in trainable.values()) == transformer.config.num_layers * per_block
    torch.testing.assert_close(_forward(transformer, tiny_embeds[0]), base)  # lora_B starts at zero
    assert set(lora_state_dict(transformer)) == {
        f"blocks.{i}.{m}.lora_{ab}.weight" for i in range(2) for m in DEFAULT_TARGET_MODULES for ab in "AB"
    }
    with pytest.raises(ValueError, match="already injected"):
        add_lora(transformer)


def test_load_errors(tiny_gen, tmp_path):
    from diffusers import WanTransformer3DModel

    from vist3a.video.tiny import tiny_transformer_config

    transformer = copy.deepcopy(tiny_gen.transformer)
    with pytest.raises(UserInputError, match="does not exist"):
        load_lora(transformer, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserInputError, match=r"adapter_config\.json"):
        load_lora(transformer, tmp_path / "empty")
    other = WanTransformer3DModel(**{**tiny_transformer_config(32), "attention_head_dim": 6})
    add_lora(other, r=2, alpha=2)
    save_lora(other, tmp_path / "other")
    state_before = {k: v.clone() for k, v in transformer.state_dict().items()}
    with pytest.raises(ValueError, match="does not fit"):
        load_lora(transformer, tmp_path / "other")
    assert not has_lora(transformer)  # the failed load is undone
    assert all(torch.equal(v, state_before[k]) for k, v in transformer.state_dict().items())
