"""``vist3a align --preset nano``: the reward model is the shipped nano CLIP, or a warned random stand-in."""

from __future__ import annotations

import logging

import pytest
import torch

from vist3a.alignment.scorers import NanoClipScorer, TinyImageTextScorer
from vist3a.nano.provider import nano_reward_scorer


def test_missing_reward_model_falls_back_with_a_warning(monkeypatch, tmp_path, caplog, fake_minilm):
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "empty"))
    with caplog.at_level(logging.WARNING, logger="vist3a.nano.provider"):
        scorer, name = nano_reward_scorer(fake_minilm, "cpu")
    assert name == "tiny-random" and isinstance(scorer, TinyImageTextScorer)
    assert "('clip') is not installed" in caplog.text and "vist3a nano train clip" in caplog.text


def test_installed_reward_model_is_used_with_the_generators_text_encoder(monkeypatch, tmp_path, fake_minilm,
                                                                         tiny_clip_config):
    from vist3a.nano.imagetext import NanoImageTextModel
    from vist3a.nano.training import save_component
    from vist3a.nano.weights import install_components

    save_component(NanoImageTextModel(**tiny_clip_config()), tmp_path / "runs" / "clip", torch.float16)
    install_components(tmp_path / "runs", root=tmp_path / "weights")
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "weights"))
    scorer, name = nano_reward_scorer(fake_minilm, "cpu")
    assert name == "nano-clip" and isinstance(scorer, NanoClipScorer) and scorer.text_encoder is fake_minilm
    assert scorer.score(torch.rand(1, 3, 16, 16), ["a red cube"]).shape == (1,)


@pytest.mark.slow
def test_nano_preset_loads_without_a_reward_model(monkeypatch, caplog):
    """The preset contract: with shipped weights that lack ``clip``, alignment components still load."""
    from vist3a.alignment.components import load_components
    from vist3a.nano.weights import nano_available

    if nano_available(["clip"]):
        pytest.skip("this checkout ships the reward model")
    with caplog.at_level(logging.WARNING):
        components = load_components("nano", clips=None)
    assert components.sources["scorer"] == "tiny-random" and "not installed" in caplog.text
    assert isinstance(components.scorer_for("dfn-clip"), TinyImageTextScorer)
