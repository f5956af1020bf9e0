"""Released stitching-checkpoint layout (``anysplat_stitched.pth``): strict loading, LoRA merge, error messages."""

from __future__ import annotations

import json
import re

import pytest
import torch
from safetensors.torch import save_file
from stitch_helpers import perturbed_tiny_anysplat
from torch import nn

from vist3a.stitching.checkpoint import expected_official_entries, read_official_checkpoint
from vist3a.stitching.decoder import StitchedDecoder

LAYER, K = "enc_blocks_1", 1
SPEC = "conv3d_k3x3x3_o32_s1x1x1_p1x1x1"
RANK, ALPHA = 2, 4.0
# Official AnySplat module prefixes (oracles/README.md, vist3a_stitched_manifest.json)
OFFICIAL_PREFIX = {
    "aggregator.": "encoder.aggregator.",
    "camera_head.": "encoder.camera_head.",
    "depth_head.": "encoder.depth_head.",
    "gaussian_head.": "encoder.gaussian_param_head.",
}


def official_name(name: str) -> str | None:
    """vist3a module name of the *uncut* model -> official stitched name (None: removed by the cut)."""
    if name.startswith("aggregator.patch_embed.patch_embed"):
        return None
    match = re.match(r"^aggregator\.patch_embed\.blocks\.(\d+)\.(.*)$", name)
    if match:
        index = int(match.group(1))
        if index < K:
            return None
        name = f"aggregator.patch_embed.blocks.{index - K}.{match.group(2)}"
    for ours, theirs in OFFICIAL_PREFIX.items():
        if name.startswith(ours):
            return theirs + name[len(ours) :]
    raise AssertionError(f"unmapped module {name}")


def fake_official_checkpoint(model: nn.Module, seed: int = 0) -> tuple[dict, dict]:
    """A nested ``{lora, stitching_layer, mask_token, cls_token, register_tokens}`` dict as the release writes it,
    with random LoRA factors in the release's shapes; also returns ``{module: expected merged weight}``."""
    g = torch.Generator().manual_seed(seed)
    lora, expected = {}, {}
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear | nn.Conv2d):
            continue
        official = official_name(name)
        if official is None:
            continue
        w = module.weight
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0]
            a = torch.randn(RANK * k, w.shape[1] * k, generator=g) * 0.1
            b = torch.randn(w.shape[0] * k, RANK * k, generator=g) * 0.1
        else:
            a = torch.randn(RANK, w.shape[1], generator=g) * 0.1
            b = torch.randn(w.shape[0], RANK, generator=g) * 0.1
        lora[f"{official}.lora_A"], lora[f"{official}.lora_B"] = a, b
        if module.bias is not None:
            lora[f"{official}.bias"] = torch.randn(module.bias.shape, generator=g)
        expected[official] = w.detach() + (b @ a).reshape(w.shape) * (ALPHA / RANK)
    dino = model.aggregator.patch_embed
    tree = {
        "lora": lora,
        "stitching_layer": {"weight": torch.randn(32, 16, 3, 3, 3, generator=g), "bias": torch.randn(32, generator=g)},
        "mask_token": torch.randn(dino.mask_token.shape, generator=g),
        "cls_token": torch.randn(dino.cls_token.shape, generator=g),
        "register_tokens": torch.randn(dino.register_tokens.shape, generator=g),
    }
    return tree, expected


@pytest.fixture(scope="module")
def base():
    return perturbed_tiny_anysplat(seed=5)


@pytest.mark.parametrize("fmt", ["pth", "safetensors"])
def test_official_layout_loads_strictly_and_merges_lora(base, tmp_path, fmt):
    tree, expected = fake_official_checkpoint(base)
    path = tmp_path / f"anysplat_stitched.{fmt}"
    if fmt == "pth":
        torch.save(tree, path)
    else:
        flat = {f"lora/{k}": v for k, v in tree["lora"].items()}
        flat.update({f"stitching_layer/{k}": v for k, v in tree["stitching_layer"].items()})
        flat.update({k: tree[k] for k in ("mask_token", "cls_token", "register_tokens")})
        save_file(flat, str(path))
    decoder = StitchedDecoder.from_official_checkpoint(base, path, layer=LAYER, spec=SPEC, lora_alpha=ALPHA)
    modules = dict(decoder.recon.named_modules())
    inverse = {theirs: ours for ours, theirs in OFFICIAL_PREFIX.items()}
    checked = 0
    for official, weight in expected.items():
        prefix = next(p for p in inverse if official.startswith(p))
        ours = modules[inverse[prefix] + official[len(prefix) :]]
        torch.testing.assert_close(ours.weight, weight, atol=1e-6, rtol=1e-6)
        if f"{official}.bias" in tree["lora"]:
            torch.testing.assert_close(ours.bias, tree["lora"][f"{official}.bias"])
        checked += 1
    assert checked == len(expected) > 50
    torch.testing.assert_close(decoder.stitching_layer.weight, tree["stitching_layer"]["weight"])
    dino = decoder.adapter.dino(decoder.recon)
    for key in ("cls_token", "register_tokens", "mask_token"):
        torch.testing.assert_close(getattr(dino, key), tree[key])
    # the base model keeps its own weights
    assert not torch.equal(base.camera_head.embed_pose.weight, decoder.recon.camera_head.embed_pose.weight)


def test_missing_and_unexpected_entries_are_named(base, tmp_path):
    tree, _ = fake_official_checkpoint(base)
    dropped = "encoder.camera_head.embed_pose.lora_A"
    del tree["lora"][dropped]
    tree["lora"]["encoder.aggregator.patch_embed.blocks.7.attn.qkv.lora_A"] = torch.zeros(2, 32)
    path = tmp_path / "broken.pth"
    torch.save(tree, path)
    with pytest.raises(ValueError) as info:
        StitchedDecoder.from_official_checkpoint(base, path, layer=LAYER, spec=SPEC, lora_alpha=ALPHA)
    message = str(info.value)
    assert "missing" in message and f"lora/{dropped}" in message
    assert "unexpected" in message and "lora/encoder.aggregator.patch_embed.blocks.7.attn.qkv.lora_A" in message


def test_wrong_cut_layer_is_rejected(base, tmp_path):
    tree, _ = fake_official_checkpoint(base)  # written for enc_blocks_1: 2 remaining DINO blocks
    path = tmp_path / "ckpt.pth"
    torch.save(tree, path)
    with pytest.raises(ValueError, match="unexpected"):
        StitchedDecoder.from_official_checkpoint(base, path, layer="enc_blocks_2", spec=SPEC, lora_alpha=ALPHA)


def test_expected_entries_match_the_released_layout_of_the_oracle(oracle_dir):
    """The entry set derived from the model equals the layout listed by the official code for the tiny case."""
    from vist3a.recon.convert import config_from_official

    case = oracle_dir / "anysplat_stitched_tiny"
    config = json.loads((case / "config.json").read_text())
    _, kwargs = config_from_official(config["constructor"])
    stitch = next(v for k, v in config["constructor"].items() if k.startswith("StitchVAE3D"))
    decoder = StitchedDecoder(recon_type="anysplat", recon_config=json.loads(json.dumps(kwargs)),
                              layer=stitch["stitching_layer_location"], spec=stitch["stitching_layer_config"])
    layout = config["released_checkpoint_layout_for_this_model"]
    official = {f"lora/{k}" for k in layout["lora"]}
    official |= {f"stitching_layer/{k}" for k in layout["stitching_layer"]}
    official |= {"mask_token", "cls_token", "register_tokens"}
    assert set(expected_official_entries(decoder)) == official


def test_read_flattens_nested_files(tmp_path):
    torch.save({"lora": {"a.lora_A": torch.ones(1)}, "cls_token": torch.zeros(1)}, tmp_path / "x.pth")
    assert set(read_official_checkpoint(tmp_path / "x.pth")) == {"lora/a.lora_A", "cls_token"}
