"""Opt-in step caching (diffusers' cache hooks) in vist3a's sampler, pipeline and CLI, on tiny random models (CPU)."""

from __future__ import annotations

import contextlib
import json

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.video.sampler import make_scheduler, sample
from vist3a.video.step_cache import STEP_CACHES, StepCache, make_step_cache

SHAPE = (1, 16, 3, 4, 4)  # 9 frames of 32x32 px
STEPS = 10


class _BlockRuns:
    """Counts the runs of each transformer block's feed-forward, which a skipped block never reaches."""

    def __init__(self, transformer: torch.nn.Module) -> None:
        self.counts = [0] * len(transformer.blocks)
        self.handles = [block.ffn.register_forward_hook(self._hook(i)) for i, block in enumerate(transformer.blocks)]

    def _hook(self, index: int):
        def count(*_):
            self.counts[index] += 1
        return count

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.fixture
def transformer(tiny_gen):
    """The session's tiny transformer, with no cache hooks left on it after the test."""
    yield tiny_gen.transformer
    if tiny_gen.transformer.is_cache_enabled:
        tiny_gen.transformer.disable_cache()


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _noise(seed: int = 1) -> torch.Tensor:
    return torch.randn(SHAPE, generator=torch.Generator().manual_seed(seed))


class _Stop(Exception):
    pass


def _stop_after(step: int):
    def callback(i, _t, _latents):
        if i == step:
            raise _Stop
    return callback


def _sample(transformer, embeds, cache: StepCache | None = None, prompt: int = 0, noise_seed: int = 1,
            stop_after: int | None = None):
    """``(latents, block runs)`` of one 10-step CFG run for prompt ``prompt`` of ``embeds``, with ``cache`` applied
    for the run (``None``: the transformer as it is, with any hooks enabled on it). ``stop_after``: the run is
    interrupted after that step, latents ``None``."""
    cond, uncond = embeds
    runs = _BlockRuns(transformer)
    out = None
    try:
        stopped = pytest.raises(_Stop) if stop_after is not None else contextlib.nullcontext()
        with stopped, cache.applied(transformer, STEPS) if cache is not None else contextlib.nullcontext():
            out = sample(transformer, make_scheduler("unipc", shift=5.0), cond[prompt : prompt + 1],
                         uncond[prompt : prompt + 1], SHAPE, num_steps=STEPS, guidance_scale=5.0,
                         latents=_noise(noise_seed), progress=False,
                         callback=_stop_after(stop_after) if stop_after is not None else None)
    finally:
        runs.remove()
    return out, runs.counts


def test_a_threshold_that_never_skips_changes_nothing(transformer, tiny_embeds):
    reference, runs = _sample(transformer, tiny_embeds)
    assert runs == [STEPS, STEPS]
    cached, runs = _sample(transformer, tiny_embeds, StepCache("first-block", threshold=0.0))
    assert runs == [STEPS, STEPS] and torch.equal(cached, reference)


def test_mag_calibrates_on_a_full_run_then_skips_whole_steps(transformer, tiny_embeds):
    reference, _ = _sample(transformer, tiny_embeds)
    cache = StepCache("mag", threshold=10.0)
    assert cache.needs_calibration and cache.to_dict()["calibrating"]
    calibrated, runs = _sample(transformer, tiny_embeds, cache)  # diffusers' calibration mode never skips
    assert runs == [STEPS, STEPS] and torch.equal(calibrated, reference)
    ratios = cache.options["mag_ratios"]
    assert len(ratios) == STEPS and all(r > 0 for r in ratios) and not cache.needs_calibration

    skipped, runs = _sample(transformer, tiny_embeds, cache)
    # retention: the first round(0.2 * 10) = 2 steps in full; then at most 3 skipped in a row -> 4 full steps
    assert runs == [4, 4]
    assert torch.isfinite(skipped).all() and not torch.equal(skipped, reference)
    exact, runs = _sample(transformer, tiny_embeds, StepCache("mag", 0.0, {"mag_ratios": ratios}))
    assert runs == [STEPS, STEPS] and torch.equal(exact, reference)


def test_a_loose_first_block_threshold_skips_the_other_blocks(transformer, tiny_embeds):
    reference, _ = _sample(transformer, tiny_embeds)
    cached, runs = _sample(transformer, tiny_embeds, StepCache("first-block", threshold=10.0))
    assert runs[0] == STEPS  # the first block decides, so it runs at every step
    assert runs[1] == 1  # the last one only at the first step: every later step reuses its residual
    assert torch.isfinite(cached).all() and not torch.equal(cached, reference)


def test_a_cache_is_on_only_while_it_generates(transformer, tiny_embeds):
    """The hooks (and what they cached) go with the generation: B after A equals B alone, also after A failed."""
    cache = StepCache("first-block", threshold=10.0)
    alone, _ = _sample(transformer, tiny_embeds, cache, prompt=1, noise_seed=2)
    assert not transformer.is_cache_enabled
    _sample(transformer, tiny_embeds, cache, prompt=0, stop_after=4)
    assert not transformer.is_cache_enabled
    _sample(transformer, tiny_embeds, cache, prompt=0)
    after_a, _ = _sample(transformer, tiny_embeds, cache, prompt=1, noise_seed=2)
    assert torch.equal(after_a, alone)
    transformer.enable_cache(cache.config(STEPS))
    with pytest.raises(ValueError, match="already has a diffusers cache enabled"), cache.applied(transformer, STEPS):
        pass


@pytest.mark.parametrize(("kind", "stop_after"), [("first-block", None), ("first-block", 4), ("mag", 4)])
def test_sample_resets_a_cache_enabled_on_the_transformer(transformer, tiny_embeds, monkeypatch, kind, stop_after):
    """Hooks enabled with diffusers' ``enable_cache`` stay between calls; ``sample`` resets their state, so prompt
    B after prompt A (run to the end, or interrupted after step 4) gives what B gives on fresh hooks; without the
    reset it would not. (MagCache clears its own state at the end of a full run, not after an interrupted one;
    First Block Cache never does.)"""
    options = {"mag_ratios": [1.0] * STEPS} if kind == "mag" else {}
    config = StepCache(kind, 10.0, options).config(STEPS)
    transformer.enable_cache(config)
    alone, runs = _sample(transformer, tiny_embeds, prompt=1, noise_seed=2)
    assert runs[-1] < STEPS  # it skips
    _sample(transformer, tiny_embeds, prompt=0, stop_after=stop_after)
    after_a, _ = _sample(transformer, tiny_embeds, prompt=1, noise_seed=2)
    assert torch.equal(after_a, alone)

    # the check has teeth: without the reset, B starts from A's cached state and comes out different
    monkeypatch.setattr(type(transformer), "_reset_stateful_cache", lambda self, recurse=True: None)
    _sample(transformer, tiny_embeds, prompt=0, stop_after=stop_after)
    leaked, _ = _sample(transformer, tiny_embeds, prompt=1, noise_seed=2)
    assert not torch.equal(leaked, alone)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("fast",), "step cache must be one of first-block, mag"),
        (("first-block", -0.1), "finite number >= 0"),
        (("first-block", float("nan")), "finite number >= 0"),
        (("first-block", None, {"max_skip_steps": 2}), "takes no options"),
        (("mag", None, {"cache_interval": 2}), "['cache_interval']"),
        (("mag", None, {"mag_ratios": [1.0]}), "at least 2 finite positive"),
    ],
)
def test_bad_settings_name_the_setting(args, message):
    with pytest.raises(ValueError) as info:
        StepCache(*args)
    assert message in str(info.value)


def test_make_step_cache_none_and_defaults():
    assert make_step_cache(None) is None and make_step_cache("none") is None
    with pytest.raises(ValueError, match="needs a step cache"):
        make_step_cache("none", threshold=0.1)
    assert make_step_cache("first-block").to_dict() == {"kind": "first-block", "threshold": 0.05}
    assert make_step_cache("mag", max_skip_steps=2).to_dict() == {"kind": "mag", "threshold": 0.06,
                                                                 "max_skip_steps": 2, "calibrating": True}


# ---------------------------------------------------------------------------------------------- pipeline and CLI
@pytest.fixture(scope="module")
def pipe():
    from vist3a.pipeline import Text2ScenePipeline

    return Text2ScenePipeline.from_pretrained("tiny-random", device="cpu")


def test_pipeline_records_the_cache_and_turns_it_off(pipe):
    plain = pipe("a red cube", generator=_gen(3), progress=False)[0]
    assert plain.settings["step_cache"] is None
    try:
        pipe.enable_step_cache("first-block", threshold=0.0)
        same = pipe("a red cube", generator=_gen(3), progress=False)[0]
        assert same.settings["step_cache"] == {"kind": "first-block", "threshold": 0.0}
        assert torch.equal(same.frames, plain.frames)
        pipe.enable_step_cache("mag")  # replaces the first one
        assert pipe("a red cube", generator=_gen(3), progress=False)[0].settings["step_cache"]["calibrating"]
        second = pipe("a red cube", generator=_gen(4), progress=False)[0].settings["step_cache"]
        assert len(second["mag_ratios"]) == pipe.settings().num_steps and "calibrating" not in second
    finally:
        pipe.disable_step_cache()
    assert not pipe.generator.transformer.is_cache_enabled
    assert torch.equal(pipe("a red cube", generator=_gen(3), progress=False)[0].frames, plain.frames)


def test_pipeline_refuses_bad_kinds_and_compile(pipe):
    with pytest.raises(UserInputError, match="--step-cache: step cache must be one of"):
        pipe.enable_step_cache("teacache")
    assert pipe.step_cache is None
    from vist3a.pipeline import Text2ScenePipeline

    fresh = Text2ScenePipeline.from_pretrained("tiny-random", device="cpu", step_cache="first-block")
    with pytest.raises(UserInputError, match="do not combine"):
        fresh.compile()
    fresh.disable_step_cache().compile()  # lazy: nothing compiles until a call
    with pytest.raises(UserInputError, match="do not combine"):
        fresh.enable_step_cache("mag")


def test_cli_round_trip_writes_the_cache_into_meta(tmp_path):
    from vist3a.cli.main import run as run_cli

    out = tmp_path / "scene"
    code = run_cli(["generate", "a red cube", "--preset", "tiny-random", "--out", str(out), "--flythrough-frames", "0",
                    "--step-cache", "first-block", "--step-cache-threshold", "0.2"])
    assert code == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"]["step_cache"] == {"kind": "first-block", "threshold": 0.2}


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--step-cache", "fast"], "--step-cache must be one of none, first-block, mag, got 'fast'"),
        (["--step-cache-threshold", "0.1"], "--step-cache-threshold goes with --step-cache"),
        (["--step-cache", "none", "--step-cache-threshold", "0.1"], "goes with --step-cache first-block or mag"),
        (["--step-cache", "mag", "--step-cache-threshold", "-1"], "threshold must be a finite number >= 0"),
        (["--step-cache", "first-block", "--step-cache-threshold", "inf"], "finite number >= 0"),
        (["--step-cache", "mag", "--compile"], "--step-cache and --compile do not combine"),
    ],
)
def test_cli_bad_step_cache_is_one_line(tmp_path, capsys, extra, message):
    from vist3a.cli.main import run as run_cli

    code = run_cli(["generate", "x", "--preset", "tiny-random", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_cli_help_names_every_kind(capsys):
    from vist3a.cli.main import run as run_cli

    assert run_cli(["generate", "--help"]) == 0
    help_text = " ".join(capsys.readouterr().out.split())
    assert " | ".join(STEP_CACHES) in help_text.replace(" (default)", "")
