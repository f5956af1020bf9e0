"""Adapters (candidate layers, feature hooks vs the official block outputs, registry) and the distillation losses."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from stitch_helpers import assert_close_to_oracle, perturbed_tiny_anysplat, random_frames

from vist3a.stitching.adapters import (
    ADAPTERS,
    AnySplatAdapter,
    VGGTAdapter,
    adapter_for_model,
    get_adapter,
    layer_index,
)
from vist3a.stitching.losses import LossTerm, distillation_loss, gradient_loss_multiscale


def test_registry_dispatches_by_name_and_class():
    assert isinstance(get_adapter("anysplat"), AnySplatAdapter)
    assert isinstance(get_adapter("vggt"), VGGTAdapter)
    assert get_adapter("mvdust3r").name == "mvdust3r"
    with pytest.raises(ValueError, match="unknown recon model 'dust3r'"):
        get_adapter("dust3r")
    with pytest.raises(ValueError, match="no stitching adapter"):
        adapter_for_model(torch.nn.Linear(2, 2))
    assert set(ADAPTERS) == {"anysplat", "vggt", "mvdust3r"}


def test_candidate_layers_follow_the_config():
    model = perturbed_tiny_anysplat(dino_depth=3)
    adapter = adapter_for_model(model)
    assert adapter.candidate_layers(model) == ["enc_blocks_1", "enc_blocks_2", "enc_blocks_3"]
    assert adapter.num_prefix_tokens(model) == 1 + model.aggregator.config.num_register_tokens
    assert adapter.token_grid(model, (28, 42)) == (2, 3)
    assert layer_index("enc_blocks_12") == 12
    with pytest.raises(ValueError, match="multiple of the patch size"):
        adapter.token_grid(model, 30)


def test_candidate_features_equal_the_official_dino_block_outputs(oracle_dir):
    """Hooked enc_blocks_k features = official DINO block k-1 outputs with the prefix tokens dropped."""
    import json

    from vist3a.recon import AnySplat, load_official_state_dict

    case = oracle_dir / "anysplat_tiny"
    config = json.loads((case / "config.json").read_text())
    model = AnySplat.from_official_config(config["constructor"])
    load_official_state_dict(model, "anysplat", load_file(str(case / "state_dict.safetensors")))
    images = load_file(str(case / "inputs.safetensors"))["images"]
    reference = load_file(str(case / "intermediates.safetensors"))
    adapter = adapter_for_model(model.eval())
    features = adapter.candidate_features(model, images)
    prefix = adapter.num_prefix_tokens(model)
    assert sorted(features, key=layer_index) == adapter.candidate_layers(model)
    for name, value in features.items():
        ref = reference[f"dino.block_out.{layer_index(name) - 1}"][:, prefix:]
        assert_close_to_oracle(value[0], ref, name)


def test_vggt_adapter_identity_path():
    """VGGT stitched at enc_blocks_0 with the exact patch projection reproduces VGGT's outputs."""
    from vist3a.recon import random_tiny_model

    model = random_tiny_model("vggt", seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    frames = random_frames(1, 3, 28, 28, seed=3)
    adapter = adapter_for_model(model)
    with torch.no_grad():
        reference = model(frames)
        agg = model.aggregator
        tokens = agg.patch_embed.patch_embed(((frames - agg.image_mean) / agg.image_std).flatten(0, 1))
        out = adapter.run_tail(model, tokens, 0, (2, 2), 3, None)
    for name in ("depth", "depth_conf", "world_points", "world_points_conf"):
        torch.testing.assert_close(getattr(out, name), getattr(reference, name), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.cameras.pose_enc, reference.cameras.pose_enc, atol=1e-5, rtol=1e-5)
    targets = adapter.distill_targets(out)
    assert {t.target for t in adapter.loss_terms().values()} <= set(targets)


def test_anysplat_targets_cover_every_loss_term():
    model = perturbed_tiny_anysplat()
    adapter = adapter_for_model(model)
    with torch.no_grad():
        out = model(random_frames(1, 2, 28, 28), **adapter.distill_kwargs())
    targets = adapter.distill_targets(out)
    terms = adapter.loss_terms()
    assert {t.target for t in terms.values()} <= set(targets)
    assert targets["extrinsics"].shape == (1, 2, 4, 4)  # camera-to-world, as the release compares
    assert targets["pose_enc_list"].shape[0] == model.camera_head.config.num_iterations
    total, parts = distillation_loss(targets, targets, terms)
    assert float(total) == 0.0 and set(parts) == set(terms)


def test_gradient_loss_on_a_ramp_is_analytic():
    """diff = a·column: only x-gradients, |a·step| at stride step; loss = mean over scales of
    |a|·step·H_s·(W_s − 1) / (H_s·W_s)."""
    a, h, w = 0.3, 16, 16
    ramp = a * torch.arange(w, dtype=torch.float64).expand(2, 3, h, w)
    target = torch.randn(2, 3, h, w, dtype=torch.float64)
    value = gradient_loss_multiscale(target + ramp, target)
    expected = 0.0
    for scale in range(4):
        step = 2**scale
        hs, ws = len(range(0, h, step)), len(range(0, w, step))
        expected += a * step * hs * (ws - 1) / (hs * ws)
    assert float(value) == pytest.approx(expected / 4, rel=1e-12)


def test_distillation_loss_weights_and_errors():
    s = {"x": torch.ones(2, 3), "y": torch.zeros(4)}
    t = {"x": torch.zeros(2, 3), "y": torch.full((4,), 2.0)}
    total, parts = distillation_loss(s, t, {"x": LossTerm("x", 0.5), "y": LossTerm("y", 10.0)})
    assert float(parts["x"]) == pytest.approx(0.5) and float(parts["y"]) == pytest.approx(20.0)
    assert float(total) == pytest.approx(20.5)
    with pytest.raises(ValueError, match="voxelize=False"):
        distillation_loss({"x": torch.ones(3)}, {"x": torch.ones(4)}, {"x": LossTerm("x", 1.0)})
    with pytest.raises(ValueError, match="needs target 'z'"):
        distillation_loss(s, t, {"z": LossTerm("z", 1.0)})
    with pytest.raises(ValueError, match="kind"):
        LossTerm("x", 1.0, "l2")
