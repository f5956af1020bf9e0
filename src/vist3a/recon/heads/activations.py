"""Output activations of the VGGT heads (names as in the official configs).

Dense heads emit ``C + 1`` channels: ``C`` value channels then one confidence channel.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def inverse_log(y: torch.Tensor) -> torch.Tensor:
    """``sign(y) * (exp(|y|) - 1)``: the inverse of the symmetric log used for point maps."""
    return torch.sign(y) * torch.expm1(y.abs())


def _value_activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "exp":
        return torch.exp(x)
    if kind == "inv_log":
        return inverse_log(x)
    if kind == "norm_exp":
        norm = x.norm(dim=-1, keepdim=True).clamp(min=1e-8)
        return x / norm * torch.expm1(norm)
    if kind == "relu":
        return F.relu(x)
    if kind == "sigmoid":
        return torch.sigmoid(x)
    if kind == "linear":
        return x
    raise ValueError(f"unknown dense-head activation {kind!r}; known: exp, inv_log, norm_exp, relu, sigmoid, linear")


def _conf_activation(x: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "expp1":
        return 1.0 + x.exp()
    if kind == "expp0":
        return x.exp()
    if kind == "sigmoid":
        return torch.sigmoid(x)
    raise ValueError(f"unknown confidence activation {kind!r}; known: expp1, expp0, sigmoid")


def activate_dense(out: torch.Tensor, activation: str, conf_activation: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw ``[N, C + 1, H, W]`` -> (values ``[N, H, W, C]``, confidence ``[N, H, W]``)."""
    fmap = out.permute(0, 2, 3, 1)
    return _value_activation(fmap[..., :-1], activation), _conf_activation(fmap[..., -1], conf_activation)


def activate_pose(pose_enc: torch.Tensor, fov_activation: str = "relu") -> torch.Tensor:
    """Raw ``[..., 9]`` pose encoding -> activated: translation and quaternion linear, FoVs ``fov_activation``.

    Layout: translation (3), quaternion xyzw (4), FoV (2): the FoV block is the last two entries.
    """
    head, fov = pose_enc[..., :-2], pose_enc[..., -2:]
    if fov_activation == "relu":
        fov = F.relu(fov)
    elif fov_activation == "exp":
        fov = torch.exp(fov)
    elif fov_activation != "linear":
        raise ValueError(f"unknown FoV activation {fov_activation!r}; known: relu, exp, linear")
    return torch.cat((head, fov), -1)
