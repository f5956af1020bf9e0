"""Stages clip / clip_eval: the contrastive loss, augmentation, learning on world frames, the stage end to end."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.nano import train_imagetext as ti
from vist3a.nano.imagetext import NanoImageTextModel


def test_clip_loss_masks_same_composition_negatives():
    logits = torch.tensor([[5.0, 4.0, 0.0], [4.0, 5.0, 0.0], [0.0, 0.0, 5.0]])
    plain, _ = ti.clip_loss(logits, torch.tensor([0, 1, 2]))
    masked, accuracy = ti.clip_loss(logits, torch.tensor([0, 0, 2]))  # clips 0 and 1 show one composition
    assert float(masked) < float(plain) and float(accuracy) == 1.0
    # with the paraphrase masked, rows 0 and 1 only compete with clip 2
    row = torch.log_softmax(torch.tensor([5.0, 0.0]), 0)[0]
    expected = -(row * 2 + torch.log_softmax(torch.tensor([0.0, 0.0, 5.0]), 0)[2]) / 3
    assert float(masked) == pytest.approx(float(expected), rel=1e-5)


def test_augment_keeps_range_and_blurs():
    cfg = ti.ImageTextTrainConfig(blur_prob=1.0, blur_sigma_max=1.5, noise_std=0.0)
    frames = torch.zeros(4, 3, 16, 16)
    frames[..., 8:] = 1.0  # a vertical edge
    out = ti.augment(frames, cfg, torch.Generator().manual_seed(0))
    assert out.shape == frames.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    torch.testing.assert_close(out.mean(), frames.mean(), atol=0.02, rtol=0)  # blur keeps the mean
    assert float((out - frames).abs().max()) > 0.05  # the edge is softened
    off = ti.ImageTextTrainConfig(blur_prob=0.0, noise_std=0.0)
    torch.testing.assert_close(ti.augment(frames, off, torch.Generator()), frames)


def test_config_validation(tiny_clip_config):
    assert ti.ImageTextTrainConfig().stage == "clip" and ti.ClipEvalTrainConfig().stage == "clip_eval"
    assert ti.ClipEvalTrainConfig().seed != ti.ImageTextTrainConfig().seed
    with pytest.raises(ValueError, match="role"):
        ti.ImageTextTrainConfig(model={**tiny_clip_config(), "role": "judge"})
    with pytest.raises(ValueError, match="canonical_prob"):
        ti.ImageTextTrainConfig(canonical_prob=1.5)


def test_retrieval_scores_match_the_evaluation_protocol(fake_minilm, tiny_clip_config):
    """The stage's batched R-precision scores equal prompt_scores of the nano scorer (one protocol)."""
    from vist3a.alignment.scorers import NanoClipScorer
    from vist3a.evaluation.metrics import prompt_scores

    model = NanoImageTextModel(**tiny_clip_config()).eval()
    frames = torch.rand(2, 3, 3, 16, 16)  # 2 clips, 3 views
    prompts = [["a red cube", "a blue cube", "a red cone"], ["a green torus", "a pink torus", "a green sphere"]]
    features = torch.stack([ti.encode_texts(fake_minilm, p) for p in prompts])
    batched = ti.retrieval_scores(model, frames, features).mean(1)
    scorer = NanoClipScorer(model, fake_minilm)
    for m in range(2):
        torch.testing.assert_close(batched[m], prompt_scores(scorer, frames[m], prompts[m]), atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def world_batch():
    """16 one-object world clips (3 frames of 16 px) with their captions."""
    from vist3a.data import SyntheticClips
    from vist3a.data.cache import ClipCache

    with torch.random.fork_rng():
        return ClipCache.build(SyntheticClips(16, 5, 16, seed=0, camera_phrase_prob=0.0), progress=False)


def test_a_few_steps_reduce_the_contrastive_loss(world_batch, fake_minilm, tiny_clip_config):
    torch.manual_seed(0)
    model = NanoImageTextModel(**tiny_clip_config())
    ids: dict[str, int] = {}
    groups = torch.tensor([ids.setdefault(c, len(ids)) for c in world_batch.compositions])
    text = ti.encode_texts(fake_minilm, world_batch.captions)
    frames = world_batch.frames[:, 0].float() / 255
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        opt.zero_grad()
        loss, _ = ti.clip_loss(model(frames, text), groups)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_stage_end_to_end(tmp_path, world_batch, fake_minilm, tiny_clip_config):
    from vist3a.nano.weights import load_component_from
    from vist3a.world import Composition

    held = ti.HeldOut(world_batch, [Composition.of(("red", "cube"), "left of", ("blue", "sphere"))] * len(world_batch))
    cfg = ti.ClipEvalTrainConfig(model=tiny_clip_config("vit", "evaluation"), steps=3, batch_size=4, log_every=1,
                                 warmup_steps=0, eval_reserve_s=0.0, progress=False, num_candidates=4)
    run = ti.train_imagetext(cfg, tmp_path / "clip_eval", "cpu", train_clips=world_batch, held=held,
                             text_encoder=fake_minilm)
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["heldout_num_candidates"] == 4 and evaluation["chance_r_precision"] == 0.25
    assert 0.0 <= evaluation["heldout_r_precision"] <= 1.0 and evaluation["role"] == "evaluation"
    assert evaluation["saved_dtype"] == "float16"
    train_config = json.loads((run / "train_config.json").read_text())
    assert train_config["stage"] == "clip_eval" and train_config["steps_done"] == 3
    assert (run / "losses.csv").read_text().splitlines()[0].startswith("step,")
    model = load_component_from(run, "clip_eval")
    assert isinstance(model, NanoImageTextModel) and model.config.image_tower == "vit"
