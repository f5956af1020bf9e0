"""Stitching cases of the official golden vectors (used by :mod:`vist3a.parity`, never by the product path).

Each ``run_*_case(case_dir)`` reads a case folder (``config.json`` + ``inputs.safetensors``) and returns
``{"outputs": {key: tensor}}`` with the keys of the folder's ``outputs.safetensors``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from vist3a.stitching.ridge import RidgeAccumulator, tokens_to_grid
from vist3a.stitching.spec import StitchingLayer, StitchSpec, parse_spec, upsampled_frames

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- ridge_fit
def _temporal_factor(spec: StitchSpec, latent_thw: tuple[int, int, int], token_frames: int) -> int:
    """The latent-to-video frame factor ``f`` for which the layer outputs ``token_frames`` frames.

    The case files do not store it; the token count ``V`` pins it down: the conv maps
    ``(T_lat − 1)·f + 1`` upsampled frames to ``V`` (4 for Wan, when the conv keeps the frame count).
    """
    t_lat, h, w = latent_thw
    if t_lat == 1:
        return 1  # a single latent frame is never resampled in time
    matches = [
        f
        for f in range(1, 2 * token_frames + 2)
        if spec.output_thw(upsampled_frames(t_lat, f), h, w)[0] == token_frames
    ]
    if len(matches) != 1:
        raise ValueError(
            f"cannot infer the temporal factor: {len(matches)} factors map T_lat={t_lat} latent frames to "
            f"V={token_frames} token frames with {spec}; add 'temporal_factor' to config.json"
        )
    return matches[0]


@torch.no_grad()
def _mse_as_release(layer: StitchingLayer, latents: torch.Tensor, tokens: torch.Tensor) -> float:
    """The MSE loop of the release's ``main()``: per clip, upsample in the latent's stored dtype (fp16),
    conv in float32 (replicate padding), float32 squared-error sum, accumulated as a Python float."""
    total, count = 0.0, 0
    for z, y in zip(latents, tokens, strict=True):
        pred = layer.project(layer.upsample(z.unsqueeze(0)).float())
        target = tokens_to_grid(y.unsqueeze(0), tuple(pred.shape[-2:]))
        total += (pred - target).square().sum().item()
        count += pred.numel()
    return total / count


@torch.no_grad()
def _mse_float64(layer: StitchingLayer, latents: torch.Tensor, tokens: torch.Tensor) -> float:
    """The same MSE with every step in float64 (the fitted float32 weights cast up)."""
    layer64 = StitchingLayer(layer.spec, layer.in_channels, layer.temporal_factor, layer.target_hw).double()
    layer64.load_state_dict(layer.state_dict())
    pred = layer64(latents.double())
    target = tokens_to_grid(tokens.double(), tuple(pred.shape[-2:]))
    return float((pred - target).square().sum()) / pred.numel()


def run_ridge_case(case_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """Reproduce a ``ridge_fit`` folder: for every ``Y.<layer>`` input, the fitted layer and its MSEs.

    The case holds ``Z [N, C_in, T_lat, h, w]`` and ``Y.<layer> [N, V, L, D]`` (fp16) and ``config.json`` with
    ``conv_spec``, ``ridge`` and optionally ``temporal_factor`` (else inferred from the shapes). Like the
    release, every clip is one streamed batch and both passes see the same data.

    Returns:
        ``{"outputs": {"<layer>.weight", "<layer>.bias" (float32), "<layer>.mse",
        "<layer>.mse_float64_eval" (float64 scalars)}}``.
    """
    from safetensors.torch import load_file

    case_dir = Path(case_dir)
    config = json.loads((case_dir / "config.json").read_text())
    inputs = load_file(str(case_dir / "inputs.safetensors"))
    latents = inputs["Z"]
    layers = sorted(key.removeprefix("Y.") for key in inputs if key.startswith("Y."))
    if not layers:
        raise ValueError(f"{case_dir}/inputs.safetensors has no 'Y.<layer>' tensors")
    tokens = {name: inputs[f"Y.{name}"] for name in layers}
    spec = parse_spec(config["conv_spec"])
    factor = config.get("temporal_factor") or _temporal_factor(
        spec, tuple(latents.shape[2:]), tokens[layers[0]].shape[1]
    )

    acc = RidgeAccumulator(spec, in_channels=latents.shape[1], ridge=config["ridge"], temporal_factor=factor)
    for i in range(latents.shape[0]):
        acc.update(latents[i : i + 1], {name: y[i : i + 1] for name, y in tokens.items()})
    for i in range(latents.shape[0]):
        acc.update_bias(latents[i : i + 1], {name: y[i : i + 1] for name, y in tokens.items()})

    outputs: dict[str, torch.Tensor] = {}
    for name in layers:
        layer = acc.build_layer(name, dtype=torch.float32)
        outputs[f"{name}.weight"] = layer.weight.detach().clone()
        outputs[f"{name}.bias"] = layer.bias.detach().clone()
        mse = _mse_as_release(layer, latents, tokens[name])
        outputs[f"{name}.mse"] = torch.tensor(mse, dtype=torch.float64)
        outputs[f"{name}.mse_float64_eval"] = torch.tensor(
            _mse_float64(layer, latents, tokens[name]), dtype=torch.float64
        )
        logger.info("ridge case %s: %s mse %.6g", case_dir.name, name, mse)
    return {"outputs": outputs}


# ---------------------------------------------------------------------------- stitched forward
def run_stitched_case(case_dir: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The ``anysplat_stitched_tiny`` case (``StitchVAE3D.forward_with_latent``).

    Implemented in :mod:`vist3a.stitching.parity_stitched` (by the stitched-decoder owner); imported lazily
    so that the ridge case does not pull in the reconstruction models.
    """
    from vist3a.stitching.parity_stitched import run_stitched_case as run

    return run(case_dir)
