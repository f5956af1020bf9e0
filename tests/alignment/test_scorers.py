"""Image-text scorers: the contract, CLIP preprocessing, PickScore's formula, and optional-dependency errors."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from vist3a.alignment.scorers import (
    CLIP_MEAN,
    CLIP_STD,
    SCORERS,
    ImageTextScorer,
    PickScoreScorer,
    TinyImageTextScorer,
    clip_preprocess,
    load_scorer,
)
from vist3a.errors import UserInputError


def test_tiny_scorer_contract():
    scorer = TinyImageTextScorer(seed=0)
    assert isinstance(scorer, ImageTextScorer)
    images = torch.rand(3, 3, 40, 24, requires_grad=True)
    prompts = ["a red chair", "a red chair", "a blue lake at dawn"]
    scores = scorer.score(images, prompts)
    assert scores.shape == (3,) and bool(((scores >= -1) & (scores <= 1)).all())
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in scorer.parameters())
    same = TinyImageTextScorer(seed=0).score(images.detach(), prompts)
    torch.testing.assert_close(same, scores.detach())
    # the text matters: one image, two prompts
    two = scorer.score(images.detach()[:1].expand(2, -1, -1, -1), ["a red chair", "a blue lake at dawn"])
    assert not torch.allclose(two[0], two[1])
    with pytest.raises(ValueError, match="prompts"):
        scorer.score(images, ["only one"])
    with pytest.raises(ValueError, match="images"):
        scorer.score(torch.rand(3, 40, 24), prompts)


def test_clip_preprocess_crops_the_centre_and_normalises():
    image = torch.zeros(1, 3, 8, 16)
    image[..., :, 4:12] = 1.0  # the centre 8x8 square is white, the sides black
    out = clip_preprocess(image, 8, crop=True)
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, ((torch.ones(1, 3, 8, 8) - mean) / std).expand(1, 3, 8, 8))
    squash = clip_preprocess(image, 8, crop=False)
    assert squash.shape == (1, 3, 8, 8) and not torch.allclose(squash, out)


def _tiny_clip():
    from transformers import AutoTokenizer, CLIPConfig, CLIPModel

    from vist3a.video.text import minilm_model_dir

    tokenizer = AutoTokenizer.from_pretrained(minilm_model_dir(), local_files_only=True)
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
            "num_attention_heads": 2, "max_position_embeddings": 77, "eos_token_id": tokenizer.sep_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
              "image_size": 32, "patch_size": 8}
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=8))
    return model.eval(), tokenizer


def test_pickscore_is_logit_scale_times_cosine():
    model, tokenizer = _tiny_clip()
    scorer = PickScoreScorer(model, tokenizer, image_size=32)
    images = torch.rand(2, 3, 48, 40)
    prompts = ["a red chair", "a cabin in the woods"]
    ours = scorer.score(images, prompts)
    # independent path: CLIPModel.forward's logits (logit_scale * text @ image) on the same preprocessing
    tokens = tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(pixel_values=clip_preprocess(images, 32), **tokens).logits_per_image
    torch.testing.assert_close(ours.detach(), torch.diagonal(logits), rtol=1e-5, atol=1e-5)


def test_load_scorer_names_and_missing_packages():
    assert {"dfn-clip", "hpsv2.1", "pickscore", "tiny-random"} <= set(SCORERS)
    assert isinstance(load_scorer("tiny-random"), TinyImageTextScorer)
    with pytest.raises(ValueError, match="unknown scorer"):
        load_scorer("aesthetic-v9")
    if importlib.util.find_spec("open_clip") is None:
        with pytest.raises(UserInputError, match="open_clip"):
            load_scorer("dfn-clip")


def test_nano_clip_scorer_is_a_differentiable_cosine(fake_minilm, tiny_clip_config):
    from vist3a.alignment.scorers import NanoClipScorer
    from vist3a.nano.imagetext import NanoImageTextModel

    model = NanoImageTextModel(**tiny_clip_config())
    scorer = NanoClipScorer(model, fake_minilm)
    assert isinstance(scorer, ImageTextScorer) and not any(p.requires_grad for p in scorer.parameters())
    images = torch.rand(2, 3, 20, 28, requires_grad=True)
    prompts = ["a red cube", "a blue sphere"]
    scores = scorer.score(images, prompts)
    assert scores.shape == (2,) and bool((scores.abs() <= 1 + 1e-5).all())
    scores.sum().backward()
    assert images.grad is not None and images.grad.abs().sum() > 0
    with torch.no_grad():
        text = model.embed_text(model.text_features(*fake_minilm.encode(prompts)))
        expected = (model.embed_images(images) * text).sum(-1)
    torch.testing.assert_close(scores.detach(), expected)
    with pytest.raises(ValueError, match="prompts"):
        scorer.score(images, ["one"])
    fake_minilm.hidden_size = 16
    with pytest.raises(ValueError, match="text_dim"):
        NanoClipScorer(model, fake_minilm)


def test_nano_scorers_load_run_folders(tmp_path, fake_minilm, tiny_clip_config):
    from vist3a.nano.imagetext import NanoImageTextModel
    from vist3a.nano.provider import nano_clip_scorer
    from vist3a.nano.training import save_component

    save_component(NanoImageTextModel(**tiny_clip_config("vit", "evaluation")), tmp_path / "clip_eval",
                   torch.float16)
    scorer = nano_clip_scorer("clip_eval", source=tmp_path / "clip_eval", text_encoder=fake_minilm)
    assert scorer.model.config.role == "evaluation" and scorer.text_encoder is fake_minilm
    with pytest.raises(UserInputError, match="no trained NanoImageTextModel"):
        nano_clip_scorer("clip", source=tmp_path / "clip_eval", text_encoder=fake_minilm)  # not a reward model
    with pytest.raises(ValueError, match="component"):
        nano_clip_scorer("vae", text_encoder=fake_minilm)
