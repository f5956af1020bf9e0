"""Stage ``vae``: train the nano Wan VAE (diffusers ``AutoencoderKLWan`` at a tiny config) on synthetic clips.

Loss per clip: ``L1 + mse_weight * MSE`` between the clip and its reconstruction from a posterior *sample*,
plus ``kl_weight * KL(q(z|x) || N(0, I))`` (mean over latent elements), as a KL-VAE is trained. After
training, the per-channel mean and std of the posterior means over the training clips become the config's
``latents_mean`` / ``latents_std``, so the generator's normalised latents are ~N(0, 1) per channel.
Evaluation: PSNR of reconstructions (posterior mean) of held-out clips.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from vist3a.data.cache import ClipCache
from vist3a.nano.configs import nano_vae_config
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
        model: ``AutoencoderKLWan`` kwargs (default :func:`~vist3a.nano.configs.nano_vae_config`).
        kl_weight: weight of the KL term (small: the latent must keep detail; normalisation fixes its scale).
        mse_weight: weight of the MSE term added to L1.
        stats_clips: training clips whose latents give ``latents_mean`` / ``latents_std``.
        fp16_psnr_tolerance: dB of held-out PSNR that fp16 storage may cost under ``save_dtype="auto"``.
        decoder_only: train only the decoder of the ``init`` VAE (encoder and ``latents_mean/std`` kept): the
            latent space, and so the generator and stitched decoder trained on it, stays exactly as it was.
            The way to sharpen decoded videos without retraining everything downstream.
    """

    steps: int = 4000
    batch_size: int = 8
    lr: float = 4e-4
    warmup_steps: int = 200
    model: dict[str, Any] = field(default_factory=nano_vae_config)
    kl_weight: float = 1e-6
    mse_weight: float = 1.0
    stats_clips: int = 256
    fp16_psnr_tolerance: float = 0.05
    decoder_only: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
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


def vae_loss(vae: Any, frames: torch.Tensor, cfg: VAETrainConfig, generator: torch.Generator | None = None
             ) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of one batch of frames ``[B, T, 3, H, W]`` in [0, 1] and its terms."""
    x = to_vae_input(frames)
    posterior = vae.encode(x).latent_dist
    noise = torch.randn(posterior.mean.shape, generator=generator, device=x.device, dtype=posterior.mean.dtype)
    z = posterior.mean + posterior.std * noise
    recon = vae.decode(z).sample
    l1 = (recon.float() - x.float()).abs().mean()
    mse = (recon.float() - x.float()).square().mean()
    kl = kl_to_standard_normal(posterior.mean.float(), posterior.logvar.float())
    loss = l1 + cfg.mse_weight * mse + cfg.kl_weight * kl
    return loss, {"l1": float(l1.detach()), "mse": float(mse.detach()), "kl": float(kl.detach())}


@torch.no_grad()
def encode_mean(vae: Any, frames: torch.Tensor) -> torch.Tensor:
    """Posterior means (raw latents) ``[B, z_dim, T_lat, h, w]`` of frames ``[B, T, 3, H, W]`` in [0, 1]."""
    return vae.encode(to_vae_input(frames).to(vae.dtype)).latent_dist.mean.float()


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
    vae.eval()
    psnrs, l1s = [], []
    for start in range(0, len(cache), batch_size):
        frames = cache.batch(range(start, min(start + batch_size, len(cache)))).frames
        recon = from_vae_output(vae.decode(encode_mean(vae, frames).to(vae.dtype)).sample.float())
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
    """Train the nano VAE; returns the run folder (``model/`` holds the VAE in the shipped format).

    ``caches``: ``(train, held_out)`` clip caches to use instead of rendering the world (tests).
    """
    from diffusers import AutoencoderKLWan

    run = begin_stage(cfg, out_dir, STAGE, device)
    device = run.device
    train, held = run.clips(caches)
    run.data_ready()

    vae = run.start_from(AutoencoderKLWan(**cfg.model), "vae")
    if cfg.decoder_only:
        kept_stats = (list(run.init_config.latents_mean), list(run.init_config.latents_std))
        for module in (vae.encoder, vae.quant_conv):
            module.requires_grad_(False)
    vae = vae.to(device).train()
    logger.info("nano VAE: %.2f M parameters", module_num_params(vae) / 1e6)
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
        mean, std = kept_stats
    else:
        mean, std = latent_channel_stats(vae, train, cfg.stats_clips, cfg.batch_size)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    metrics, metrics_fp16 = evaluate_with_fp16(vae, lambda: evaluate_vae(vae, held, cfg.batch_size))
    dtype = run.save(vae, metrics["psnr"], metrics_fp16["psnr"], cfg.fp16_psnr_tolerance, True)
    run.finish({
        "heldout_psnr": metrics["psnr"],
        "heldout_l1": metrics["l1"],
        "heldout_psnr_fp16": metrics_fp16["psnr"],
        "num_eval_clips": metrics["num_clips"],
        "latents_mean": mean,
        "latents_std": std,
    }, result.outcome())
    logger.info("nano VAE: held-out PSNR %.2f dB (fp16 %.2f dB), saved as %s", metrics["psnr"], metrics_fp16["psnr"],
                dtype)
    return run.run_dir
