"""WanGenerator: save/load round trip, offline errors, VAE conventions against diffusers' WanPipeline."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.video.generator import WanGenerator
from vist3a.video.lora import add_lora

SMALL = dict(num_frames=9, height=32, width=32, num_steps=2, progress=False)


def test_save_then_load_offline_gives_identical_outputs(tiny_gen, tmp_path, monkeypatch):
    folder = tiny_gen.save_pretrained(tmp_path / "tiny_wan")
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == "WanPipeline"
    assert index["transformer"] == ["diffusers", "WanTransformer3DModel"]
    assert index["text_encoder"] == ["transformers", "UMT5EncoderModel"]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = WanGenerator.from_pretrained(folder, local_files_only=True, device="cpu")
    assert loaded.text_encoder.max_length == tiny_gen.text_encoder.max_length == 16
    kwargs = dict(SMALL, seed=3, negative_prompt="blurry")
    a = tiny_gen.generate_latents(["a red chair", "a cabin"], **kwargs)
    b = loaded.generate_latents(["a red chair", "a cabin"], **kwargs)
    assert torch.equal(a, b)
    vae_state = loaded.vae.state_dict()
    assert all(torch.equal(v, vae_state[k]) for k, v in tiny_gen.vae.state_dict().items())
    assert loaded.vae.config.latents_std == tiny_gen.vae.config.latents_std


def test_bf16_checkpoint_samples_in_bf16_despite_float32_kept_modules(tiny_gen, tmp_path):
    """diffusers keeps Wan's scale_shift_table, time embedder and norms in float32 when a checkpoint loads in bf16,
    so the transformer's first parameter is float32: the sampler must still feed bf16 (a GPU run of a saved 1.3B
    pipeline failed with "Input type (float) and bias type (BFloat16)" before)."""
    folder = tiny_gen.save_pretrained(tmp_path / "tiny_wan")
    loaded = WanGenerator.from_pretrained(folder, local_files_only=True, device="cpu", dtype=torch.bfloat16)
    kept = {p.dtype for p in loaded.transformer.parameters()}
    assert kept == {torch.float32, torch.bfloat16}  # the case this test is about
    assert loaded.dtype == torch.bfloat16
    latents = loaded.generate_latents(["a red chair"], **SMALL, seed=0)
    assert torch.isfinite(latents).all()


def test_offline_missing_repo_names_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # read at call time by vist3a (huggingface_hub reads it at import)
    repo = "vist3a-tests/no-such-wan-repo"
    with pytest.raises(UserInputError, match=rf"'{repo}'.*not in the local Hugging Face cache.*hf download {repo}"):
        WanGenerator.from_pretrained(repo, device="cpu", cache_dir=tmp_path / "c1")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    with pytest.raises(UserInputError, match=rf"'{repo}'.*downloads are off"):
        WanGenerator.from_pretrained(repo, local_files_only=True, device="cpu", cache_dir=tmp_path / "c2")


def test_incomplete_folder_is_a_user_error(tmp_path):
    (tmp_path / "vae").mkdir()
    with pytest.raises(UserInputError, match=r"lacks the sub-folders \['transformer', 'text_encoder'"):
        WanGenerator.from_pretrained(tmp_path, device="cpu")
    with pytest.raises(UserInputError, match="does not exist"):
        WanGenerator.from_pretrained(tmp_path / "nowhere", device="cpu")


def test_frames_match_wan_pipeline(tiny_gen):
    """Normalised latents -> denormalize -> decode reproduces WanPipeline's own [0, 1] video output."""
    from diffusers import WanPipeline

    from vist3a.video.sampler import make_scheduler

    cond, uncond = tiny_gen.encode_prompts(["a red chair"], "", guidance_scale=4.0)
    noise = torch.randn(1, 16, 3, 4, 4, generator=torch.Generator().manual_seed(9))
    pipe = WanPipeline(None, None, tiny_gen.vae, make_scheduler("unipc", 5.0), tiny_gen.transformer)
    pipe.set_progress_bar_config(disable=True)
    video = pipe(
        prompt_embeds=cond, negative_prompt_embeds=uncond, latents=noise.clone(), num_inference_steps=2,
        guidance_scale=4.0, height=32, width=32, num_frames=9, output_type="pt",
    ).frames  # fmt: skip
    z = tiny_gen.generate_latents(
        ["a red chair"], template=None, negative_prompt="", guidance_scale=4.0, latents=noise, **SMALL
    )
    frames = tiny_gen.decode(tiny_gen.denormalize(z))
    assert frames.shape == video.shape == (1, 9, 3, 32, 32)
    assert frames.min() >= 0 and frames.max() <= 1
    torch.testing.assert_close(frames, video.float(), atol=1e-4, rtol=1e-4)


def test_encode_takes_unit_range_frames(tiny_gen):
    frames = torch.rand(1, 5, 3, 16, 32, generator=torch.Generator().manual_seed(1))
    raw = tiny_gen.encode(frames)
    assert raw.shape == (1, 16, 2, 2, 4) and raw.dtype == torch.float32
    with torch.no_grad():
        expected = tiny_gen.vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mean
    torch.testing.assert_close(raw, expected)
    a = tiny_gen.encode(frames, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    b = tiny_gen.encode(frames, sample_posterior=True, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a, b) and not torch.equal(a, raw)
    with pytest.raises(ValueError, match="4k\\+1"):
        tiny_gen.encode(torch.rand(1, 8, 3, 32, 32))


def test_prompt_template_and_negative_prompt_matter(tiny_gen):
    base = tiny_gen.generate_latents("a red chair", seed=0, **SMALL)
    no_template = tiny_gen.generate_latents("a red chair", seed=0, template=None, **SMALL)
    other_negative = tiny_gen.generate_latents("a red chair", seed=0, negative_prompt="", **SMALL)
    assert base.shape == (1, 16, 3, 4, 4)
    assert (base - no_template).abs().max() > 1e-3
    assert (base - other_negative).abs().max() > 1e-3


def test_input_rules(tiny_gen):
    with pytest.raises(ValueError, match="--round-frames"):
        tiny_gen.generate_latents("a cat", **{**SMALL, "num_frames": 8})
    rounded = tiny_gen.generate_latents("a cat", seed=0, round_frames=True, **{**SMALL, "num_frames": 8})
    assert rounded.shape[2] == 3  # 8 -> 9 frames -> 3 latent frames
    with pytest.raises(ValueError, match=r"multiples of \(16, 16\)"):
        tiny_gen.generate_latents("a cat", **{**SMALL, "height": 40})
    assert tiny_gen.resolution_multiple == (16, 16) and tiny_gen.scale_factors == (4, 8)
    with pytest.raises(ValueError, match="text_dim"):
        WanGenerator(tiny_gen.vae, tiny_gen.transformer, _WideEncoder(), device="cpu")


class _WideEncoder:
    hidden_size = 7


def test_model_offload_gives_same_result(tiny_gen):
    reference = tiny_gen.generate_latents("a cat", seed=1, **SMALL)
    gen = WanGenerator(
        tiny_gen.vae,
        copy.deepcopy(tiny_gen.transformer),
        tiny_gen.text_encoder,
        tiny_gen.scheduler,
        device="cpu",
        offload="text",
    )
    assert gen.offload == "text" and gen.text_encoder.offload_after_encode
    assert torch.equal(gen.generate_latents("a cat", seed=1, **SMALL), reference)
    gen.set_offload("model")
    try:
        assert torch.equal(gen.generate_latents("a cat", seed=1, **SMALL), reference)
        assert next(gen.transformer.parameters()).device.type == "cpu"
        with pytest.raises(ValueError, match="offload"):
            gen.set_offload("gpu")
    finally:
        tiny_gen.text_encoder.offload_after_encode = False


def test_auto_offload_keeps_weights_resident_only_when_they_fit(tiny_gen, monkeypatch):
    """``offload="auto"``: everything on the GPU when the weights still to place plus the headroom fit in free
    memory, the text encoder streamed otherwise; off CUDA it is ``"none"``."""
    from vist3a.video import generator as generator_module

    gen = WanGenerator(tiny_gen.vae, tiny_gen.transformer, tiny_gen.text_encoder, tiny_gen.scheduler,
                       device="cpu", offload="auto")
    assert gen.offload == "none"
    weights = sum(t.numel() * t.element_size()
                  for m in (gen.vae, gen.transformer, gen.text_encoder.model)
                  for t in (*m.parameters(), *m.buffers()))
    headroom = generator_module.AUTO_HEADROOM_BYTES
    gen.device = torch.device("cuda", 0)  # the weights are on the CPU: all of them still to be placed
    for free, expected in ((weights + headroom, "none"), (weights + headroom - 1, "text")):
        monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device, free=free: (free, 2 * free))
        assert gen.resolve_auto_offload() == expected


def test_save_refuses_unmerged_lora(tiny_gen, tmp_path):
    gen = WanGenerator(
        tiny_gen.vae, copy.deepcopy(tiny_gen.transformer), tiny_gen.text_encoder, tiny_gen.scheduler, device="cpu"
    )
    add_lora(gen.transformer)
    with pytest.raises(ValueError, match="merge_lora"):
        gen.save_pretrained(tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_minilm_generator_for_nano():
    from vist3a.video.tiny import build_tiny_generator

    gen = build_tiny_generator(1, text_encoder="minilm", text_max_length=8)
    assert gen.transformer.config.text_dim == 384
    z = gen.generate_latents(["a cat", "a dog"], template=None, seed=0, **SMALL)
    assert z.shape == (2, 16, 3, 4, 4) and torch.isfinite(z).all()
    with pytest.raises(ValueError, match="384"):
        build_tiny_generator(text_encoder="minilm", text_dim=32)


@pytest.mark.gpu
def test_streamed_text_encoder_matches_resident_on_cuda():
    """offload='text' on CUDA streams the text encoder's weights through diffusers' group offloading: same
    embeddings and latents as with everything resident, and the weights stay off the GPU."""
    from vist3a.video.tiny import build_tiny_generator

    resident = build_tiny_generator(seed=0, text_max_length=16, device="cuda")
    reference = resident.generate_latents("a cat", seed=1, **SMALL)
    streamed = build_tiny_generator(seed=0, text_max_length=16, device="cuda")
    streamed.set_offload("text")
    assert streamed.text_encoder.streamed
    torch.testing.assert_close(streamed.generate_latents("a cat", seed=1, **SMALL), reference)
    assert next(streamed.text_encoder.model.parameters()).device.type == "cpu"
    with pytest.raises(ValueError, match="reload"):
        streamed.set_offload("none")
