"""Stage ``vae``: train a nano video VAE (the shipped one: diffusers ``AutoencoderKLWan`` at a tiny config) on
synthetic clips.

``family`` picks the diffusers video-VAE class (:mod:`vist3a.video.vae_adapters`; ``wan2.1`` by default,
``hunyuanvideo`` has a nano config too: :data:`~vist3a.nano.configs.NANO_VAE_CONFIGS`), and everything the stage
does with the VAE goes through that family's adapter: its input layout, posterior, decoder output and
normalisation. Only the Wan VAE ships (the nano generator and stitched decoder live on its latents); another family
is for experiments such as issue 18's "does the lowest stitching MSE across VAEs mean the best 3D?".

Loss per clip: ``L1 + mse_weight * MSE`` between the clip and its reconstruction from a posterior *sample*,
plus ``kl_weight * KL(q(z|x) || N(0, I))`` (mean over latent elements), as a KL-VAE is trained. After
training, the per-channel mean and std of the posterior means over the training clips set the family's
normalisation (:meth:`~vist3a.video.vae_adapters.VideoVAEAdapter.fit_normalization`): Wan's config
``latents_mean`` / ``latents_std``, so the generator's normalised latents are ~N(0, 1) per channel; the
``scaling_factor`` (``1 / std`` of all latent elements) of HunyuanVideo, CogVideoX or SVD.
Evaluation: PSNR of reconstructions (posterior mean) of held-out clips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vist3a.data.cache import ClipCache
from vist3a.nano.configs import NANO_VAE_CONFIGS
from vist3a.nano.training import (
    StageConfig,
    autocast,
    begin_stage,
    evaluate_with_fp16,
    make_optimizer,
    module_num_params,
    psnr,
    train_loop,
)

logger = logging.getLogger(__name__)

STAGE = "vae"


@dataclass
class VAETrainConfig(StageConfig):
    """Config of the VAE stage (see :class:`~vist3a.nano.training.StageConfig` for the shared fields).

    Attributes:
        family: the VAE family (a :mod:`vist3a.video.vae_adapters` name or alias: ``wan2.1``, ``hunyuanvideo``,
            ``cogvideox``, ``svd``, ...); its diffusers class is built from ``model``. Only ``wan2.1`` ships.
        model: the class's kwargs; None = the family's nano config (:data:`~vist3a.nano.configs.NANO_VAE_CONFIGS`:
            :func:`~vist3a.nano.configs.nano_vae_config` for Wan, :func:`~vist3a.nano.configs.nano_hunyuan_vae_config`
            for HunyuanVideo; other families need it given).
        kl_weight: weight of the KL term (small: the latent must keep detail; normalisation fixes its scale).
        mse_weight: weight of the MSE term added to L1.
        stats_clips: training clips whose latents give the normalisation (Wan's ``latents_mean`` / ``latents_std``,
            the others' ``scaling_factor``).
        fp16_psnr_tolerance: dB of held-out PSNR that fp16 storage may cost under ``save_dtype="auto"``.
        decoder_only: train only the decoder of the ``init`` VAE (encoder and normalisation kept): the
            latent space, and so the generator and stitched decoder trained on it, stays exactly as it was.
            The way to sharpen decoded videos without retraining everything downstream.
    """

    steps: int = 4000
    batch_size: int = 8
    lr: float = 4e-4
    warmup_steps: int = 200
    family: str = "wan2.1"
    model: dict[str, Any] | None = None
    kl_weight: float = 1e-6
    mse_weight: float = 1.0
    stats_clips: int = 256
    fp16_psnr_tolerance: float = 0.05
    decoder_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        from vist3a.video.vae_adapters import VAE_ADAPTERS, family_name

        family = family_name(self.family)
        if family is None:
            raise ValueError(f"`family` must be a video-VAE family {sorted(VAE_ADAPTERS)}, got {self.family!r}")
        self.family = family
        if self.model is None:
            if family not in NANO_VAE_CONFIGS:
                raise ValueError(f"`family` {family!r} has no nano config ({sorted(NANO_VAE_CONFIGS)} have one): "
                                 f"give its {VAE_ADAPTERS[family].diffusers_class} kwargs as `model`")
            self.model = NANO_VAE_CONFIGS[family]()
        if self.decoder_only and self.init is None:
            raise ValueError("`decoder_only` needs `init` (the VAE whose encoder and latent space to keep), e.g. "
                             "--set init=installed")


def to_vae_input(frames: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, T, 3, H, W]`` in [0, 1] -> the Wan VAE's ``[B, 3, T, H, W]`` in [-1, 1]."""
    return frames.permute(0, 2, 1, 3, 4) * 2.0 - 1.0


def from_vae_output(video: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_vae_input` (values clamped to [0, 1])."""
    return ((video.permute(0, 2, 1, 3, 4) + 1.0) / 2.0).clamp(0.0, 1.0)


def kl_to_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """``KL(N(mean, exp(logvar)) || N(0, 1))`` averaged over all elements."""
    return 0.5 * (mean.square() + logvar.exp() - 1.0 - logvar).mean()


def build_vae(cfg: VAETrainConfig) -> Any:
    """A fresh VAE of ``cfg.family`` (its diffusers class) from ``cfg.model``; ``ValueError`` if the config builds
    another family (e.g. a Wan 2.2 config under ``wan2.1``) or a clip geometry the VAE cannot take."""
    import diffusers

    from vist3a.video.vae_adapters import VAE_ADAPTERS, vae_adapter

    vae = getattr(diffusers, VAE_ADAPTERS[cfg.family].diffusers_class)(**cfg.model)
    adapter = vae_adapter(vae)
    if adapter.name != cfg.family:
        raise ValueError(f"`model` builds a {adapter.name} VAE, but `family` is {cfg.family!r}")
    adapter.check_num_frames(cfg.num_frames)
    adapter.check_resolution(cfg.size, cfg.size)
    return vae


def vae_loss(vae: Any, frames: torch.Tensor, cfg: VAETrainConfig, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of one batch of frames ``[B, T, 3, H, W]`` in [0, 1] and its terms (any VAE family: through
    its adapter, in the VAE's pixel space ``[-1, 1]``)."""
    from vist3a.video.vae_adapters import vae_adapter

    adapter = vae_adapter(vae)
    x = adapter.pixels(frames)  # [B, 3, T, H, W] in [-1, 1]
    posterior = adapter.posterior(frames)  # tensors [B, C, T_lat, h, w]
    noise = torch.randn(posterior.mean.shape, generator=generator, device=x.device, dtype=posterior.mean.dtype)
    z = posterior.mean + posterior.std * noise
    recon = adapter.decode_pixels(z)
    l1 = (recon.float() - x.float()).abs().mean()
    mse = (recon.float() - x.float()).square().mean()
    kl = kl_to_standard_normal(posterior.mean.float(), posterior.logvar.float())
    loss = l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
    return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def encode_mean(vae: Any, frames: torch.Tensor) -> torch.Tensor:
    """Posterior means (raw latents, float32) ``[B, C, T_lat, h, w]`` of frames ``[B, T, 3, H, W]`` in [0, 1]; any
    video VAE (its adapter's posterior mode)."""
    from vist3a.video.vae_adapters import vae_adapter

    return vae_adapter(vae).encode(frames, sample=False).float()


@torch.no_grad()
def latent_channel_stats(vae: Any, cache: ClipCache, num_clips: int, batch_size: int
                         ) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior means of the first ``num_clips`` clips (float64 sums)."""
    total = s1 = s2 = None
    count = min(num_clips, len(cache))
    for start in range(0, count, batch_size):
        z = encode_mean(vae, cache.batch(range(start, min(start + batch_size, count))).frames).double()
        flat = z.transpose(0, 1).reshape(z.shape[1], -1)
        s1 = flat.sum(1) if s1 is None else s1 + flat.sum(1)
        s2 = flat.square().sum(1) if s2 is None else s2 + flat.square().sum(1)
        total = flat.shape[1] if total is None else total + flat.shape[1]
    mean = s1 / total
    std = (s2 / total - mean.square()).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


@torch.no_grad()
def evaluate_vae(vae: Any, cache: ClipCache, batch_size: int) -> dict[str, float]:
    """Reconstruction quality on ``cache``: mean PSNR (dB, per clip) and L1 of the posterior-mean round trip."""
    from vist3a.video.vae_adapters import vae_adapter

    vae.eval()
    adapter = vae_adapter(vae)
    psnrs, l1s = [], []
    for start in range(0, len(cache), batch_size):
        frames = cache.batch(range(start, min(start + batch_size, len(cache)))).frames
        recon = adapter.decode(encode_mean(vae, frames))  # [B, T, 3, H, W] in [0, 1]
        psnrs.append(psnr(recon, frames, dims=(1, 2, 3, 4)))
        l1s.append((recon - frames).abs().mean(dim=(1, 2, 3, 4)))
    return {"psnr": float(torch.cat(psnrs).mean()), "l1": float(torch.cat(l1s).mean()), "num_clips": len(cache)}


def train_vae(
    cfg: VAETrainConfig,
    out_dir: str | Path,
    device: str | torch.device | None = None,
    *,
    caches: tuple[ClipCache, ClipCache] | None = None,
) -> Path:
    """Train the nano VAE; returns the run folder (``model/`` holds the VAE in the shipped format:
    ``save_pretrained`` of its diffusers class).

    ``caches``: ``(train, held_out)`` clip caches to use instead of rendering the world (tests).
    """
    from vist3a.video.vae_adapters import vae_adapter

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    with torch.device("meta"):
        build_vae(cfg)  # family and clip geometry checked before rendering (no weights, no random draws)
    train, held = run.clips(caches)
    run.data_ready()

    vae = run.start_from(build_vae(cfg), "vae")
    adapter = vae_adapter(vae)
    if cfg.decoder_only:
        kept_stats = {key: run.init_config[key] for key in adapter.normalization_keys}
        for module in adapter.encoder_modules:
            module.requires_grad_(False)
    vae = vae.to(device).train()
    logger.info("nano VAE (%s): %.2f M parameters", adapter.name, module_num_params(vae) / 1e6)
    optimizer = make_optimizer(vae.parameters(), cfg.lr, cfg.weight_decay)
    batch_gen = torch.Generator().manual_seed(cfg.seed)
    noise_gen = torch.Generator(device=device).manual_seed(cfg.seed + 1)

    def step_fn(step: int) -> tuple[torch.Tensor, dict[str, float]]:
        frames = train.sample(cfg.batch_size, batch_gen).frames.to(device)
        with autocast(device):
            return vae_loss(vae, frames, cfg, noise_gen)

    result = train_loop(step_fn, optimizer, cfg, run.clock, run.log, desc="nano vae")
    run.log.plot("nano VAE")

    vae.eval()
    if cfg.decoder_only:
        normalization = kept_stats
        vae.register_to_config(**normalization)
    else:
        normalization = adapter.fit_normalization(*latent_channel_stats(vae, train, cfg.stats_clips, cfg.batch_size))
    metrics, metrics_fp16 = evaluate_with_fp16(vae, lambda: evaluate_vae(vae, held, cfg.batch_size))
    dtype = run.save(vae, metrics["psnr"], metrics_fp16["psnr"], cfg.fp16_psnr_tolerance, True)
    run.finish({
        "heldout_psnr": metrics["psnr"],
        "heldout_l1": metrics["l1"],
        "heldout_psnr_fp16": metrics_fp16["psnr"],
        "num_eval_clips": metrics["num_clips"],
        **normalization,
    }, result.outcome())
    logger.info("nano VAE (%s): held-out PSNR %.2f dB (fp16 %.2f dB), saved as %s", adapter.name, metrics["psnr"],
                metrics_fp16["psnr"], dtype)
    return run.run_dir
