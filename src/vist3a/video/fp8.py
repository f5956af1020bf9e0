"""fp8 matmuls for the Wan transformer's blocks, through torchao.

Why: after batching CFG and compiling, a denoising step is compute-bound in bf16 (the 1.3B's compiled step runs at
~60 % of an H200's bf16 peak), so the only way to make it much faster is cheaper arithmetic. Hopper and Ada GPUs
run e4m3 matmuls at twice the bf16 rate; torchao's dynamic float8 quantisation (per-row scales for activations
and weights) swaps each linear layer's weight for an fp8 tensor and quantises activations on the fly, which
``torch.compile`` fuses into the neighbouring kernels. The result is close to, not equal to, the bf16 output:
opt-in (``--fp8``), never the default.

Only the linear layers inside the transformer blocks (self- and cross-attention projections, feed-forward)
are converted: they hold nearly all the FLOPs. Patch embedding, timestep / text embedders and the output
projection stay in the model's dtype.
"""

from __future__ import annotations

import logging

import torch

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

#: float8 matmuls need compute capability 8.9 (Ada) or 9.0 (Hopper) and newer.
MIN_CAPABILITY = (8, 9)
INSTALL_HINT = "install torchao (pip install 'vist3a[fp8]')"


def fp8_layer_names(transformer: torch.nn.Module) -> list[str]:
    """Qualified names of the linear layers :func:`quantize_fp8` converts: every ``nn.Linear`` under
    ``blocks.`` whose sizes are multiples of 16 (what fp8 matmul kernels accept)."""
    return [
        name for name, module in transformer.named_modules()
        if name.startswith("blocks.") and isinstance(module, torch.nn.Linear)
        and module.in_features % 16 == 0 and module.out_features % 16 == 0
    ]


def check_fp8_supported(device: torch.device) -> None:
    """Raise :class:`UserInputError` naming what is missing for fp8 on ``device`` (GPU, its generation, torchao)."""
    if device.type != "cuda":
        raise UserInputError(f"--fp8 needs a CUDA GPU of compute capability >= 8.9 (Ada, Hopper or newer); the "
                             f"pipeline runs on {device.type}: drop --fp8")
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        raise UserInputError(f"--fp8 needs compute capability >= 8.9 (Ada, Hopper or newer); "
                             f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}: drop --fp8")
    try:
        import torchao  # noqa: F401
    except ImportError as err:
        raise UserInputError(f"--fp8 needs torchao: {INSTALL_HINT}") from err


def quantize_fp8(transformer: torch.nn.Module) -> int:
    """Convert the block linears of ``transformer`` (on a supported GPU, bf16, LoRA merged) to dynamic fp8
    with per-row scales, in place; returns how many layers were converted. Compile afterwards."""
    from vist3a.video.lora import has_lora

    parameter = next(transformer.parameters())
    check_fp8_supported(parameter.device)
    if has_lora(transformer):
        raise UserInputError("--fp8 needs the LoRA merged into the transformer first (load it with merging on)")
    if parameter.dtype != torch.bfloat16:
        raise UserInputError(f"--fp8 converts a bfloat16 transformer, this one is {parameter.dtype}: use "
                             "--dtype bfloat16")
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    names = set(fp8_layer_names(transformer))
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=lambda module, name: name in names)
    logger.info("fp8: %d linear layers of the transformer blocks now run e4m3 matmuls", len(names))
    return len(names)
