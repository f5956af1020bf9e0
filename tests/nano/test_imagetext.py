"""The nano image-text models: towers, shapes, save/load round trip, size budget, differentiability."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano.configs import nano_clip_config, nano_clip_eval_config
from vist3a.nano.imagetext import IMAGE_TOWERS, NanoImageTextModel
from vist3a.nano.training import module_num_params, save_component

#: Per-model share of the shipped-weights budget (the issue: "<= ~1.2 MB in fp16").
MAX_FP16_BYTES = 1.2 * 2**20


def test_default_models_differ_in_architecture_and_fit_the_budget():
    reward, evaluation = nano_clip_config(), nano_clip_eval_config()
    assert reward["image_tower"] != evaluation["image_tower"]
    assert (reward["role"], evaluation["role"]) == ("reward", "evaluation")
    for config in (reward, evaluation):
        assert 2 * module_num_params(NanoImageTextModel(**config)) <= MAX_FP16_BYTES


@pytest.mark.parametrize("tower", sorted(IMAGE_TOWERS))
def test_embeddings_are_unit_vectors_for_any_image_size(tower, tiny_clip_config):
    model = NanoImageTextModel(**tiny_clip_config(tower)).eval()
    for size in ((16, 16), (23, 40)):
        emb = model.embed_images(torch.rand(3, 3, *size))
        assert emb.shape == (3, 8)
        torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))
    text = model.embed_text(torch.randn(2, 384))
    torch.testing.assert_close(text.norm(dim=-1), torch.ones(2))
    with torch.no_grad():
        logits = model(torch.rand(3, 3, 16, 16), torch.randn(2, 384))
    assert logits.shape == (3, 2) and float(logits.abs().max()) <= float(model.scale().detach()) + 1e-4
    with pytest.raises(ValueError, match="images"):
        model.embed_images(torch.rand(3, 16, 16))


def test_text_features_are_the_masked_mean():
    states = torch.randn(2, 5, 384)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]])
    feats = NanoImageTextModel.text_features(states, mask)
    torch.testing.assert_close(feats[0], states[0, :2].mean(0))
    torch.testing.assert_close(feats[1], states[1].mean(0))


def test_relations_need_positions(tiny_clip_config):
    """Attention pooling sees where things are: mirrored images embed differently (global pooling would not)."""
    model = NanoImageTextModel(**tiny_clip_config("conv")).eval()
    image = torch.zeros(1, 3, 16, 16)
    image[..., :, :5] = 1.0
    mirrored = image.flip(-1)
    assert not torch.allclose(model.embed_images(image), model.embed_images(mirrored), atol=1e-4)


@pytest.mark.parametrize("tower", sorted(IMAGE_TOWERS))
def test_save_load_round_trip(tmp_path, tower, tiny_clip_config):
    from vist3a.nano.weights import load_component_from

    model = NanoImageTextModel(**tiny_clip_config(tower, "evaluation" if tower == "vit" else "reward")).eval()
    name = "clip_eval" if tower == "vit" else "clip"
    save_component(model, tmp_path / name, torch.float32)
    config = json.loads((tmp_path / name / "model" / "config.json").read_text())
    assert config["_class_name"] == "NanoImageTextModel" and config["image_tower"] == tower
    loaded = load_component_from(tmp_path / name, name)
    images, text = torch.rand(2, 3, 16, 16), torch.randn(2, 384)
    torch.testing.assert_close(loaded(images, text), model(images, text))
    # fp16 storage loads back (upcast) within fp16 rounding
    save_component(model, tmp_path / "half", torch.float16)
    half = load_component_from(tmp_path / "half", name)
    assert half.logit_scale.dtype == torch.float32
    torch.testing.assert_close(half(images, text), model(images, text), atol=0.05, rtol=0.01)


def test_reward_and_evaluation_models_do_not_stand_in_for_each_other(tmp_path, tiny_clip_config):
    from vist3a.errors import UserInputError
    from vist3a.nano.weights import component_folder

    save_component(NanoImageTextModel(**tiny_clip_config("conv", "reward")), tmp_path / "clip", torch.float32)
    assert component_folder(tmp_path / "clip", "clip") == tmp_path / "clip" / "model"
    with pytest.raises(UserInputError, match="no trained NanoImageTextModel"):
        component_folder(tmp_path / "clip", "clip_eval")


def test_install_picks_both_image_text_models_up(tmp_path, tiny_clip_config):
    from vist3a.nano import weights

    save_component(NanoImageTextModel(**tiny_clip_config("conv", "reward")), tmp_path / "runs" / "clip", torch.float16)
    save_component(NanoImageTextModel(**tiny_clip_config("vit", "evaluation")), tmp_path / "runs" / "clip_eval",
                   torch.float16)
    manifest = weights.install_components(tmp_path / "runs", root=tmp_path / "w")
    assert set(manifest["components"]) == {"clip", "clip_eval"}
    assert weights.nano_available(["clip", "clip_eval"], root=tmp_path / "w")
    model = weights.load_nano_component("clip_eval", root=tmp_path / "w")
    assert model.config.role == "evaluation" and model.config.image_tower == "vit"
