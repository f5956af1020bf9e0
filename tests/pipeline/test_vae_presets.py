"""Text-to-3D with other video-VAE families: Wan 2.2 (48-channel, 16x VAE) and CogVideoX (tiny random models).

The CogVideoX sampling loop is checked against diffusers' own ``CogVideoXPipeline`` on the same parts and noise.
"""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.pipeline import Text2ScenePipeline
from vist3a.presets import load_preset

PROMPT = "a red cube left of a blue sphere"


@pytest.fixture(scope="module", params=["tiny-random-wan22", "tiny-random-cogvideox"])
def pipe(request) -> Text2ScenePipeline:
    return Text2ScenePipeline.from_pretrained(request.param, device="cpu")


def test_scene_from_another_vae(pipe):
    video = pipe.generator.vae_adapter
    preset = pipe.preset["name"]
    assert video.name == {"tiny-random-wan22": "wan2.2", "tiny-random-cogvideox": "cogvideox"}[preset]
    assert pipe.decoder.config.latent_channels == video.latent_channels
    settings = pipe.settings()
    scene = pipe(PROMPT, seed=3, progress=False)[0]
    assert scene.frames.shape == (settings.num_frames, 3, settings.height, settings.width)
    assert scene.gaussians.means.shape[-1] == 3 and torch.isfinite(scene.gaussians.means).all()
    again = pipe(PROMPT, seed=3, progress=False)[0]
    torch.testing.assert_close(again.frames, scene.frames)


def test_cogvideox_frames_round_to_an_odd_latent_count():
    pipe = Text2ScenePipeline.from_pretrained("tiny-random-cogvideox", device="cpu")
    with pytest.raises(UserInputError, match="8k\\+1"):
        pipe(PROMPT, num_frames=5, progress=False)
    scene = pipe(PROMPT, num_frames=5, round_frames=True, num_steps=1, progress=False)[0]
    assert scene.frames.shape[0] == 9


def test_wan22_latents_have_48_channels():
    from vist3a.video.tiny import build_tiny_generator

    gen = build_tiny_generator(0, vae="wan2.2")
    assert gen.latent_shape(5, 64, 64) == (48, 2, 4, 4)
    assert gen.resolution_multiple == (32, 32)
    with pytest.raises(ValueError, match="multiples of \\(32, 32\\)"):
        gen.latent_shape(5, 48, 48)


def test_wan22_per_token_timesteps_equal_one_per_sample_for_text_to_video():
    """Wan 2.2 TI2V-5B's pipeline passes one timestep per latent token (``expand_timesteps``); text-to-video makes
    them all equal, which must be what vist3a's sampler passes: one timestep per sample."""
    from vist3a.video.tiny import build_tiny_generator

    transformer = build_tiny_generator(0, vae="wan2.2").transformer
    x = torch.randn(1, 48, 2, 4, 4, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 16, 32, generator=torch.Generator().manual_seed(1))
    tokens = 2 * (4 // 2) * (4 // 2)
    with torch.no_grad():
        per_sample = transformer(x, torch.tensor([700.0]), text, return_dict=False)[0]
        per_token = transformer(x, torch.full((1, tokens), 700.0), text, return_dict=False)[0]
    torch.testing.assert_close(per_token, per_sample, atol=1e-5, rtol=1e-5)


def test_cogvideox_loop_matches_the_diffusers_pipeline():
    from diffusers import CogVideoXPipeline

    from vist3a.video.cogvideox import build_tiny_cogvideox_generator

    gen = build_tiny_cogvideox_generator(1)
    cond, uncond = gen.encode_prompts(["a chair"], "", guidance_scale=4.0)
    shape = (1, *gen.latent_shape(9, 32, 32))
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    ours = gen.generate_latents(["a chair"], embeds=(cond, uncond), num_frames=9, height=32, width=32, num_steps=4,
                                guidance_scale=4.0, latents=noise, progress=False)
    reference_pipe = CogVideoXPipeline(tokenizer=gen.text_encoder.tokenizer, text_encoder=gen.text_encoder.model,
                                       vae=gen.vae, transformer=gen.transformer,
                                       scheduler=type(gen.scheduler).from_config(gen.scheduler.config))
    reference_pipe.set_progress_bar_config(disable=True)
    reference = reference_pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_frames=9, height=32, width=32,
                               num_inference_steps=4, guidance_scale=4.0, latents=noise.permute(0, 2, 1, 3, 4),
                               output_type="latent", return_dict=False)[0]
    torch.testing.assert_close(ours, reference.permute(0, 2, 1, 3, 4).float(), atol=1e-5, rtol=1e-4)


def test_cogvideox_text_states_keep_padding():
    from vist3a.video.cogvideox import build_tiny_cogvideox_generator

    gen = build_tiny_cogvideox_generator(0)
    embeds, mask = gen.text_encoder.encode(["a chair"])
    assert embeds.shape[1] == gen.transformer.config.max_text_seq_length
    assert int(mask.sum()) < mask.numel() and embeds[0, -1].abs().sum() > 0  # pad states are the encoder's


def test_saved_cogvideox_pipeline_loads_back(tmp_path):
    pipe = Text2ScenePipeline.from_pretrained("tiny-random-cogvideox", device="cpu")
    scene = pipe(PROMPT, seed=1, progress=False)[0]
    folder = pipe.save_pretrained(tmp_path / "pipe")
    assert json.loads((folder / "generator" / "model_index.json").read_text())["_class_name"] == "CogVideoXPipeline"
    again = Text2ScenePipeline.from_pretrained(folder, device="cpu")(PROMPT, seed=1, progress=False)[0]
    torch.testing.assert_close(again.frames, scene.frames, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", ["wan2.2-ti2v-5b", "cogvideox"])
def test_real_presets_ask_for_a_stitched_decoder_folder(tmp_path, name):
    with pytest.raises(UserInputError, match="needs your stitched decoder"):
        Text2ScenePipeline.from_pretrained(name, device="cpu")
    preset = load_preset(name)
    preset["stitched"]["folder"] = str(tmp_path / "missing")
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(preset))
    with pytest.raises(UserInputError, match=r"has no config\.json"):
        Text2ScenePipeline.from_pretrained(path, device="cpu")


def test_cli_generate_with_other_vaes(tmp_path):
    from vist3a.cli.main import main

    for preset in ("tiny-random-wan22", "tiny-random-cogvideox"):
        out = tmp_path / preset
        with pytest.raises(SystemExit) as exit_info:
            main(["generate", "a red cube", "--preset", preset, "--out", str(out), "--flythrough-frames", "0"])
        assert exit_info.value.code in (0, None)
        assert (out / "scene.ply").is_file()
        assert json.loads((out / "meta.json").read_text())["settings"]["preset"] == preset
