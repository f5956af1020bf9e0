"""Reward terms and mixes: signs, weights, views, the named mixes against hand computations, spec parsing."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.alignment.rewards import (
    REWARD_MIXES,
    REWARD_TERMS,
    ConsistencyReward,
    ImageTextReward,
    RewardInputs,
    RewardMix,
    build_reward_mix,
    parse_reward_mix,
)
from vist3a.errors import UserInputError

B, T, H = 2, 13, 8


class MeanScorer:
    """score = factor * mean intensity + bias; records the prompts it was asked about."""

    def __init__(self, factor: float = 1.0, bias: float = 0.0) -> None:
        self.factor, self.bias = factor, bias
        self.prompts: list[str] = []

    def score(self, images, prompts):
        self.prompts.extend(prompts)
        return self.factor * images.mean(dim=(1, 2, 3)) + self.bias


def _inputs(frame_values=None, render_offset: float = 0.0, render_views=tuple(range(T))):
    """Frame ``t`` of rollout ``b`` is the constant ``frame_values[b][t]``; renders = frames + offset."""
    if frame_values is None:
        frame_values = [[(t + 1) / (2 * T) for t in range(T)], [0.5] * T]
    values = torch.tensor(frame_values, dtype=torch.float32)
    frames = values[:, :, None, None, None].expand(B, T, 3, H, H).clone().requires_grad_(True)
    renders = (frames[:, list(render_views)] + render_offset).clamp(0, 1)
    return RewardInputs(["a red chair", "a cabin"], frames, renders, tuple(render_views))


def test_image_text_reward_linear_and_target_forms():
    inputs = _inputs()
    views = (0, 3)
    linear = ImageTextReward("lin", 1.0, MeanScorer(), source="decoded", scale=2.0, offset=-1.0)
    expected0 = sum(2 * (v + 1) / (2 * T) - 1 for v in views) / 2
    torch.testing.assert_close(linear(inputs, views), torch.tensor([expected0, 2 * 0.5 - 1]))
    target = ImageTextReward("tgt", 1.0, MeanScorer(factor=100.0), source="decoded", scale=0.01, target=1.0)
    # score/100 = mean intensity; reward = -|1 - intensity|
    expected0 = -sum(1 - (v + 1) / (2 * T) for v in views) / 2
    torch.testing.assert_close(target(inputs, views), torch.tensor([expected0, -0.5]))


def test_image_text_reward_uses_renders_and_repeats_prompts():
    inputs = _inputs(render_offset=0.25, render_views=(1, 4, 7))
    scorer = MeanScorer()
    term = ImageTextReward("r", 1.0, scorer, source="rendered")
    value = term(inputs, (4, 7))
    torch.testing.assert_close(value[1], torch.tensor(0.75))
    assert scorer.prompts == ["a red chair", "a red chair", "a cabin", "a cabin"]
    with pytest.raises(ValueError, match="not rendered"):
        term(inputs, (2,))


def test_consistency_reward_is_minus_l1_minus_weighted_lpips():
    same = _inputs(render_offset=0.0)
    term = ConsistencyReward("c", 1.0, num_views=2)
    torch.testing.assert_close(term(same, (0, 1)), torch.zeros(B))
    shifted = _inputs(frame_values=[[0.2] * T, [0.4] * T], render_offset=0.1)
    torch.testing.assert_close(term(shifted, (0, 1)), torch.full((B,), -0.1))
    calls = []

    def fake_lpips(a, b):  # images arrive in [-1, 1]
        calls.append((float(a.detach().min()), float(a.detach().max())))
        return torch.full((a.shape[0],), 0.4)

    with_lpips = ConsistencyReward("c", 1.0, num_views=2, lpips_weight=0.25, lpips=fake_lpips)
    torch.testing.assert_close(with_lpips(shifted, (0, 1)), torch.full((B,), -0.1 - 0.25 * 0.4))
    assert calls and calls[0][0] == pytest.approx(2 * 0.2 - 1)


def test_mix_loss_sign_and_weights():
    inputs = _inputs()
    views = {"a": (0,), "b": (0,)}
    a = ImageTextReward("a", 0.5, MeanScorer(bias=1.0), source="decoded")
    b = ImageTextReward("b", 2.0, MeanScorer(bias=-3.0), source="decoded")
    out = RewardMix([a, b])(inputs, views)
    ra, rb = a(inputs, (0,)).mean(), b(inputs, (0,)).mean()
    torch.testing.assert_close(out.loss, -(0.5 * ra + 2.0 * rb))
    torch.testing.assert_close(out.rewards["a"], ra.detach())
    # gradient ascent on the reward: d loss / d frame intensity = -(0.5 + 2.0) * d mean / d pixel < 0
    out.loss.backward()
    assert (inputs.frames.grad[:, 0] < 0).all() and (inputs.frames.grad[:, 1:] == 0).all()


def test_views_share_one_permutation_and_renders_are_their_union():
    mix = RewardMix(
        [
            ImageTextReward("r13", 1.0, MeanScorer(), source="rendered", num_views=13),
            ImageTextReward("d1", 1.0, MeanScorer(), source="decoded", num_views=1),
            ConsistencyReward("c2", 1.0, num_views=2),
            ImageTextReward("all", 1.0, MeanScorer(), source="decoded"),
        ]
    )
    views = mix.draw_views(5, torch.Generator().manual_seed(0))
    assert sorted(views["r13"]) == list(range(5))  # clamped to the 5 frames there are
    assert views["d1"] == views["r13"][:1] and views["c2"] == views["r13"][:2] and views["all"] == views["r13"]
    assert mix.rendered_views(views) == tuple(range(5))
    only_consistency = RewardMix([ConsistencyReward("c", 1.0, num_views=2)])
    v = only_consistency.draw_views(13, torch.Generator().manual_seed(1))
    assert only_consistency.rendered_views(v) == tuple(sorted(v["c"])) and len(v["c"]) == 2
    with pytest.raises(ValueError, match="unique"):
        RewardMix([ConsistencyReward("x", 1.0), ConsistencyReward("x", 1.0)])


def _constant_scorers(values):
    class Constant:
        def __init__(self, value):
            self.value = value

        def score(self, images, prompts):
            return images.mean(dim=(1, 2, 3)) * 0 + self.value

    return lambda name: Constant(values[name])


def test_release_mix_against_hand_computation():
    mix = build_reward_mix("release", _constant_scorers({"pickscore": 80.0, "dfn-clip": 0.6}), lpips=None)
    assert [t.weight for t in mix.terms] == [0.25] * 4
    assert [t.num_views for t in mix.terms] == [13, 13, 1, 1]
    assert not any(isinstance(t, ConsistencyReward) for t in mix.terms)
    inputs = _inputs()
    out = mix(inputs, mix.draw_views(T))
    # 0.25 |1 - 80/100| + 0.25 (1 - 0.6), on renders and on the decoded frame
    torch.testing.assert_close(out.loss, torch.tensor(2 * (0.25 * 0.2 + 0.25 * 0.4)))


def test_paper_mix_against_hand_computation():
    mix = build_reward_mix("paper", _constant_scorers({"dfn-clip": 0.3, "hpsv2.1": 0.25}), lpips=None)
    weights = {t.name: t.weight for t in mix.terms}
    assert weights["consistency"] == 0.05 and sum(w == 1 / 16 for w in weights.values()) == 4
    inputs = _inputs(render_offset=0.0)  # renders equal the frames: consistency reward 0
    out = mix(inputs, mix.draw_views(T))
    # quality = DFN + HPS - 2 = -1.45 per source, weight 1/16 on decoded and on renders
    torch.testing.assert_close(out.loss, torch.tensor(2 * 1.45 / 16))
    shifted = _inputs(frame_values=[[0.2] * T, [0.4] * T], render_offset=0.1)
    torch.testing.assert_close(mix(shifted, mix.draw_views(T)).loss, torch.tensor(2 * 1.45 / 16 + 0.05 * 0.1))


def test_parse_reward_mix_forms(tmp_path):
    spec = [{"type": "consistency", "weight": 0.5, "num_views": 3}]
    assert parse_reward_mix(json.dumps(spec)) == spec
    assert parse_reward_mix(json.dumps({"terms": spec})) == spec
    path = tmp_path / "mix.json"
    path.write_text(json.dumps(spec))
    assert parse_reward_mix(str(path)) == spec
    assert parse_reward_mix("release") == REWARD_MIXES["release"]()
    with pytest.raises(UserInputError, match="reward-mix"):
        parse_reward_mix("fancy")
    with pytest.raises(UserInputError, match="not valid JSON"):
        parse_reward_mix("[{")
    with pytest.raises(UserInputError, match="non-empty list"):
        parse_reward_mix("[]")


def test_registry_rejects_unknown_types_and_keys():
    assert set(REWARD_TERMS) == {"image_text", "consistency"}
    scorers = _constant_scorers({"x": 0.0})
    with pytest.raises(ValueError, match="type"):
        build_reward_mix([{"type": "aesthetic", "weight": 1.0}], scorers, lpips=None)
    with pytest.raises(ValueError, match="does not take"):
        build_reward_mix([{"type": "consistency", "weight": 1.0, "scorer": "x"}], scorers, lpips=None)
    with pytest.raises(ValueError, match="weight"):
        build_reward_mix([{"type": "image_text", "scorer": "x"}], scorers, lpips=None)
    with pytest.raises(ValueError, match="source"):
        build_reward_mix([{"type": "image_text", "scorer": "x", "weight": 1, "source": "both"}], scorers, lpips=None)


def test_consistency_without_lpips_logs_a_warning(caplog):
    with caplog.at_level("WARNING"):
        ConsistencyReward("c", 0.05, lpips_weight=0.25, lpips=None)
    assert "LPIPS is unavailable" in caplog.text


def test_numeric_options_are_checked_by_name():
    scorers = _constant_scorers({"x": 0.0})
    with pytest.raises(ValueError, match="`scale` of reward"):
        build_reward_mix([{"type": "image_text", "scorer": "x", "weight": 1, "scale": "big"}], scorers, lpips=None)
    with pytest.raises(ValueError, match="`lpips_weight` of reward"):
        build_reward_mix([{"type": "consistency", "weight": 1, "lpips_weight": "x"}], scorers, lpips=None)
    with pytest.raises(ValueError, match="`weight` of reward"):
        build_reward_mix([{"type": "consistency", "weight": float("nan")}], scorers, lpips=None)


def test_nano_mix_against_hand_computation_and_auto_choice():
    from vist3a.alignment.rewards import default_reward_mix

    mix = build_reward_mix("nano", _constant_scorers({"nano-clip": 0.3}), lpips=None)
    weights = {t.name: t.weight for t in mix.terms}
    assert weights == {"clip_decoded": 1 / 8, "clip_rendered": 1 / 8, "consistency": 0.05}
    out = mix(_inputs(render_offset=0.0), mix.draw_views(T))
    torch.testing.assert_close(out.loss, torch.tensor(2 * 0.7 / 8))  # (1 - 0.3) on decoded frames and renders
    assert default_reward_mix("nano", on_cuda=True) == "nano"
    assert default_reward_mix("vist3a-1.3b", on_cuda=True) == "release"
    assert default_reward_mix("tiny-random", on_cuda=False) == "paper"
