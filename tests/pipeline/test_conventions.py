"""``Text2ScenePipeline`` speaks diffusers: argument names, generators, callbacks, output types, placement."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.pipeline import Text2ScenePipeline, Text2ScenePipelineOutput

PROMPT = "a red cube left of a blue sphere"


@pytest.fixture(scope="module")
def pipe() -> Text2ScenePipeline:
    pipe = Text2ScenePipeline.from_pretrained("tiny-random", device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def reference(pipe):
    """The deprecated ``seed=`` / ``num_steps=`` path, which must keep giving the same scene."""
    with pytest.warns(FutureWarning, match="deprecated"):
        return pipe(PROMPT, seed=3, num_steps=3)[0]


def test_generator_path_equals_the_seed_path(pipe, reference):
    out = pipe(PROMPT, num_inference_steps=3, generator=_gen(3))
    assert isinstance(out, Text2ScenePipelineOutput) and len(out) == 1 and out[0] is out.scenes[0]
    assert torch.equal(out.scenes[0].frames, reference.frames)
    assert torch.equal(out.scenes[0].gaussians.means, reference.gaussians.means)
    assert out.scenes[0].settings["seed"] == 3 and out.scenes[0].settings["num_steps"] == 3


def test_latent_output_decodes_to_the_scene(pipe, reference):
    (latents,) = pipe(PROMPT, num_inference_steps=3, generator=_gen(3), output_type="latent", return_dict=False)
    frames = pipe.generator.decode(pipe.generator.denormalize(latents))[0]
    assert latents.ndim == 5 and torch.equal(frames, reference.frames)


def test_given_latents_and_prompt_embeds_reproduce_the_run(pipe, reference):
    from vist3a.video.sampler import initial_noise

    settings = pipe.settings()
    shape = pipe.generator.latent_shape(settings.num_frames, settings.height, settings.width)
    noise = initial_noise((1, *shape), _gen(3))
    cond, uncond = pipe.generator.encode_text([PROMPT], "", settings.template, settings.guidance_scale)
    scene = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, latents=noise, num_inference_steps=3)[0]
    assert torch.equal(scene.frames, reference.frames)


def test_generator_list_and_scenes_per_prompt(pipe, reference):
    scenes = pipe(PROMPT, num_inference_steps=3, num_scenes_per_prompt=2, generator=[_gen(3), _gen(4)]).scenes
    assert len(scenes) == 2 and torch.allclose(scenes[0].frames, reference.frames, atol=1e-4)
    other = pipe(PROMPT, num_inference_steps=3, generator=_gen(4))[0]
    assert torch.allclose(scenes[1].frames, other.frames, atol=1e-4)
    with pytest.raises(UserInputError, match="one per scene"):
        pipe(PROMPT, num_inference_steps=3, generator=[_gen(3)], num_scenes_per_prompt=2)


def test_callback_on_step_end_sees_and_can_replace_the_latents(pipe, reference):
    seen: list[int] = []

    def watch(p, step, timestep, kwargs):
        assert p is pipe and set(kwargs) == {"latents"}
        seen.append(step)
        return kwargs

    scene = pipe(PROMPT, num_inference_steps=3, generator=_gen(3), callback_on_step_end=watch)[0]
    assert seen == [0, 1, 2] and torch.equal(scene.frames, reference.frames)
    zeroed = pipe(PROMPT, num_inference_steps=3, generator=_gen(3), output_type="latent",
                  callback_on_step_end=lambda p, i, t, kw: {"latents": torch.zeros_like(kw["latents"])})
    assert not bool(zeroed.scenes.any())
    with pytest.raises(UserInputError, match="callback_on_step_end_tensor_inputs"):
        pipe(PROMPT, callback_on_step_end=watch, callback_on_step_end_tensor_inputs=["prompt_embeds"])


def test_bad_output_type_is_a_user_error(pipe):
    with pytest.raises(UserInputError, match="output_type"):
        pipe(PROMPT, output_type="pil")


def test_placement_helpers_and_model_index(pipe, tmp_path):
    assert pipe.to("cpu") is pipe and pipe.device.type == "cpu"
    folder = pipe.save_pretrained(tmp_path / "saved")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "Text2ScenePipeline"
    assert index["generator"] == ["vist3a.video", "WanGenerator"] and index["decoder"][1] == "StitchedDecoder"
    offloaded = Text2ScenePipeline.from_pretrained(folder, device="cpu")
    assert offloaded.enable_model_cpu_offload() is offloaded and offloaded.generator.offload == "model"


def test_constructing_from_a_preset_name(reference):
    """The issue's one-liner: ``Text2ScenePipeline(name)(prompt, num_inference_steps=..., generator=..., cb)``."""
    steps: list[int] = []
    scene = Text2ScenePipeline("tiny-random", device="cpu")(
        PROMPT, num_inference_steps=3, generator=_gen(3), progress=False,
        callback_on_step_end=lambda p, i, t, kw: steps.append(i) or kw,
    )[0]
    assert steps == [0, 1, 2] and torch.equal(scene.frames, reference.frames)
