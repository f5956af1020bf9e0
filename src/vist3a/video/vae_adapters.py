"""Video-VAE adapters: one interface over the diffusers video VAEs that stitching and generation use.

Stitching and generation need six facts about a video VAE, and every family states them differently:

=============  ==============================  ========  ===================  ===========  =====================
family         diffusers class                 channels  spatial / temporal   frame rule   diffusion scaling
=============  ==============================  ========  ===================  ===========  =====================
wan2.1         ``AutoencoderKLWan``            16        8 / 4                4n+1         per-channel mean/std
wan2.2         ``AutoencoderKLWan`` (patch 2)  48        16 / 4               4n+1         per-channel mean/std
cogvideox      ``AutoencoderKLCogVideoX``      16        8 / 4                4n+1         ``scaling_factor``
hunyuanvideo   ``AutoencoderKLHunyuanVideo``   16        8 / 4                4n+1         ``scaling_factor``
svd            ``AutoencoderKLTemporalDecoder``  4       8 / 1                any          ``scaling_factor``
ltx            ``AutoencoderKLLTXVideo``       128       32 / 8               8n+1         per-channel + factor
=============  ==============================  ========  ===================  ===========  =====================

(the numbers are those of the released checkpoints; an adapter reads them from the loaded model's config, so a
tiny test VAE of the same class gets its own). Every adapter maps

- frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> **raw** latents ``[B, C, T_lat, h, w]`` (:meth:`encode`: one posterior
  sample, what VIST3A stitches on, or the posterior mode), and back (:meth:`decode`);
- raw (VAE space) <-> **normalised** (diffusion space) latents (:meth:`normalize` / :meth:`denormalize`):
  ``normalised = (raw - shift) * gain`` per channel, with ``shift``/``gain`` from the family's convention.

For training a VAE of any family (the nano VAE stage), :meth:`~VideoVAEAdapter.posterior` gives the posterior in
the same latent layout, :meth:`~VideoVAEAdapter.decode_pixels` the VAE's own differentiable, unclamped output, and
:meth:`~VideoVAEAdapter.fit_normalization` turns per-channel statistics of training latents into the family's
normalisation (per-channel ``latents_mean/std`` for Wan and LTX, ``scaling_factor`` for the others).

SVD's VAE encodes frames one by one (an image encoder) and decodes them jointly (a temporal decoder): its
latents still come laid out ``[B, C, T, h, w]``, one latent frame per video frame (temporal factor 1).

Look adapters up with :func:`vae_adapter` (from a loaded VAE), build tiny random VAEs with :func:`tiny_vae`, and
load one from a family name, Hub repo id or folder with :func:`load_video_vae`. :data:`VAE_ADAPTERS` maps family
names to adapter classes.
"""

from __future__ import annotations

import json
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from vist3a.errors import UserInputError
from vist3a.video.frames import frames_to_vae, vae_to_frames

logger = logging.getLogger(__name__)


def _get(config: Any, name: str, default: Any = None) -> Any:
    if isinstance(config, Mapping):
        return config.get(name, default)
    return getattr(config, name, default)


def _log2(value: float, what: str) -> int:
    level = math.log2(value)
    if value < 1 or level != int(level):
        raise ValueError(f"{what} must be a power of two, got {value}")
    return int(level)


class VideoVAEAdapter(ABC):
    """What vist3a needs from a video VAE (see the module docstring). Wraps a loaded diffusers VAE.

    Shapes: frames ``[B, T, 3, H, W]`` in ``[0, 1]``; latents ``[B, C, T_lat, h, w]`` with
    ``C = latent_channels``, ``T_lat = num_latent_frames(T)``, ``h, w = H, W / spatial_factor``.
    """

    family: ClassVar[str] = ""
    diffusers_class: ClassVar[str] = ""

    def __init__(self, vae: torch.nn.Module) -> None:
        if self.diffusers_class not in _class_names(vae):
            raise ValueError(f"{type(self).__name__} wraps a {self.diffusers_class}, got {type(vae).__name__}")
        self.vae = vae

    @property
    def config(self) -> Any:
        """The VAE's config (read live: :meth:`fit_normalization` replaces it)."""
        return self.vae.config

    # ------------------------------------------------------------------ facts from the config
    @property
    @abstractmethod
    def latent_channels(self) -> int:
        """Channels ``C`` of a raw latent."""

    @property
    @abstractmethod
    def factors(self) -> tuple[int, int]:
        """``(temporal_factor, spatial_factor)``, derived from the architecture in the config."""

    @property
    def temporal_factor(self) -> int:
        """Video frames per latent frame after the first (1: one latent frame per video frame)."""
        return self.factors[0]

    @property
    def spatial_factor(self) -> int:
        return self.factors[1]

    @property
    def name(self) -> str:
        """The family name (``wan2.1``, ``wan2.2``, ``cogvideox``, ...)."""
        return self.family

    @property
    def frame_rule(self) -> str:
        """The valid frame counts in words, e.g. ``"4n+1"`` or ``"any"``."""
        return "any" if self.temporal_factor == 1 else f"{self.temporal_factor}n+1"

    def describe(self) -> dict[str, Any]:
        """The facts as a JSON-friendly dict (written into reports)."""
        return {"family": self.name, "class": self.diffusers_class, "latent_channels": self.latent_channels,
                "temporal_factor": self.temporal_factor, "spatial_factor": self.spatial_factor,
                "frame_rule": self.frame_rule}

    # ------------------------------------------------------------------ frame and size rules
    def check_num_frames(self, num_frames: int, round_up: bool = False) -> int:
        """``num_frames`` if it is ``temporal_factor * n + 1`` (any count for factor 1); else round up or raise."""
        from vist3a.video.frames import check_num_frames

        return check_num_frames(num_frames, self.temporal_factor, round_up=round_up)

    def num_latent_frames(self, num_frames: int) -> int:
        """Latent frames of a valid clip: ``(T - 1) / temporal_factor + 1`` (= ``T`` for factor 1)."""
        return (self.check_num_frames(num_frames) - 1) // self.temporal_factor + 1

    def frames_for_latents(self, latent_frames: int) -> int:
        """Video frames of ``latent_frames`` latent frames: ``(T_lat - 1) * temporal_factor + 1``; also the number of
        slices the stitching layer resamples a latent to (one per input frame)."""
        if latent_frames < 1:
            raise ValueError(f"latent_frames must be >= 1, got {latent_frames}")
        return (latent_frames - 1) * self.temporal_factor + 1

    def check_resolution(self, height: int, width: int, multiple: int = 1) -> tuple[int, int]:
        """``(height, width)`` if both are multiples of ``spatial_factor * multiple``; else ``ValueError``."""
        from vist3a.video.frames import check_resolution

        return check_resolution(height, width, self.spatial_factor * multiple)

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(C, T_lat, h, w)`` of the latents of a ``num_frames x height x width`` clip (no batch axis)."""
        self.check_resolution(height, width)
        s = self.spatial_factor
        return self.latent_channels, self.num_latent_frames(num_frames), height // s, width // s

    # ------------------------------------------------------------------ normalisation
    @abstractmethod
    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel ``(shift [C], gain [C])`` with ``normalised = (raw - shift) * gain``."""

    def _affine(self, z: torch.Tensor, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f"`{name}` must be shaped [B, {self.latent_channels}, T_lat, h, w] ({self.name} VAE), "
                             f"got {tuple(z.shape)}")
        shift, gain = (t.to(z.device, torch.float32).view(1, -1, 1, 1, 1) for t in self._shift_gain())
        return shift, gain

    def normalize(self, raw_latents: torch.Tensor) -> torch.Tensor:
        """Raw (VAE space) -> normalised (diffusion space) latents, same shape and dtype (float32 arithmetic)."""
        shift, gain = self._affine(raw_latents, "raw_latents")
        return ((raw_latents.float() - shift) * gain).to(raw_latents.dtype)

    def denormalize(self, normalized_latents: torch.Tensor) -> torch.Tensor:
        """Normalised (diffusion space) -> raw (VAE space) latents, same shape and dtype."""
        shift, gain = self._affine(normalized_latents, "normalized_latents")
        return (normalized_latents.float() / gain + shift).to(normalized_latents.dtype)

    #: The config keys that hold the normalisation (what a fine-tune that keeps the latent space carries over).
    normalization_keys: ClassVar[tuple[str, ...]] = ("scaling_factor",)

    def fit_normalization(self, channel_mean: Sequence[float], channel_std: Sequence[float]) -> dict[str, Any]:
        """Set the VAE's normalisation from per-channel statistics of raw training latents, the way the family
        expects it, and return what was set (JSON-friendly).

        ``channel_mean`` / ``channel_std``: mean and (population) std of each latent channel over the training
        latents (``C`` values each). This default is the ``scaling_factor`` convention (CogVideoX, HunyuanVideo,
        SVD; their pipelines multiply raw latents by it, without a shift): ``1 / std`` of all latent elements
        together, ``std`` pooled from the channels (equal counts per channel).
        """
        mean, std = _channel_stats(channel_mean, channel_std, self.latent_channels)
        pooled_mean = mean.mean()
        pooled_std = float((std.square() + (mean - pooled_mean).square()).mean().sqrt())
        if not pooled_std > 0:
            raise ValueError(f"the latents have zero spread (std {pooled_std}); cannot set `scaling_factor`")
        self.vae.register_to_config(scaling_factor=1.0 / pooled_std)
        return {"scaling_factor": 1.0 / pooled_std}

    # ------------------------------------------------------------------ encode / decode
    def _place(self, device: torch.device | str | None) -> tuple[torch.device, torch.dtype]:
        """Where and in which dtype the VAE runs: ``device`` (needed when hooks offload its weights) or its
        parameters' device, and its parameters' dtype."""
        param = next(self.vae.parameters())
        return (torch.device(device) if device is not None else param.device), param.dtype

    def pixels(self, frames: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Checked frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> the VAE input ``[B, 3, T, H, W]`` in ``[-1, 1]`` (the
        VAE's device and dtype); also the space of :meth:`decode_pixels`, for reconstruction losses."""
        pixels = frames_to_vae(frames)
        self.check_num_frames(int(frames.shape[1]))
        self.check_resolution(int(frames.shape[3]), int(frames.shape[4]))
        return pixels.to(*self._place(device))

    def posterior(self, frames: torch.Tensor, device: torch.device | str | None = None) -> Any:
        """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> the encoder's diagonal Gaussian (diffusers'
        ``DiagonalGaussianDistribution``: ``mean``, ``logvar``, ``std``, ``sample()``, ``mode()``), its tensors laid
        out ``[B, C, T_lat, h, w]``; differentiable (for training the VAE)."""
        return self.vae.encode(self.pixels(frames, device)).latent_dist

    def encode(self, frames: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> raw latents ``[B, C, T_lat, h, w]`` (the VAE's dtype): one
        posterior sample (``sample``, what the stitching is fitted and trained on) or the posterior mode.
        ``device``: where the VAE runs (default: where its parameters are)."""
        posterior = self.posterior(frames, device)
        return posterior.sample(generator=generator) if sample else posterior.mode()

    @property
    def encoder_modules(self) -> list[torch.nn.Module]:
        """The modules that map pixels to the posterior (``encoder``, ``quant_conv`` where the class has one): what
        a decoder-only fine-tune freezes to keep the latent space."""
        return [module for name in ("encoder", "quant_conv") if (module := getattr(self.vae, name, None)) is not None]

    def _check_latents(self, raw_latents: torch.Tensor) -> None:
        if raw_latents.ndim != 5 or raw_latents.shape[1] != self.latent_channels:
            raise ValueError(f"`raw_latents` must be shaped [B, {self.latent_channels}, T_lat, h, w] ({self.name} "
                             f"VAE), got {tuple(raw_latents.shape)}")

    def decode_pixels(self, raw_latents: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Raw latents ``[B, C, T_lat, h, w]`` -> the VAE's own output ``[B, 3, T, H, W]`` in about ``[-1, 1]``
        (the VAE's dtype, not clamped: what a reconstruction loss compares with :meth:`pixels`)."""
        self._check_latents(raw_latents)
        return self.vae.decode(raw_latents.to(*self._place(device))).sample

    def decode(self, raw_latents: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        """Raw latents ``[B, C, T_lat, h, w]`` -> frames ``[B, T, 3, H, W]`` float32 in ``[0, 1]`` (under the
        caller's grad mode). ``device``: where the VAE runs (default: where its parameters are)."""
        return vae_to_frames(self.decode_pixels(raw_latents, device))  # from [B, 3, T, H, W]


# ---------------------------------------------------------------------------- families
class WanVAEAdapter(VideoVAEAdapter):
    """Wan 2.1 (z_dim 16, 8x) and Wan 2.2 (z_dim 48, patch 2: 16x) ``AutoencoderKLWan``; per-channel statistics."""

    diffusers_class = "AutoencoderKLWan"

    @property
    def name(self) -> str:
        return "wan2.2" if _get(self.config, "patch_size") else "wan2.1"

    @property
    def latent_channels(self) -> int:
        return int(self.config.z_dim)

    @property
    def factors(self) -> tuple[int, int]:
        from vist3a.video.frames import vae_scale_factors

        return vae_scale_factors(self.config)

    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        from vist3a.video.latents import latent_stats

        mean, std = latent_stats(self.config)
        return mean.flatten(), 1.0 / std.flatten()

    normalization_keys: ClassVar[tuple[str, ...]] = ("latents_mean", "latents_std")

    def fit_normalization(self, channel_mean: Sequence[float], channel_std: Sequence[float]) -> dict[str, Any]:
        """Wan's convention: the per-channel statistics become the config's ``latents_mean`` / ``latents_std``."""
        _channel_stats(channel_mean, channel_std, self.latent_channels)
        stats = {"latents_mean": list(channel_mean), "latents_std": list(channel_std)}
        self.vae.register_to_config(**stats)
        return stats


class CogVideoXVAEAdapter(VideoVAEAdapter):
    """``AutoencoderKLCogVideoX``: every down block but the last halves H and W, the first
    ``log2(temporal_compression_ratio)`` of those also halve time (keeping the first frame); ``scaling_factor``.

    Its decoder works on pairs of latent frames after an odd first group (diffusers' ``num_latent_frames_batch_size``
    = 2), so only an odd latent count decodes to ``(T_lat - 1) * 4 + 1`` frames: :meth:`decode` refuses even ones.
    Encoding (all stitching needs) takes any ``4n + 1`` frames.
    """

    family = "cogvideox"
    diffusers_class = "AutoencoderKLCogVideoX"

    @property
    def latent_channels(self) -> int:
        return int(self.config.latent_channels)

    @property
    def factors(self) -> tuple[int, int]:
        stages = len(self.config.block_out_channels) - 1
        temporal_levels = _log2(self.config.temporal_compression_ratio, "temporal_compression_ratio")
        return 2 ** min(temporal_levels, stages), 2**stages

    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _scalar_shift_gain(self.config, self.latent_channels)

    def decode_pixels(self, raw_latents: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        self._check_latents(raw_latents)
        if raw_latents.shape[2] > 1 and raw_latents.shape[2] % 2 == 0 and self.temporal_factor > 1:
            raise ValueError(
                f"the CogVideoX VAE decodes an odd number of latent frames (its decoder works in pairs after the first "
                f"frame), got {raw_latents.shape[2]}: use {2 * self.temporal_factor}n+1 video frames"
            )
        return super().decode_pixels(raw_latents, device)


class HunyuanVideoVAEAdapter(VideoVAEAdapter):
    """``AutoencoderKLHunyuanVideo``: the config states both compression ratios; ``scaling_factor``."""

    family = "hunyuanvideo"
    diffusers_class = "AutoencoderKLHunyuanVideo"

    @property
    def latent_channels(self) -> int:
        return int(self.config.latent_channels)

    @property
    def factors(self) -> tuple[int, int]:
        stages = len(self.config.down_block_types) - 1
        spatial = int(self.config.spatial_compression_ratio)
        temporal = int(self.config.temporal_compression_ratio)
        if _log2(spatial, "spatial_compression_ratio") > stages:
            raise ValueError(f"HunyuanVideo VAE: spatial_compression_ratio {spatial} needs more than {stages} "
                             "downsampling blocks")
        return temporal, spatial

    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _scalar_shift_gain(self.config, self.latent_channels)


class SVDVAEAdapter(VideoVAEAdapter):
    """``AutoencoderKLTemporalDecoder`` (Stable Video Diffusion): a 2D image encoder (every down block but the last
    halves H and W) and a temporal decoder; one latent frame per video frame; ``scaling_factor``."""

    family = "svd"
    diffusers_class = "AutoencoderKLTemporalDecoder"

    @property
    def latent_channels(self) -> int:
        return int(self.config.latent_channels)

    @property
    def factors(self) -> tuple[int, int]:
        return 1, 2 ** (len(self.config.block_out_channels) - 1)

    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        return _scalar_shift_gain(self.config, self.latent_channels)

    def _frame_posterior(self, frames: torch.Tensor, device: torch.device | str | None) -> tuple[Any, int, int]:
        pixels = self.pixels(frames, device).transpose(1, 2)  # [B, T, 3, H, W]: an image VAE, frame by frame
        batch, views = pixels.shape[:2]
        return self.vae.encode(pixels.flatten(0, 1)).latent_dist, batch, views  # frame by frame: [B*T, C, h, w]

    def posterior(self, frames: torch.Tensor, device: torch.device | str | None = None) -> Any:
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        posterior, batch, views = self._frame_posterior(frames, device)
        params = posterior.parameters.unflatten(0, (batch, views)).permute(0, 2, 1, 3, 4)  # [B, 2C, T, h, w]
        return DiagonalGaussianDistribution(params)

    def encode(self, frames: torch.Tensor, sample: bool = True, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> torch.Tensor:
        posterior, batch, views = self._frame_posterior(frames, device)
        z = posterior.sample(generator=generator) if sample else posterior.mode()
        return z.unflatten(0, (batch, views)).permute(0, 2, 1, 3, 4).contiguous()

    def decode_pixels(self, raw_latents: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        self._check_latents(raw_latents)
        batch, _, views = raw_latents.shape[:3]
        z = raw_latents.permute(0, 2, 1, 3, 4).flatten(0, 1).to(*self._place(device))
        video = self.vae.decode(z, num_frames=views).sample.unflatten(0, (batch, views))  # [B, T, 3, H, W]
        return video.transpose(1, 2)


class LTXVideoVAEAdapter(VideoVAEAdapter):
    """``AutoencoderKLLTXVideo``: patchify by ``patch_size`` / ``patch_size_t``, then one 2x stage per
    ``spatio_temporal_scaling`` entry (unless the config states the ratios); per-channel ``latents_mean/std``
    (model buffers) and ``scaling_factor``: ``normalised = (raw - mean) * scaling_factor / std``. A decoder with
    ``timestep_conditioning`` is run at decode timestep 0."""

    family = "ltx"
    diffusers_class = "AutoencoderKLLTXVideo"

    @property
    def latent_channels(self) -> int:
        return int(self.config.latent_channels)

    @property
    def factors(self) -> tuple[int, int]:
        stages = sum(bool(s) for s in self.config.spatio_temporal_scaling)
        spatial = _get(self.config, "spatial_compression_ratio") or int(self.config.patch_size) * 2**stages
        temporal = _get(self.config, "temporal_compression_ratio") or int(self.config.patch_size_t) * 2**stages
        return int(temporal), int(spatial)

    def _shift_gain(self) -> tuple[torch.Tensor, torch.Tensor]:
        mean = self.vae.latents_mean.detach().float().cpu()
        std = self.vae.latents_std.detach().float().cpu()
        return mean, float(self.config.scaling_factor) / std

    def fit_normalization(self, channel_mean: Sequence[float], channel_std: Sequence[float]) -> dict[str, Any]:
        """LTX's convention: the per-channel statistics go into the ``latents_mean`` / ``latents_std`` buffers (saved
        with the weights); ``scaling_factor`` stays as configured."""
        mean, std = _channel_stats(channel_mean, channel_std, self.latent_channels)
        with torch.no_grad():
            self.vae.latents_mean.copy_(mean)
            self.vae.latents_std.copy_(std)
        return {"latents_mean": list(channel_mean), "latents_std": list(channel_std)}

    def decode_pixels(self, raw_latents: torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
        self._check_latents(raw_latents)
        place = self._place(device)
        temb = None
        if _get(self.config, "timestep_conditioning"):
            temb = torch.zeros(raw_latents.shape[0], device=place[0], dtype=place[1])
        return self.vae.decode(raw_latents.to(*place), temb).sample


def _channel_stats(channel_mean: Sequence[float], channel_std: Sequence[float], channels: int
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Checked per-channel ``(mean [C], std [C])`` as float64 tensors (``C = channels``, every std > 0)."""
    mean = torch.as_tensor(list(channel_mean), dtype=torch.float64)
    std = torch.as_tensor(list(channel_std), dtype=torch.float64)
    if mean.shape != (channels,) or std.shape != (channels,):
        raise ValueError(f"`channel_mean` and `channel_std` must have one value per latent channel ({channels}), got "
                         f"{mean.numel()} and {std.numel()}")
    if not bool((std > 0).all()):
        raise ValueError(f"`channel_std` must be positive, got {std.tolist()}")
    return mean, std


def _scalar_shift_gain(config: Any, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``normalised = (raw - shift_factor) * scaling_factor`` (``shift_factor`` absent or None: 0)."""
    shift = float(_get(config, "shift_factor") or 0.0)
    return torch.full((channels,), shift), torch.full((channels,), float(config.scaling_factor))


# ---------------------------------------------------------------------------- registry
#: family name -> adapter class (``wan2.1`` and ``wan2.2`` share one; the config tells them apart).
VAE_ADAPTERS: dict[str, type[VideoVAEAdapter]] = {
    "wan2.1": WanVAEAdapter,
    "wan2.2": WanVAEAdapter,
    "cogvideox": CogVideoXVAEAdapter,
    "hunyuanvideo": HunyuanVideoVAEAdapter,
    "svd": SVDVAEAdapter,
    "ltx": LTXVideoVAEAdapter,
}
#: other spellings accepted for ``--vae``.
ALIASES = {"wan": "wan2.1", "wan21": "wan2.1", "wan22": "wan2.2", "cogvideo": "cogvideox", "hunyuan": "hunyuanvideo",
           "hunyuan-video": "hunyuanvideo", "stable-video-diffusion": "svd", "ltx-video": "ltx", "ltxvideo": "ltx"}
#: the released checkpoint of each family (diffusers layout, the VAE in ``vae/``).
FAMILY_REPOS = {
    "wan2.1": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    "wan2.2": "Wan-AI/Wan2.2-TI2V-5B-Diffusers",
    "cogvideox": "THUDM/CogVideoX-2b",
    "hunyuanvideo": "hunyuanvideo-community/HunyuanVideo",
    "svd": "stabilityai/stable-video-diffusion-img2vid-xt",
    "ltx": "Lightricks/LTX-Video",
}
_BY_CLASS = {cls.diffusers_class: cls for cls in VAE_ADAPTERS.values()}
_IMAGE_VAES = ("AutoencoderKL", "AsymmetricAutoencoderKL", "AutoencoderTiny", "AutoencoderDC", "ConsistencyDecoderVAE")


def family_name(name: str) -> str | None:
    """The canonical family of ``name`` (case-insensitive, aliases accepted), or None if it names none."""
    key = str(name).strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    return key if key in VAE_ADAPTERS else None


def _not_video(class_name: str, where: str) -> UserInputError:
    families = ", ".join(sorted({c.diffusers_class for c in VAE_ADAPTERS.values()}))
    if class_name in _IMAGE_VAES:
        return UserInputError(f"{where} is an image VAE ({class_name}) without a temporal decoder; pass a video VAE "
                              f"({families}) or a family name ({', '.join(VAE_ADAPTERS)})")
    return UserInputError(f"{where} is a {class_name}, not a supported video VAE; supported: {families}")


def _class_names(model: Any) -> list[str]:
    """Names of ``model``'s class and its bases (a subclass of a diffusers VAE is that VAE)."""
    return [cls.__name__ for cls in type(model).__mro__]


def vae_adapter(vae: torch.nn.Module) -> VideoVAEAdapter:
    """The adapter of a loaded diffusers VAE (by its class or a base class); ``UserInputError`` for an image or
    unknown VAE."""
    if isinstance(vae, VideoVAEAdapter):
        return vae
    for name in _class_names(vae):
        if name in _BY_CLASS:
            return _BY_CLASS[name](vae)
    raise _not_video(type(vae).__name__, "the VAE")


# ---------------------------------------------------------------------------- tiny random VAEs
def tiny_vae_config(family: str) -> dict[str, Any]:
    """Init kwargs of a tiny VAE of ``family`` with the released model's factors (CPU: well under a second a clip).

    Channel counts are small except the latent channels of Wan 2.2 (48) and SVD (4), which the tests need to prove
    that nothing assumes 16; LTX keeps 32x / 8x with 8 latent channels (its 128 would only slow the tests).
    """
    name = family_name(family)
    if name is None:
        raise ValueError(f"unknown VAE family {family!r}; choose one of {list(VAE_ADAPTERS)}")
    if name == "wan2.1":
        from vist3a.video.tiny import tiny_vae_config as wan_config

        return wan_config()
    if name == "wan2.2":
        return {"base_dim": 8, "z_dim": 48, "in_channels": 12, "out_channels": 12, "dim_mult": [1, 2, 4, 4],
                "num_res_blocks": 1, "attn_scales": [], "temperal_downsample": [False, True, True],
                "is_residual": True, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
                "latents_mean": [round(0.1 * math.sin(i), 4) for i in range(48)],
                "latents_std": [round(1.0 + 0.5 * math.cos(i) ** 2, 4) for i in range(48)]}
    if name == "cogvideox":
        return {"block_out_channels": (8, 8, 16, 16), "down_block_types": ("CogVideoXDownBlock3D",) * 4,
                "up_block_types": ("CogVideoXUpBlock3D",) * 4, "latent_channels": 16, "layers_per_block": 1,
                "norm_num_groups": 4, "temporal_compression_ratio": 4, "scaling_factor": 1.15258426}
    if name == "hunyuanvideo":
        return {"block_out_channels": (8, 8, 16, 16), "down_block_types": ("HunyuanVideoDownBlock3D",) * 4,
                "up_block_types": ("HunyuanVideoUpBlock3D",) * 4, "latent_channels": 16, "layers_per_block": 1,
                "norm_num_groups": 4, "spatial_compression_ratio": 8, "temporal_compression_ratio": 4,
                "mid_block_add_attention": False, "scaling_factor": 0.476986}
    if name == "svd":  # its GroupNorm has 32 groups: 32 channels is the least
        return {"block_out_channels": (32, 32, 32, 32), "down_block_types": ("DownEncoderBlock2D",) * 4,
                "latent_channels": 4, "layers_per_block": 1, "scaling_factor": 0.18215}
    return {"latent_channels": 8, "block_out_channels": (8, 8, 16, 16), "decoder_block_out_channels": (8, 8, 16, 16),
            "layers_per_block": (1, 1, 1, 1, 1), "decoder_layers_per_block": (1, 1, 1, 1, 1),
            "spatio_temporal_scaling": (True, True, True, False),
            "decoder_spatio_temporal_scaling": (True, True, True, False), "decoder_inject_noise": (False,) * 5,
            "upsample_residual": (False,) * 4, "upsample_factor": (1,) * 4, "patch_size": 4, "patch_size_t": 1}


def released_vae_config(family: str) -> dict[str, Any]:
    """Init kwargs with the architecture of the family's released VAE (the class defaults where they are it), for
    random-weight cost measurements at the real size; Wan 2.2's latent statistics are left at 0 / 1."""
    name = family_name(family)
    if name is None:
        raise ValueError(f"unknown VAE family {family!r}; choose one of {list(VAE_ADAPTERS)}")
    if name == "wan2.2":
        return {"base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "in_channels": 12, "out_channels": 12,
                "is_residual": True, "patch_size": 2, "scale_factor_spatial": 16, "latents_mean": [0.0] * 48,
                "latents_std": [1.0] * 48}
    if name == "svd":
        return {"block_out_channels": (128, 256, 512, 512), "down_block_types": ("DownEncoderBlock2D",) * 4,
                "layers_per_block": 2, "latent_channels": 4}
    return {}


def tiny_vae(family: str, seed: int = 0) -> torch.nn.Module:
    """A tiny random diffusers VAE of ``family`` (seeded without touching the global RNG), in eval mode."""
    import diffusers

    name = family_name(family)
    if name is None:
        raise ValueError(f"unknown VAE family {family!r}; choose one of {list(VAE_ADAPTERS)}")
    cls = getattr(diffusers, VAE_ADAPTERS[name].diffusers_class)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        vae = cls(**tiny_vae_config(name))
    if name == "ltx":  # non-trivial statistics so that normalisation is tested
        with torch.no_grad():
            channels = torch.arange(vae.latents_mean.numel(), dtype=torch.float32)
            vae.latents_mean.copy_(0.1 * torch.sin(channels))
            vae.latents_std.copy_(1.0 + 0.5 * torch.cos(channels) ** 2)
    return vae.eval()


# ---------------------------------------------------------------------------- loading
def _vae_folder(root: Path) -> Path:
    folder = root / "vae" if (root / "vae" / "config.json").is_file() else root
    if not (folder / "config.json").is_file():
        raise UserInputError(f"VAE: {root} has no config.json (neither in vae/ nor at the top)")
    return folder


def load_video_vae(source: str, *, tiny: bool = False, seed: int = 0) -> tuple[torch.nn.Module, str]:
    """A video VAE from a family name, a Hub repo id or a folder; returns ``(vae, source description)``.

    A family name (``cogvideox``, ``wan2.2``, ...) gives a tiny random VAE of that family when ``tiny`` (test and
    CPU presets), else the family's released VAE (:data:`FAMILY_REPOS`). A folder may be a diffusers pipeline
    folder (the VAE in ``vae/``) or the VAE folder itself; its ``config.json`` names the class. An image-only VAE
    (``AutoencoderKL``) is a ``UserInputError``.
    """
    import diffusers

    from vist3a.hub import resolve_dir

    family = family_name(source)
    if family is not None and tiny:
        return tiny_vae(family, seed), f"{family} (tiny random, seed {seed})"
    repo = FAMILY_REPOS[family] if family is not None else source
    folder = _vae_folder(resolve_dir(repo, allow_patterns=["vae/*", "config.json"], what="VAE"))
    class_name = json.loads((folder / "config.json").read_text()).get("_class_name", "")
    if class_name not in _BY_CLASS:
        raise _not_video(class_name or "model without `_class_name`", f"VAE {source}")
    vae = getattr(diffusers, class_name).from_pretrained(folder, local_files_only=True)
    return vae.eval(), repo if family is None else f"{family} ({repo})"
