"""EMA of the LoRA weights: the warm-up decay formula, the update rule, swapping and state round trips."""

from __future__ import annotations

import pytest
import torch

from vist3a.alignment.ema import EMA, ema_decay


@pytest.mark.parametrize(
    ("step", "expected"),
    [(0, 1 / 10), (1, 2 / 11), (5, 6 / 15), (100, 101 / 110), (889, 890 / 899), (890, 0.99), (10_000, 0.99)],
)
def test_decay_warmup_formula(step, expected):
    # (1 + s) / (10 + s) reaches 0.99 at s = 890 (891 / 900); before that the warm-up value is smaller
    assert ema_decay(step) == pytest.approx(expected, abs=1e-12)
    assert ema_decay(step) <= 0.99


def test_decay_ceiling_is_configurable():
    assert ema_decay(50, max_decay=0.5) == 0.5
    assert ema_decay(0, max_decay=0.5) == pytest.approx(0.1)


def test_updates_match_hand_computation():
    p = torch.nn.Parameter(torch.tensor([2.0, -4.0]))
    ema = EMA({"p": p})
    # shadow starts at [2, -4]
    with torch.no_grad():
        p.copy_(torch.tensor([12.0, 6.0]))
    assert ema.update(0) == pytest.approx(0.1)
    # 0.1 * [2, -4] + 0.9 * [12, 6] = [11.0, 5.0]
    torch.testing.assert_close(ema.shadow["p"], torch.tensor([11.0, 5.0]))
    with torch.no_grad():
        p.copy_(torch.tensor([0.0, 16.0]))
    ema.update(1)
    # d = 2/11: 2/11 * [11, 5] + 9/11 * [0, 16] = [2, (10 + 144) / 11 = 14]
    torch.testing.assert_close(ema.shadow["p"], torch.tensor([2.0, 14.0]))
    # the parameter itself is untouched by updates
    torch.testing.assert_close(p.detach(), torch.tensor([0.0, 16.0]))


def test_swapped_exposes_shadow_and_restores():
    p = torch.nn.Parameter(torch.ones(3))
    ema = EMA({"p": p})
    with torch.no_grad():
        p.mul_(5.0)
    ema.update(0)  # shadow = 0.1 * 1 + 0.9 * 5 = 4.6
    with ema.swapped():
        torch.testing.assert_close(p.detach(), torch.full((3,), 4.6))
    torch.testing.assert_close(p.detach(), torch.full((3,), 5.0))


def test_bf16_params_keep_float32_shadows():
    p = torch.nn.Parameter(torch.full((4,), 1.0, dtype=torch.bfloat16))
    ema = EMA({"p": p})
    assert ema.shadow["p"].dtype == torch.float32
    with torch.no_grad():
        p.fill_(2.0)
    ema.update(0)
    torch.testing.assert_close(ema.shadow["p"], torch.full((4,), 1.9))  # not rounded to bf16 (1.8984375)


def test_state_dict_round_trip_and_mismatch():
    a = EMA({"x": torch.nn.Parameter(torch.arange(3.0))})
    a.update(3)
    b = EMA({"x": torch.nn.Parameter(torch.zeros(3))})
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.shadow["x"], a.shadow["x"])
    c = EMA({"y": torch.nn.Parameter(torch.zeros(3))})
    with pytest.raises(ValueError, match="does not fit"):
        c.load_state_dict(a.state_dict())
    d = EMA({"x": torch.nn.Parameter(torch.zeros(4))})
    with pytest.raises(ValueError, match="shape"):
        d.load_state_dict(a.state_dict())


def test_invalid_arguments():
    with pytest.raises(ValueError, match="max_decay"):
        EMA({"p": torch.nn.Parameter(torch.zeros(1))}, max_decay=1.0)
    with pytest.raises(ValueError, match="at least one"):
        EMA({})
    with pytest.raises(ValueError, match="step"):
        ema_decay(-1)
