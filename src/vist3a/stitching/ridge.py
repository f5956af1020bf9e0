"""Streamed closed-form (ridge) fit of a stitching layer.

The stitching conv is linear in its weights, so the best weights for "latent patches -> block tokens" solve
``(XᵀX + λI) W = XᵀY``, where each row of ``X`` is one im2col patch of the upsampled latent and the matching
row of ``Y`` is the token at that output position. ``XᵀX`` (``d x d`` with ``d = C_in·kT·kH·kW``) and ``XᵀY``
(``d x C_out``) are summed batch by batch in float64, so memory is ``O(d²)`` however much data is streamed;
``X`` exists only for one batch at a time. The bias is the mean residual of the fitted weights, from a second
pass over the same data.

Conventions of the VIST3A release that this module keeps (see ``find_layer_for_stitching.py``):

- the fit builds its patches with **zero** padding, while the layer pads with **replicate** when used;
- the latent is upsampled in the accumulation dtype (float64) before the patches are taken;
- targets are token grids ``Y [N, V, L, D]`` with ``V = T`` frames and ``L = H_out·W_out`` row-major:
  ``Y[n, t, i·W_out + j, d]`` is the target of conv output ``[n, d, t, i, j]``.

Several candidate targets (e.g. the outputs of every DINO block) can share one accumulator: ``XᵀX`` is
computed once per batch, ``XᵀY`` once per target. That is how the layer search fits all candidates in one
pass over the latents.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterable, Mapping

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from vist3a.stitching.spec import (
    RELEASE_LATENT_CHANNELS,
    RELEASE_TEMPORAL_FACTOR,
    StitchingLayer,
    StitchSpec,
    build_stitching_layer,
    parse_spec,
    upsample_latent,
)

logger = logging.getLogger(__name__)

DEFAULT_TARGET = "default"
"""Name under which a single (unnamed) target tensor is accumulated."""

Targets = torch.Tensor | Mapping[str, torch.Tensor]
BatchesFactory = Callable[[], Iterable[tuple[torch.Tensor, Targets]]]


def im2col3d(frames: torch.Tensor, spec: str | StitchSpec) -> torch.Tensor:
    """Zero-padded im2col: ``[N, C, T, H, W] -> [N·T_out·H_out·W_out, C·kT·kH·kW]``.

    Rows are ordered ``(n, t, i, j)``; columns ``(c, kt, kh, kw)``, i.e. the flattening of a Conv3d weight
    ``[C_out, C, kT, kH, kW]`` over its last four axes, so ``im2col3d(x) @ weight.flatten(1).T`` is the
    zero-padded convolution.
    """
    spec = parse_spec(spec)
    if frames.ndim != 5:
        raise ValueError(f"frames must have shape [N, C, T, H, W], got {list(frames.shape)}")
    n, c = frames.shape[:2]
    t_out, h_out, w_out = spec.output_thw(*frames.shape[2:])
    pt, ph, pw = spec.padding
    x = F.pad(frames, (pw, pw, ph, ph, pt, pt))
    for axis, (k, s, d) in enumerate(zip(spec.kernel, spec.stride, spec.dilation, strict=True)):
        x = x.unfold(2 + axis, d * (k - 1) + 1, s)  # appends the window axis
    x = x[..., :: spec.dilation[0], :: spec.dilation[1], :: spec.dilation[2]]
    # x: [N, C, T_out, H_out, W_out, kT, kH, kW]
    x = x.permute(0, 2, 3, 4, 1, 5, 6, 7)
    return x.reshape(n * t_out * h_out * w_out, spec.patch_size(c))


def tokens_to_rows(tokens: torch.Tensor, grid_thw: tuple[int, int, int]) -> torch.Tensor:
    """Token grid ``[N, V, L, D]`` -> rows ``[N·V·L, D]`` matching :func:`im2col3d` (checks ``V, L``)."""
    t_out, h_out, w_out = grid_thw
    if tokens.ndim != 4 or tokens.shape[1] != t_out or tokens.shape[2] != h_out * w_out:
        raise ValueError(
            f"targets must have shape [N, V={t_out}, L={h_out}*{w_out}={h_out * w_out}, D] to match the "
            f"conv output grid (T, H, W)={grid_thw}, got {list(tokens.shape)}"
        )
    return tokens.reshape(-1, tokens.shape[-1])


def tokens_to_grid(tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Token grid ``[N, V, H·W, D]`` -> conv layout ``[N, D, V, H, W]``."""
    n, v, length, d = tokens.shape
    if length != hw[0] * hw[1]:
        raise ValueError(f"tokens have L={length} per frame, which is not H*W for the grid {hw}")
    return tokens.reshape(n, v, hw[0], hw[1], d).permute(0, 4, 1, 2, 3)


class RidgeAccumulator:
    """Streamed ridge regression of one or more token targets on latent patches.

    Usage (two passes over the same data)::

        acc = RidgeAccumulator("conv3d_k5x3x3_o1024_s1x2x2_p2x1x1", in_channels=16)
        for z, y in batches():          # z [N, 16, T_lat, h, w], y [N, T, L, D] or {name: y}
            acc.update(z, y)
        for z, y in batches():
            acc.update_bias(z, y)
        weight, bias = acc.solve()      # float64, [D, 16, kT, kH, kW], [D]

    Args:
        spec: the stitching-layer spec (string or :class:`StitchSpec`).
        in_channels: latent channels ``C_in``.
        out_channels: token width; defaults to ``spec.out_channels`` and must equal it when given.
        ridge: λ added to the diagonal of the *summed* ``XᵀX`` (not normalised by the row count).
        temporal_factor: latent-to-video frame ratio of the upsampling (``T = (T_lat - 1)·factor + 1``).
        target_hw: spatial size of the upsampled latent; ``None`` keeps the latent size.
        device: where the accumulators live; default: the device of the first batch.
        dtype: accumulation dtype (float64; float32 only for experiments).
    """

    def __init__(
        self,
        spec: str | StitchSpec,
        in_channels: int = RELEASE_LATENT_CHANNELS,
        out_channels: int | None = None,
        ridge: float = 1e-4,
        temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
        target_hw: tuple[int, int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float64,
    ) -> None:
        self.spec = parse_spec(spec)
        if in_channels < 1:
            raise ValueError(f"in_channels must be a positive integer, got {in_channels}")
        if out_channels is not None and out_channels != self.spec.out_channels:
            raise ValueError(
                f"out_channels={out_channels} contradicts the spec {self.spec} (o{self.spec.out_channels})"
            )
        if not ridge >= 0.0:
            raise ValueError(f"ridge must be >= 0, got {ridge}")
        self.in_channels = in_channels
        self.out_channels = self.spec.out_channels
        self.ridge = float(ridge)
        self.temporal_factor = temporal_factor
        self.target_hw = target_hw
        self.device = None if device is None else torch.device(device)
        self.dtype = dtype
        self.num_features = self.spec.patch_size(in_channels)
        self._xtx: torch.Tensor | None = None
        self._xty: dict[str, torch.Tensor] = {}
        self._rows = 0
        self._weights: dict[str, torch.Tensor] | None = None  # [d, C_out] per target, after the first solve
        self._residual_sum: dict[str, torch.Tensor] = {}
        self._bias_rows = 0

    # ------------------------------------------------------------------ inputs
    @property
    def targets(self) -> list[str]:
        """Names of the targets seen so far (``[DEFAULT_TARGET]`` for a single unnamed tensor)."""
        return list(self._xty)

    @property
    def num_rows(self) -> int:
        """Rows (output positions) accumulated by :meth:`update`."""
        return self._rows

    def patches(self, latent: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int, int]]:
        """Upsample a latent batch in the accumulation dtype and im2col it: ``(X [rows, d], (T, H, W))``."""
        if latent.ndim != 5 or latent.shape[1] != self.in_channels:
            raise ValueError(
                f"latent batch must have shape [N, {self.in_channels}, T_lat, h, w], got {list(latent.shape)}"
            )
        if self.device is None:
            self.device = latent.device
        frames = upsample_latent(latent.to(self.device, self.dtype), self.temporal_factor, self.target_hw)
        grid = self.spec.output_thw(*frames.shape[2:])
        return im2col3d(frames, self.spec), grid

    def _target_rows(self, targets: Targets, grid: tuple[int, int, int], batch: int) -> dict[str, torch.Tensor]:
        named = {DEFAULT_TARGET: targets} if isinstance(targets, torch.Tensor) else dict(targets)
        if not named:
            raise ValueError("targets must be a tensor or a non-empty mapping name -> tensor")
        if self._xty and set(named) != set(self._xty):
            raise ValueError(
                f"targets must be the same in every batch: expected {sorted(self._xty)}, got {sorted(named)}"
            )
        rows = {}
        for name, y in named.items():
            if y.shape[0] != batch or y.ndim != 4 or y.shape[-1] != self.out_channels:
                raise ValueError(
                    f"target {name!r} must have shape [N={batch}, V, L, D={self.out_channels}], got {list(y.shape)}"
                )
            rows[name] = tokens_to_rows(y, grid).to(self.device, self.dtype)
        return rows

    # ------------------------------------------------------------------ pass 1
    @torch.no_grad()
    def update(self, latent: torch.Tensor, targets: Targets) -> None:
        """Pass 1: add ``XᵀX`` and ``XᵀY`` of one batch.

        ``latent [N, C_in, T_lat, h, w]``; ``targets`` ``[N, T, L, D]`` or a mapping name -> such tensor.
        """
        if self._weights is not None:
            raise RuntimeError("update() after the weights were solved; start a new RidgeAccumulator")
        x, grid = self.patches(latent)
        rows = self._target_rows(targets, grid, latent.shape[0])
        if self._xtx is None:
            self._xtx = torch.zeros(self.num_features, self.num_features, device=self.device, dtype=self.dtype)
        self._xtx += x.T @ x
        for name, y in rows.items():
            if name not in self._xty:
                self._xty[name] = torch.zeros(
                    self.num_features, self.out_channels, device=self.device, dtype=self.dtype
                )
            self._xty[name] += x.T @ y
        self._rows += x.shape[0]

    @torch.no_grad()
    def solve_weights(self) -> dict[str, torch.Tensor]:
        """Solve ``(XᵀX + λI) W = XᵀY`` for every target: ``{name: W [d, C_out]}`` (cached)."""
        if self._weights is not None:
            return self._weights
        if self._xtx is None:
            raise RuntimeError("solve before any update(): feed at least one batch first")
        system = self._xtx.clone()
        system.diagonal().add_(self.ridge)
        rhs = torch.cat([self._xty[name] for name in self._xty], dim=1)
        chol, info = torch.linalg.cholesky_ex(system)
        if int(info) == 0:
            solution = torch.cholesky_solve(rhs, chol)
        else:
            logger.warning(
                "XᵀX + λI (λ=%g) is not numerically positive definite (rows=%d, d=%d); using the pseudo-inverse",
                self.ridge,
                self._rows,
                self.num_features,
            )
            solution = torch.linalg.pinv(system, hermitian=True) @ rhs
        self._weights = dict(zip(self._xty, solution.split(self.out_channels, dim=1), strict=True))
        logger.debug("solved ridge system: d=%d, rows=%d, targets=%s", self.num_features, self._rows, self.targets)
        return self._weights

    # ------------------------------------------------------------------ pass 2
    @torch.no_grad()
    def update_bias(self, latent: torch.Tensor, targets: Targets) -> None:
        """Pass 2: add the residuals ``Y − X W`` of one batch (the same data as pass 1) for the bias."""
        weights = self.solve_weights()
        x, grid = self.patches(latent)
        rows = self._target_rows(targets, grid, latent.shape[0])
        for name, y in rows.items():
            residual = (y - x @ weights[name]).sum(0)
            self._residual_sum[name] = self._residual_sum.get(name, 0) + residual
        self._bias_rows += x.shape[0]

    def solve(self, target: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(weight [C_out, C_in, kT, kH, kW], bias [C_out])`` in the accumulation dtype.

        ``target`` may be omitted when only one target was accumulated. Needs both passes.
        """
        weights = self.solve_weights()
        if target is None:
            if len(weights) != 1:
                raise ValueError(f"target must name one of {sorted(weights)} when several were accumulated")
            target = next(iter(weights))
        if target not in weights:
            raise ValueError(f"unknown target {target!r}; accumulated: {sorted(weights)}")
        if target not in self._residual_sum:
            raise RuntimeError("the bias needs the second pass: call update_bias() on the same batches first")
        if self._bias_rows != self._rows:
            raise ValueError(
                f"the bias pass saw {self._bias_rows} rows but the fit saw {self._rows}: both passes must use the "
                "same data"
            )
        kt, kh, kw = self.spec.kernel
        weight = weights[target].T.reshape(self.out_channels, self.in_channels, kt, kh, kw)
        bias = self._residual_sum[target] / self._rows
        return weight, bias

    def solve_all(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """:meth:`solve` for every target."""
        return {name: self.solve(name) for name in self.targets}

    def build_layer(self, target: str | None = None, dtype: torch.dtype = torch.float32) -> StitchingLayer:
        """A :class:`StitchingLayer` holding the fitted weights (cast to ``dtype``, on the accumulator device)."""
        weight, bias = self.solve(target)
        layer = build_stitching_layer(self.spec, self.in_channels, self.temporal_factor, self.target_hw)
        layer = layer.to(device=weight.device, dtype=dtype)
        with torch.no_grad():
            layer.weight.copy_(weight.to(dtype))
            layer.bias.copy_(bias.to(dtype))
        return layer


# ---------------------------------------------------------------------------- convenience
def fit_stitching_layers(
    spec: str | StitchSpec,
    batches_factory: BatchesFactory,
    in_channels: int = RELEASE_LATENT_CHANNELS,
    ridge: float = 1e-4,
    temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
    target_hw: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> dict[str, StitchingLayer]:
    """Fit one stitching layer per named target in two streamed passes.

    Args:
        batches_factory: called twice (once per pass); each call must return an iterable over the *same*
            ``(latent [N, C_in, T_lat, h, w], {name: tokens [N, T, L, D]})`` batches (a bare tensor is named
            :data:`DEFAULT_TARGET`).

    Returns:
        ``{name: StitchingLayer}`` (float32, on the accumulator device).
    """
    acc = RidgeAccumulator(
        spec, in_channels, ridge=ridge, temporal_factor=temporal_factor, target_hw=target_hw, device=device
    )
    for latent, targets in tqdm(batches_factory(), desc="ridge fit: XᵀX, XᵀY", unit="batch", disable=not progress):
        acc.update(latent, targets)
    for latent, targets in tqdm(batches_factory(), desc="ridge fit: bias", unit="batch", disable=not progress):
        acc.update_bias(latent, targets)
    logger.info("fitted %d stitching layer(s) %s on %d output positions", len(acc.targets), acc.spec, acc.num_rows)
    return {name: acc.build_layer(name) for name in acc.targets}


def fit_stitching_layer(
    spec: str | StitchSpec,
    batches_factory: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]],
    in_channels: int = RELEASE_LATENT_CHANNELS,
    ridge: float = 1e-4,
    temporal_factor: int = RELEASE_TEMPORAL_FACTOR,
    target_hw: tuple[int, int] | None = None,
    device: torch.device | str | None = None,
    progress: bool = True,
) -> StitchingLayer:
    """Fit a single stitching layer; ``batches_factory()`` yields ``(latent, tokens [N, T, L, D])`` pairs."""
    layers = fit_stitching_layers(
        spec, batches_factory, in_channels, ridge, temporal_factor, target_hw, device=device, progress=progress
    )
    if len(layers) != 1:
        raise ValueError(f"fit_stitching_layer expects one unnamed target per batch, got targets {sorted(layers)}")
    return next(iter(layers.values()))


@torch.no_grad()
def evaluate_mse(
    layer: StitchingLayer,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    dtype: torch.dtype | None = None,
    progress: bool = False,
) -> float:
    """``Σ (layer(Z) − Y)² / numel`` over all batches, with the layer's own (replicate) padding.

    ``batches`` yields ``(latent [N, C_in, T_lat, h, w], tokens [N, T, L, D])``. The computation runs in
    ``dtype`` (default: the layer's dtype; the latent is cast *before* upsampling); sums are float64.
    On CUDA, float32 convolutions may run in TF32 (``torch.backends.cudnn.allow_tf32``, on by default),
    which moves the MSE by ~1e-4 relative; pass ``dtype=torch.float64`` for exact values.
    """
    if dtype is not None and dtype != layer.weight.dtype:
        layer = copy.deepcopy(layer).to(dtype)
    dtype = layer.weight.dtype
    device = layer.weight.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for latent, tokens in tqdm(batches, desc="stitching MSE", unit="batch", disable=not progress):
        pred = layer(latent.to(device, dtype))  # [N, D, T, H, W]
        target = tokens_to_grid(tokens.to(device, dtype), tuple(pred.shape[-2:]))
        if target.shape != pred.shape:
            raise ValueError(f"tokens give the grid {list(target.shape)} but the layer predicts {list(pred.shape)}")
        total += (pred - target).double().square().sum()
        count += pred.numel()
    if count == 0:
        raise ValueError("batches is empty: nothing to evaluate")
    return float(total) / count
