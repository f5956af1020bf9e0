"""DRTune rollouts: the random plan, and where gradients flow (only the chosen steps, through the solver)."""

from __future__ import annotations

import random

import pytest
import torch

from vist3a.alignment.rollout import RolloutPlan, drtune_rollout, plan_rollout
from vist3a.video.lora import add_lora
from vist3a.video.sampler import make_scheduler

SHAPE = (1, 16, 2, 4, 4)


# ----------------------------------------------------------------------------- the plan
def test_plan_ranges_and_last_step():
    rng = random.Random(0)
    for iteration in range(1, 200):
        if iteration % 10 == 0:
            continue
        plan = plan_rollout(rng, iteration, min_steps=10, max_steps=50, full_every=10, num_grad_steps=2)
        assert 10 <= plan.num_steps <= 50
        assert 4.0 <= plan.guidance_scale <= 6.0
        assert plan.num_steps - 1 in plan.grad_steps
        assert 1 <= len(plan.grad_steps) <= 3
        assert list(plan.grad_steps) == sorted(set(plan.grad_steps))
        assert all(0 <= s < plan.num_steps for s in plan.grad_steps)


def test_plan_uses_the_full_count_every_nth_iteration():
    rng = random.Random(1)
    counts = {it: plan_rollout(rng, it, min_steps=10, max_steps=50, full_every=10).num_steps for it in range(40)}
    assert all(counts[it] == 50 for it in (0, 10, 20, 30))
    assert len({counts[it] for it in range(40) if it % 10}) > 5  # the others vary


def test_plan_draws_two_distinct_steps_besides_the_last():
    rng = random.Random(2)
    sizes = [len(plan_rollout(rng, 1, min_steps=20, max_steps=20, full_every=0).grad_steps) for _ in range(300)]
    # 2 distinct random steps + the last: 3 steps, or 2 when the last step was one of the random ones
    assert set(sizes) == {2, 3}
    assert sizes.count(2) / len(sizes) == pytest.approx(2 / 20, abs=0.06)


def test_plan_is_reproducible_and_validated():
    a = plan_rollout(random.Random(7), 3, min_steps=2, max_steps=9, full_every=0)
    b = plan_rollout(random.Random(7), 3, min_steps=2, max_steps=9, full_every=0)
    assert a == b
    only_last = plan_rollout(random.Random(7), 3, min_steps=4, max_steps=4, num_grad_steps=0)
    assert only_last.grad_steps == (3,)
    with pytest.raises(ValueError, match="max_steps"):
        plan_rollout(random.Random(0), 1, min_steps=5, max_steps=4)
    with pytest.raises(ValueError, match="guidance_range"):
        plan_rollout(random.Random(0), 1, guidance_range=(6.0, 4.0))


# ----------------------------------------------------------------------------- gradients
class CallRecorder:
    """Per transformer call: grad mode, whether the input requires grad, and whether a gradient reached the output."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.grad_enabled: list[bool] = []
        self.input_requires_grad: list[bool] = []
        self.got_gradient: set[int] = set()
        self.handle = module.register_forward_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, _args, kwargs, output):
        index = len(self.grad_enabled)
        self.grad_enabled.append(torch.is_grad_enabled())
        self.input_requires_grad.append(kwargs["hidden_states"].requires_grad)
        sample = output[0]
        if sample.requires_grad:
            sample.register_hook(lambda g, i=index: self.got_gradient.add(i) if g.abs().sum() > 0 else None)


@pytest.fixture
def lora_transformer(make_generator):
    gen = make_generator()
    add_lora(gen.transformer, r=4, alpha=8)
    with torch.no_grad():  # non-zero B so that the LoRA changes outputs and both factors get gradients
        for name, p in gen.transformer.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return gen


def _lora(transformer):
    return {n: p for n, p in transformer.named_parameters() if "lora_" in n}


def _embeds(gen):
    return gen.encode_prompts(["a red chair"], "", guidance_scale=5.0)


def test_gradients_only_through_the_chosen_steps(lora_transformer):
    gen = lora_transformer
    cond, uncond = _embeds(gen)
    plan = RolloutPlan(num_steps=5, guidance_scale=5.0, grad_steps=(1, 4))
    recorder = CallRecorder(gen.transformer)
    try:
        latents = drtune_rollout(
            gen.transformer, make_scheduler("unipc", 3.0), cond, uncond, SHAPE, plan,
            generator=torch.Generator().manual_seed(0),
        )
        latents.square().mean().backward()
    finally:
        recorder.handle.remove()
    assert recorder.grad_enabled == [False, True, False, False, True]
    assert recorder.input_requires_grad == [False] * 5  # detached input at every step
    assert recorder.got_gradient == {1, 4}
    grads = [p.grad for p in _lora(gen.transformer).values()]
    assert all(g is not None for g in grads) and sum(float(g.abs().sum()) for g in grads) > 0
    base = [p for n, p in gen.transformer.named_parameters() if "lora_" not in n]
    assert all(p.grad is None for p in base)


def test_no_grad_steps_gives_no_lora_gradients(lora_transformer):
    gen = lora_transformer
    cond, uncond = _embeds(gen)
    plan = RolloutPlan(num_steps=3, guidance_scale=5.0, grad_steps=())
    recorder = CallRecorder(gen.transformer)
    try:
        latents = drtune_rollout(gen.transformer, make_scheduler("unipc", 3.0), cond, uncond, SHAPE, plan)
    finally:
        recorder.handle.remove()
    assert recorder.grad_enabled == [False, False, False]
    assert not latents.requires_grad
    assert all(p.grad is None for p in _lora(gen.transformer).values())


def test_last_step_gradient_equals_the_solver_update_of_its_prediction(lora_transformer):
    """Euler: x_N = x_{N-1} + (s_N - s_{N-1}) v(x_{N-1}); with gradients only at the last step, d sum(x_N) / d theta
    must be (s_N - s_{N-1}) d sum(v_cfg(x_{N-1})) / d theta at the fixed input x_{N-1}, computed here by hand."""
    gen = lora_transformer
    cond, uncond = _embeds(gen)
    scheduler = make_scheduler("euler", 3.0)
    plan = RolloutPlan(num_steps=3, guidance_scale=4.5, grad_steps=(2,))
    lora = _lora(gen.transformer)
    seen: dict[int, torch.Tensor] = {}
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    from vist3a.video.sampler import sample

    out = sample(
        gen.transformer, scheduler, cond, uncond, SHAPE, num_steps=3, guidance_scale=plan.guidance_scale,
        latents=noise, grad_steps=plan.grad_steps, callback=lambda i, t, x: seen.__setitem__(i, x.detach().clone()),
        progress=False,
    )
    out.sum().backward()
    rollout_grads = {n: p.grad.clone() for n, p in lora.items()}
    for p in lora.values():
        p.grad = None

    x_prev = seen[1]
    sigmas = scheduler.sigmas  # after set_timesteps(3): 4 values, the last 0
    t_last = scheduler.timesteps[2]
    both = gen.transformer(
        hidden_states=torch.cat([x_prev, x_prev]), timestep=t_last.expand(2),
        encoder_hidden_states=torch.cat([cond, uncond]), return_dict=False,
    )[0]
    v_cond, v_uncond = both.float().chunk(2)
    v = v_uncond + plan.guidance_scale * (v_cond - v_uncond)
    ((sigmas[3] - sigmas[2]) * v.sum()).backward()
    for name, p in lora.items():
        torch.testing.assert_close(rollout_grads[name], p.grad, rtol=1e-4, atol=1e-7)
    assert sum(float(g.abs().sum()) for g in rollout_grads.values()) > 0


def test_gradient_checkpointing_keeps_the_gradients(lora_transformer):
    """The input is detached, so only non-reentrant checkpointing can still reach the LoRA weights."""
    gen = lora_transformer
    cond, uncond = _embeds(gen)
    plan = RolloutPlan(num_steps=3, guidance_scale=5.0, grad_steps=(0, 2))
    lora = _lora(gen.transformer)

    def grads(checkpointing: bool) -> dict[str, torch.Tensor]:
        for p in lora.values():
            p.grad = None
        if checkpointing:
            gen.transformer.enable_gradient_checkpointing()
        else:
            gen.transformer.disable_gradient_checkpointing()
        gen.transformer.train()
        latents = drtune_rollout(
            gen.transformer, make_scheduler("unipc", 3.0), cond, uncond, SHAPE, plan,
            generator=torch.Generator().manual_seed(4),
        )
        latents.square().mean().backward()
        return {n: p.grad.clone() for n, p in lora.items()}

    plain, checkpointed = grads(False), grads(True)
    assert sum(float(g.abs().sum()) for g in plain.values()) > 0
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-5, atol=1e-8)
