"""The sampling loop: batched CFG against diffusers' WanPipeline, seeds, schedulers, DRTune gradients."""

from __future__ import annotations

import pytest
import torch

from vist3a.video.sampler import initial_noise, make_scheduler, sample, scheduler_timesteps

SHAPE = (2, 16, 3, 4, 4)  # 9 frames of 32x32 px


class _BatchRecorder:
    """Records the batch size of every transformer call."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.batches: list[int] = []
        self.handle = module.register_forward_hook(
            lambda _m, _args, kwargs, _out: self.batches.append(kwargs["hidden_states"].shape[0]), with_kwargs=True
        )


def _pipeline_reference(gen, cond, uncond, noise, guidance, steps, scheduler="unipc"):
    """diffusers' WanPipeline: conditional and unconditional passes as two separate calls."""
    from diffusers import WanPipeline

    pipe = WanPipeline(
        tokenizer=None,
        text_encoder=None,
        vae=gen.vae,
        scheduler=make_scheduler(scheduler, shift=5.0),
        transformer=gen.transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe(
        prompt_embeds=cond,
        negative_prompt_embeds=uncond,
        latents=noise.clone(),
        num_inference_steps=steps,
        guidance_scale=guidance,
        height=32,
        width=32,
        num_frames=9,
        output_type="latent",
    ).frames


@pytest.mark.parametrize("scheduler", ["unipc", "euler"])
def test_batched_cfg_equals_two_separate_passes(tiny_gen, tiny_embeds, scheduler):
    cond, uncond = tiny_embeds
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1))
    reference = _pipeline_reference(tiny_gen, cond, uncond, noise, 5.0, 3, scheduler)
    recorder = _BatchRecorder(tiny_gen.transformer)
    try:
        ours = sample(
            tiny_gen.transformer,
            make_scheduler(scheduler, shift=5.0),
            cond,
            uncond,
            SHAPE,
            num_steps=3,
            guidance_scale=5.0,
            latents=noise,
            progress=False,
        )
    finally:
        recorder.handle.remove()
    assert recorder.batches == [4, 4, 4]  # one forward per step, cond + uncond batched
    assert ours.dtype == torch.float32 and ours.shape == SHAPE
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)
    assert (ours - noise).abs().max() > 0.1


def test_guidance_one_skips_uncond_pass(tiny_gen, tiny_embeds):
    cond, _ = tiny_embeds
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(2))
    reference = _pipeline_reference(tiny_gen, cond, None, noise, 1.0, 2)
    recorder = _BatchRecorder(tiny_gen.transformer)
    try:
        ours = sample(
            tiny_gen.transformer,
            make_scheduler(),
            cond,
            None,
            SHAPE[1:],
            num_steps=2,
            guidance_scale=1.0,
            latents=noise,
            progress=False,
        )
    finally:
        recorder.handle.remove()
    assert recorder.batches == [2, 2]
    torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-5)


def test_negative_embeds_broadcast_from_batch_one(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds
    kwargs = dict(num_steps=2, guidance_scale=4.0, progress=False)
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))
    full = sample(tiny_gen.transformer, make_scheduler(), cond, uncond, SHAPE, latents=noise, **kwargs)
    one = sample(tiny_gen.transformer, make_scheduler(), cond, uncond[:1], SHAPE, latents=noise, **kwargs)
    torch.testing.assert_close(full, one)  # both rows of `uncond` encode the same "" prompt


def test_seed_determinism_and_cpu_noise(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds

    def run(seed):
        return sample(
            tiny_gen.transformer,
            make_scheduler(),
            cond,
            uncond,
            SHAPE,
            num_steps=2,
            guidance_scale=3.0,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
        )

    a, b, c = run(7), run(7), run(8)
    assert torch.equal(a, b)
    assert (a - c).abs().mean() > 0.1
    expected_noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(7))
    assert torch.equal(initial_noise(SHAPE, torch.Generator().manual_seed(7)), expected_noise)


def test_unipc_and_euler_both_run_and_differ(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(4))
    outs = {
        name: sample(
            tiny_gen.transformer,
            make_scheduler(name, shift=3.0),
            cond,
            uncond,
            SHAPE,
            num_steps=4,
            guidance_scale=5.0,
            latents=noise,
            progress=False,
        )
        for name in ("unipc", "euler")
    }
    assert all(torch.isfinite(o).all() for o in outs.values())
    assert (outs["unipc"] - outs["euler"]).abs().max() > 1e-3
    with pytest.raises(ValueError, match=r"scheduler.*\['unipc', 'euler'\].*'ddim'"):
        make_scheduler("ddim")


def test_timesteps_helper_matches_visited_steps(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds
    scheduler = make_scheduler("unipc", shift=5.0)
    preview = scheduler_timesteps(scheduler, 5)
    visited: list[float] = []
    sample(
        tiny_gen.transformer,
        scheduler,
        cond,
        uncond,
        SHAPE,
        num_steps=5,
        guidance_scale=2.0,
        callback=lambda i, t, z: visited.append(float(t)),
        progress=False,
    )
    assert visited == preview.tolist()
    # flow shift s maps sigma -> s*sigma / (1 + (s-1)*sigma): the second of 5 linear sigmas (0.8) -> 20/21
    assert preview[1].item() == int(1000 * (5 * 0.8) / (1 + 4 * 0.8))


def test_inference_records_no_graph(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds
    with torch.enable_grad():
        out = sample(tiny_gen.transformer, make_scheduler(), cond, uncond, SHAPE, num_steps=2, progress=False)
    assert out.grad_fn is None and not out.requires_grad


def _euler_loop(transformer, cond, noise, steps, grad_steps, detach_input=True):
    return sample(
        transformer,
        make_scheduler("euler", shift=3.0),
        cond,
        None,
        SHAPE,
        num_steps=steps,
        guidance_scale=1.0,
        latents=noise,
        grad_steps=grad_steps,
        detach_input=detach_input,
        progress=False,
    )


def test_drtune_input_detached_gradient_is_identity(tiny_gen, tiny_embeds):
    """With the network input detached, an Euler update x' = x + (s' - s) v(x.detach()) has dx'/dx = I."""
    cond, _ = tiny_embeds
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(5)).requires_grad_(True)
    out = _euler_loop(tiny_gen.transformer, cond, noise, 3, grad_steps=[0, 1, 2])
    (grad,) = torch.autograd.grad(out.sum(), noise)
    torch.testing.assert_close(grad, torch.ones_like(grad))
    noise2 = noise.detach().clone().requires_grad_(True)
    out2 = _euler_loop(tiny_gen.transformer, cond, noise2, 3, grad_steps=[0, 1, 2], detach_input=False)
    (grad2,) = torch.autograd.grad(out2.sum(), noise2)
    assert (grad2 - 1).abs().max() > 1e-3  # without detaching, the transformer's Jacobian shows up


def test_drtune_grad_only_at_chosen_step(tiny_gen, tiny_embeds):
    """grad_steps=[-1]: d sum(x_N)/d theta = (sigma_N - sigma_{N-1}) d sum(v(x_{N-1}))/d theta (Euler)."""
    cond, _ = tiny_embeds
    transformer = tiny_gen.transformer
    params = [p for p in transformer.parameters() if p.requires_grad]
    noise = torch.randn(SHAPE, generator=torch.Generator().manual_seed(6))
    steps = 3
    out = _euler_loop(transformer, cond, noise, steps, grad_steps=[-1])
    grads = torch.autograd.grad(out.sum(), params, allow_unused=True)

    scheduler = make_scheduler("euler", shift=3.0)
    scheduler.set_timesteps(steps)
    x = noise.clone()
    with torch.no_grad():  # the first N-1 steps, then the last prediction with gradients
        for t in scheduler.timesteps[:-1]:
            v = transformer(hidden_states=x, timestep=t.expand(2), encoder_hidden_states=cond, return_dict=False)[0]
            x = scheduler.step(v, t, x, return_dict=False)[0]
    t_last = scheduler.timesteps[-1]
    v_last = transformer(hidden_states=x, timestep=t_last.expand(2), encoder_hidden_states=cond, return_dict=False)[0]
    dsigma = float(scheduler.sigmas[-1] - scheduler.sigmas[-2])
    reference = torch.autograd.grad(dsigma * v_last.sum(), params, allow_unused=True)
    checked = 0
    for g, r in zip(grads, reference, strict=True):
        if r is None:
            assert g is None or torch.all(g == 0)
            continue
        torch.testing.assert_close(g, r, atol=1e-4, rtol=1e-4)
        checked += 1
    assert checked > 10


def test_input_validation(tiny_gen, tiny_embeds):
    cond, uncond = tiny_embeds
    with pytest.raises(ValueError, match=r"negative_embeds.*required"):
        sample(tiny_gen.transformer, make_scheduler(), cond, None, SHAPE, num_steps=2, guidance_scale=5.0)
    with pytest.raises(ValueError, match="num_steps"):
        sample(tiny_gen.transformer, make_scheduler(), cond, uncond, SHAPE, num_steps=0)
    with pytest.raises(ValueError, match="grad_steps"):
        sample(tiny_gen.transformer, make_scheduler(), cond, uncond, SHAPE, num_steps=2, grad_steps=[2])
    with pytest.raises(ValueError, match="channels"):
        sample(tiny_gen.transformer, make_scheduler(), cond, uncond, (8, 3, 4, 4), num_steps=2)
    with pytest.raises(ValueError, match="latent_shape"):
        sample(tiny_gen.transformer, make_scheduler(), cond, uncond, (3, 4, 4), num_steps=2)
