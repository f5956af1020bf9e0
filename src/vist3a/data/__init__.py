"""The multi-view clip interface every training stage consumes, and its loaders.

- :class:`MultiViewClip` / :class:`ClipBatch` / :func:`collate_clips`: frames ``[T, 3, H, W]`` in [0, 1],
  OpenCV ``w2c [T, 4, 4]``, pixel ``K [T, 3, 3]``, z-``depth [T, H, W]``, caption, meta.
- :func:`resize_and_crop`: square centre-crop + resize with consistent intrinsics (VAE input, 3D-model input).
- :func:`check_num_frames`: causal-VAE frame counts (4n+1).
- Datasets: :class:`FolderClips` (videos / image folders, no cameras), :class:`DL3DVClips` (DL3DV-960P,
  nerfstudio poses), :class:`SyntheticClips` (the nano world, rendered on the fly).
- :class:`EqualLengthBatchSampler`: one frame count per batch, drawn from e.g. {9, 13, 17, 21}.

No training code lives here. Modules load on first attribute access (:mod:`vist3a.lazy`): the frame-count check
that the generator uses does not import the datasets (and with them the nano world).
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "WAN_TEMPORAL_COMPRESSION": "clip",
    "ClipBatch": "clip",
    "MultiViewClip": "clip",
    "check_num_frames": "clip",
    "collate_clips": "clip",
    "crop_resize_intrinsics": "clip",
    "resize_and_crop": "clip",
    "valid_depth": "clip",
    "DL3DVClips": "dl3dv",
    "opengl_c2w_to_opencv_w2c": "dl3dv",
    "FolderClips": "folder",
    "EqualLengthBatchSampler": "sampling",
    "derive_rng": "sampling",
    "sample_frame_indices": "sampling",
    "SyntheticClips": "synthetic",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
