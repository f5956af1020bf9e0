"""The flow-matching loss that keeps the aligned generator close to real multi-view video.

On **normalised** latents ``z0`` of VAE-encoded clips: ``sigma ~ U(0, 1)`` per clip, ``eps ~ N(0, I)``,
``z_sigma = (1 - sigma) z0 + sigma eps``; the transformer at timestep ``num_train_timesteps * sigma`` must
predict the velocity ``eps - z0`` (mean squared error). This is Wan's training objective without the flow
shift, as in the release's alignment script.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vist3a.video.sampler import compute_dtype


def flow_matching_loss(
    transformer: torch.nn.Module,
    latents: torch.Tensor,
    prompt_embeds: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    num_train_timesteps: int = 1000,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Scalar MSE between the predicted and the true velocity.

    Args:
        transformer: a ``WanTransformer3DModel`` (or anything with its call signature).
        latents: clean normalised latents ``z0`` ``[B, C, T_lat, h, w]``.
        prompt_embeds: ``[B, L, D]`` caption embeddings.
        generator: draws ``sigma`` and ``eps`` on its device (CPU: identical values on every device).
        num_train_timesteps: the timestep scale (1000 for Wan).
        dtype: the transformer's input dtype (default: its parameter dtype).
    """
    if latents.ndim != 5:
        raise ValueError(f"`latents` must be shaped [B, C, T_lat, h, w], got {tuple(latents.shape)}")
    if prompt_embeds.ndim != 3 or prompt_embeds.shape[0] != latents.shape[0]:
        raise ValueError(
            f"`prompt_embeds` must be [B={latents.shape[0]}, L, D] to match `latents`, got {tuple(prompt_embeds.shape)}"
        )
    batch, device = latents.shape[0], latents.device
    draw_device = generator.device if generator is not None else torch.device("cpu")
    sigma = torch.rand(batch, generator=generator, device=draw_device, dtype=torch.float32).to(device)
    noise = torch.randn(latents.shape, generator=generator, device=draw_device, dtype=torch.float32).to(device)
    z0 = latents.detach().float()
    s = sigma.view(batch, 1, 1, 1, 1)
    noisy = (1.0 - s) * z0 + s * noise
    target = noise - z0
    dtype = dtype or compute_dtype(transformer)
    pred = transformer(
        hidden_states=noisy.to(dtype),
        timestep=sigma * num_train_timesteps,
        encoder_hidden_states=prompt_embeds.to(device=device, dtype=dtype),
        return_dict=False,
    )[0]
    return F.mse_loss(pred.float(), target)
