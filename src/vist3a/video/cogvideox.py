"""``CogVideoXGenerator``: CogVideoX text-to-video (VAE, transformer, T5 text encoder, DDIM scheduler).

The same interface as :class:`~vist3a.video.generator.WanGenerator` (the pipeline uses either): it shares the
placement / offload and VAE plumbing and differs where CogVideoX differs from Wan:

- **sampling**: CogVideoX predicts ``v`` on a DDPM noise schedule; :meth:`generate_latents` runs the folder's
  scheduler (``CogVideoXDDIMScheduler``) with classifier-free guidance as one batched call, as the diffusers
  ``CogVideoXPipeline`` does (constant guidance, no dynamic CFG);
- **layout**: the transformer takes ``[B, T_lat, C, h, w]``; latents elsewhere stay ``[B, C, T_lat, h, w]``;
- **text**: T5 states of the prompt padded to ``max_text_seq_length`` tokens, the padding tokens' states included
  (CogVideoX was trained on them; :class:`CogVideoXTextEncoder`);
- **frames**: the VAE decodes an odd number of latent frames (:class:`~vist3a.video.vae_adapters.CogVideoXVAEAdapter`),
  so clips have ``8k + 1`` frames (9, 17, ..., 49).

Only the sinusoidal-position transformers (CogVideoX-2b) are supported; those with rotary embeddings
(CogVideoX-5b, 1.5) are refused with a ``UserInputError``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError
from vist3a.hub import resolve_dir
from vist3a.io_utils import atomic_dir
from vist3a.video.generator import COMPONENTS, VIST3A_CONFIG_NAME, WanGenerator, _default_device
from vist3a.video.sampler import StepCallback, initial_noise
from vist3a.video.templates import NEGATIVE_PROMPT
from vist3a.video.text import HFTextEncoder

logger = logging.getLogger(__name__)

COGVIDEOX_REPO = "THUDM/CogVideoX-2b"


class CogVideoXTextEncoder(HFTextEncoder):
    """T5 text states as CogVideoX takes them: ``max_length`` tokens (226), padding included and not masked.

    Unlike :class:`~vist3a.video.text.HFTextEncoder` the states past a prompt's tokens are the encoder's (CogVideoX's
    pipeline runs T5 without an attention mask on padded ids), not zeros.
    """

    default_max_length = 226
    max_length_from_tokenizer = False
    default_subfolder = "text_encoder"
    default_tokenizer_subfolder = "tokenizer"

    @torch.no_grad()
    def _run(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(prompts, padding="max_length", max_length=self.max_length, truncation=True,
                                add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        weights_on = self._weights_device()
        if weights_on.type != "meta" and weights_on != self.device and not self.streamed:
            self.model.to(self.device)
        hidden = self.model(input_ids=tokens["input_ids"].to(self.device)).last_hidden_state
        if self.offload_after_encode:
            self.offload()
        return hidden, tokens["attention_mask"].to(self.device).long()


class CogVideoXGenerator(WanGenerator):
    """CogVideoX text-to-video parts with a DDIM (v-prediction) sampling loop; see the module docstring.

    Args:
        vae: ``AutoencoderKLCogVideoX``.
        transformer: ``CogVideoXTransformer3DModel`` without rotary embeddings.
        text_encoder: :class:`CogVideoXTextEncoder` whose ``max_length`` is the transformer's
            ``max_text_seq_length``.
        scheduler: ``CogVideoXDDIMScheduler`` (or another diffusers DDPM-family scheduler).
        device, offload: as :class:`~vist3a.video.generator.WanGenerator`.
    """

    def __init__(self, vae: torch.nn.Module, transformer: torch.nn.Module, text_encoder: HFTextEncoder,
                 scheduler: Any, *, device: torch.device | str | None = None, offload: str = "none") -> None:
        if transformer.config.use_rotary_positional_embeddings:
            raise UserInputError("CogVideoX transformers with rotary position embeddings (CogVideoX-5b, 1.5) are not "
                                 "supported yet; use CogVideoX-2b")
        if text_encoder.max_length != transformer.config.max_text_seq_length:
            raise ValueError(f"text length {text_encoder.max_length} != the transformer's max_text_seq_length "
                             f"{transformer.config.max_text_seq_length}")
        super().__init__(vae, transformer, text_encoder, scheduler, device=device, offload=offload)

    text_width_key = "text_embed_dim"

    @property
    def resolution_multiple(self) -> tuple[int, int]:
        """VAE spatial factor x transformer patch (16 for CogVideoX-2b)."""
        size = self.scale_factors[1] * int(self.transformer.config.patch_size)
        return size, size

    def latent_shape(self, num_frames: int, height: int, width: int,
                     round_frames: bool = False) -> tuple[int, int, int, int]:
        """``(C, T_lat, h, w)``; ``num_frames`` must give an odd latent count (``8k + 1`` frames)."""
        temporal = self.scale_factors[0]
        frames = self.vae_adapter.check_num_frames(num_frames, round_up=round_frames)
        if self.vae_adapter.num_latent_frames(frames) % 2 == 0:
            if not round_frames:
                raise ValueError(f"CogVideoX needs {2 * temporal}k+1 frames (its VAE decodes an odd number of latent "
                                 f"frames), got {num_frames}; pass --round-frames to use {frames + temporal}")
            frames += temporal
        return super().latent_shape(frames, height, width)

    # ------------------------------------------------------------------ loading / saving
    @classmethod
    def from_pretrained(cls, repo_or_dir: str | os.PathLike = COGVIDEOX_REPO, *, dtype: torch.dtype | None = None,
                        vae_dtype: torch.dtype = torch.float32, text_encoder_dtype: torch.dtype | None = None,
                        device: torch.device | str | None = None, offload: str = "none",
                        text_max_length: int | None = None, local_files_only: bool | None = None,
                        revision: str | None = None, cache_dir: str | os.PathLike | None = None) -> CogVideoXGenerator:
        """Load a diffusers-format CogVideoX folder or Hub repo (default: CogVideoX-2b)."""
        import diffusers
        from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel

        device = torch.device(device) if device is not None else _default_device()
        dtype = dtype or (torch.bfloat16 if device.type == "cuda" else torch.float32)
        root = resolve_dir(repo_or_dir, allow_patterns=["model_index.json", *(f"{c}/*" for c in COMPONENTS)],
                                      revision=revision, local_files_only=local_files_only, cache_dir=cache_dir,
                                      what="CogVideoX generator")
        missing = [c for c in COMPONENTS if not (root / c).is_dir()]
        if missing:
            raise UserInputError(f"CogVideoX generator: '{repo_or_dir}' lacks the sub-folders {missing}")
        vae = AutoencoderKLCogVideoX.from_pretrained(root, subfolder="vae", torch_dtype=vae_dtype,
                                                     local_files_only=True)
        transformer = CogVideoXTransformer3DModel.from_pretrained(root, subfolder="transformer", torch_dtype=dtype,
                                                                  local_files_only=True)
        text_encoder = CogVideoXTextEncoder.from_pretrained(
            root, max_length=text_max_length or int(transformer.config.max_text_seq_length),
            dtype=text_encoder_dtype or dtype)
        name = json.loads((root / "scheduler" / "scheduler_config.json").read_text()).get("_class_name", "")
        scheduler = getattr(diffusers, name).from_pretrained(root / "scheduler")
        return cls(vae, transformer, text_encoder, scheduler, device=device, offload=offload)

    def save_pretrained(self, directory: str | os.PathLike) -> os.PathLike:
        """A diffusers ``CogVideoXPipeline`` folder (atomically) that :meth:`from_pretrained` reads back."""
        import diffusers

        with atomic_dir(directory) as tmp:
            self.vae.save_pretrained(tmp / "vae")
            self.transformer.save_pretrained(tmp / "transformer")
            self.text_encoder.save_pretrained(tmp, subfolder="text_encoder", tokenizer_subfolder="tokenizer")
            self.scheduler.save_pretrained(tmp / "scheduler")
            index = {"_class_name": "CogVideoXPipeline", "_diffusers_version": diffusers.__version__,
                     **{c: ["diffusers", type(getattr(self, c)).__name__] for c in ("vae", "transformer", "scheduler")},
                     "text_encoder": ["transformers", type(self.text_encoder.model).__name__],
                     "tokenizer": ["transformers", type(self.text_encoder.tokenizer).__name__]}
            (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
            (tmp / VIST3A_CONFIG_NAME).write_text(json.dumps({"text_max_length": self.text_encoder.max_length}) + "\n")
        return directory

    # ------------------------------------------------------------------ generation
    @torch.no_grad()
    def generate_latents(
        self,
        prompts: str | Sequence[str],
        *,
        negative_prompt: str | Sequence[str] | None = NEGATIVE_PROMPT,
        template: str | None = "orbit",
        num_frames: int = 49,
        height: int = 480,
        width: int = 720,
        num_steps: int = 50,
        guidance_scale: float = 6.0,
        scheduler: str | Any = "ddim",
        shift: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        round_frames: bool = False,
        callback: StepCallback | None = None,
        progress: bool = True,
        embeds: tuple[torch.Tensor, torch.Tensor | None] | None = None,
        progress_bar_config: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """Text -> **normalised** latents ``[B, C, T_lat, h, w]`` (float32). ``scheduler``: ``"ddim"`` (the folder's)
        or a ready diffusers scheduler; ``shift`` (a flow-matching knob) is ignored. ``callback`` and
        ``progress_bar_config`` as in :func:`vist3a.video.sampler.sample` (a returned tensor replaces the latents)."""
        prompts = [prompts] if isinstance(prompts, str) else list(prompts)
        if not prompts:
            raise ValueError("`prompts` must contain at least one prompt, got an empty list")
        if isinstance(scheduler, str):
            if scheduler.lower() not in ("ddim", "default"):
                raise UserInputError(f"CogVideoX samples with its own DDIM scheduler; --scheduler {scheduler!r} is "
                                     "a flow-matching solver (use ddim)")
            scheduler = type(self.scheduler).from_config(self.scheduler.config)
        shape = (len(prompts), *self.latent_shape(num_frames, height, width, round_frames=round_frames))
        cond, uncond = embeds if embeds is not None else self.encode_text(prompts, negative_prompt, template,
                                                                          guidance_scale)
        use_cfg = float(guidance_scale) != 1.0
        text = torch.cat([cond, uncond.expand_as(cond)]) if use_cfg else cond
        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(int(seed))
        scheduler.set_timesteps(num_steps, device=self.device)
        x = latents.float().to(self.device) if latents is not None else initial_noise(shape, generator, self.device)
        x = x * scheduler.init_noise_sigma
        with self._placed(self.transformer):
            bar = {"desc": "denoising", "disable": not progress, "leave": False, **(progress_bar_config or {})}
            for i, t in enumerate(tqdm(scheduler.timesteps, **bar)):
                inp = torch.cat([x, x]) if use_cfg else x
                inp = scheduler.scale_model_input(inp, t).permute(0, 2, 1, 3, 4)  # [B, T_lat, C, h, w]
                pred = self.transformer(hidden_states=inp.to(self.dtype), encoder_hidden_states=text.to(self.dtype),
                                        timestep=t.expand(inp.shape[0]), return_dict=False)[0]
                pred = pred.float().permute(0, 2, 1, 3, 4)
                if use_cfg:
                    pred_cond, pred_uncond = pred.chunk(2)
                    pred = pred_uncond + guidance_scale * (pred_cond - pred_uncond)
                x = scheduler.step(pred, t, x, return_dict=False)[0]
                if callback is not None:
                    replaced = callback(i, t, x)
                    x = replaced if replaced is not None else x
        return x.float()


def tiny_cogvideox_configs(text_dim: int = 32, text_length: int = 16) -> dict[str, dict[str, Any]]:
    """Init kwargs of a tiny CogVideoX: ``{"transformer": ..., "scheduler": ...}`` (the VAE:
    :func:`~vist3a.video.vae_adapters.tiny_vae_config`); the scheduler is CogVideoX-2b's."""
    return {
        "transformer": {"num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 16, "out_channels": 16,
                        "time_embed_dim": 16, "text_embed_dim": text_dim, "num_layers": 1, "sample_width": 8,
                        "sample_height": 8, "sample_frames": 9, "patch_size": 2, "temporal_compression_ratio": 4,
                        "max_text_seq_length": text_length},
        "scheduler": {"prediction_type": "v_prediction", "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                      "beta_end": 0.012, "clip_sample": False, "set_alpha_to_one": True, "rescale_betas_zero_snr": True,
                      "snr_shift_scale": 3.0, "timestep_spacing": "trailing"},
    }


def build_tiny_cogvideox_generator(seed: int = 0, *, device: torch.device | str = "cpu",
                                   dtype: torch.dtype = torch.float32, text_dim: int = 32,
                                   text_max_length: int = 16) -> CogVideoXGenerator:
    """A random-weight :class:`CogVideoXGenerator` (tiny T5 on the offline MiniLM tokenizer), seeded without touching
    the global RNG."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5Config, T5EncoderModel

    from vist3a.video.text import minilm_model_dir
    from vist3a.video.tiny import tiny_text_encoder_config
    from vist3a.video.vae_adapters import tiny_vae

    configs = tiny_cogvideox_configs(text_dim, text_max_length)
    tokenizer = AutoTokenizer.from_pretrained(minilm_model_dir(), local_files_only=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = tiny_vae("cogvideox", seed)
        transformer = CogVideoXTransformer3DModel(**configs["transformer"])
        t5 = T5Config(**tiny_text_encoder_config(text_dim, len(tokenizer), tokenizer.pad_token_id or 0))
        encoder = CogVideoXTextEncoder(T5EncoderModel(t5), tokenizer, max_length=text_max_length)
    if dtype != torch.float32:
        torch.nn.Module.to(transformer, dtype=dtype)
        encoder.model.to(dtype)
    return CogVideoXGenerator(vae, transformer, encoder, CogVideoXDDIMScheduler(**configs["scheduler"]),
                              device=device)
