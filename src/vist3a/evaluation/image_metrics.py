"""Image metrics of novel-view synthesis (Table 3): PSNR, SSIM and (optional) LPIPS, per image.

PSNR and SSIM are the project's one implementation (:mod:`vist3a.evaluation.metrics`: SSIM with an 11-px Gaussian
window, sigma 1.5, K1 0.01, K2 0.03, windows inside the image, as in Wang et al. 2004 and torchmetrics); LPIPS
(VGG or AlexNet, as NVS papers report it) comes from torchmetrics and needs its network weights, so it is opt-in:
``pip install 'vist3a[eval]'``.
"""

from __future__ import annotations

from typing import Any

import torch

from vist3a.errors import UserInputError
from vist3a.evaluation.metrics import psnr, ssim

EVAL_EXTRA = "pip install 'vist3a[eval]'"


def check_images(pred: torch.Tensor, target: torch.Tensor) -> None:
    if pred.shape != target.shape or pred.ndim != 4 or pred.shape[1] != 3:
        raise ValueError(f"need two [N, 3, H, W] image tensors in [0, 1] of one shape, got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")


def load_lpips(net: str = "vgg", device: str | torch.device = "cpu") -> Any:
    """torchmetrics' LPIPS (``net`` "vgg" or "alex"), or one :class:`UserInputError` naming what is missing."""
    try:
        from torchmetrics.image.lpip import LearnedPerceptualImagePatchSimilarity
    except ImportError:
        raise UserInputError(f"LPIPS needs torchmetrics: {EVAL_EXTRA}") from None
    try:
        metric = LearnedPerceptualImagePatchSimilarity(net_type=net, normalize=True, reduction="none")
    except Exception as exc:  # missing torchvision or weights that cannot be downloaded
        raise UserInputError(f"LPIPS ({net}) could not be loaded ({type(exc).__name__}: {exc}); {EVAL_EXTRA} "
                             "and let it download its weights once, or drop --lpips") from None
    return metric.to(device).eval()


@torch.no_grad()
def image_metrics(pred: torch.Tensor, target: torch.Tensor, lpips: Any = None) -> dict[str, torch.Tensor]:
    """``{"psnr", "ssim"[, "lpips"]}``, each ``[N]``, of renders ``pred`` against ``target`` (``[N, 3, H, W]`` in
    ``[0, 1]``; ``pred`` is clamped). ``lpips``: a metric from :func:`load_lpips` (None skips LPIPS)."""
    check_images(pred, target)
    pred, target = pred.float().clamp(0, 1), target.float()
    out = {"psnr": psnr(pred, target), "ssim": ssim(pred, target)}
    if lpips is not None:
        device = next(iter(lpips.parameters()), torch.empty(0)).device
        values = lpips(pred.to(device), target.to(device))
        lpips.reset()  # a torchmetrics Metric keeps every batch's scores otherwise
        out["lpips"] = values.reshape(-1).float().cpu()
    return out
