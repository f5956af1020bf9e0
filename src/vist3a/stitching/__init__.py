"""Stitching a reconstruction model onto video-VAE latents: layer specs, the stitching layer, the ridge fit."""

from vist3a.stitching.ridge import (
    DEFAULT_TARGET,
    RidgeAccumulator,
    evaluate_mse,
    fit_stitching_layer,
    fit_stitching_layers,
    im2col3d,
)
from vist3a.stitching.spec import (
    StitchingLayer,
    StitchSpec,
    build_stitching_layer,
    output_hw,
    output_shape,
    parse_spec,
    upsample_latent,
    upsampled_frames,
)

__all__ = [
    "DEFAULT_TARGET",
    "RidgeAccumulator",
    "StitchSpec",
    "StitchingLayer",
    "build_stitching_layer",
    "evaluate_mse",
    "fit_stitching_layer",
    "fit_stitching_layers",
    "im2col3d",
    "output_hw",
    "output_shape",
    "parse_spec",
    "upsample_latent",
    "upsampled_frames",
]
