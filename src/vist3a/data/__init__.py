"""The multi-view clip interface every training stage consumes, and its loaders.

- :class:`MultiViewClip` / :class:`ClipBatch` / :func:`collate_clips`: frames ``[T, 3, H, W]`` in [0, 1],
  OpenCV ``w2c [T, 4, 4]``, pixel ``K [T, 3, 3]``, z-``depth [T, H, W]``, caption, meta.
- :func:`resize_and_crop`: square centre-crop + resize with consistent intrinsics (VAE input, 3D-model input).
- :func:`check_num_frames`: causal-VAE frame counts (4n+1).
- Datasets: :class:`FolderClips` (videos / image folders, no cameras), :class:`DL3DVClips` (DL3DV-960P,
  nerfstudio poses), :class:`SyntheticClips` (the nano world, rendered on the fly).
- :class:`EqualLengthBatchSampler`: one frame count per batch, drawn from e.g. {9, 13, 17, 21}.

No training code lives here.
"""

from vist3a.data.clip import (
    WAN_TEMPORAL_COMPRESSION,
    ClipBatch,
    MultiViewClip,
    check_num_frames,
    collate_clips,
    crop_resize_intrinsics,
    resize_and_crop,
    valid_depth,
)
from vist3a.data.dl3dv import DL3DVClips, opengl_c2w_to_opencv_w2c
from vist3a.data.folder import FolderClips
from vist3a.data.sampling import EqualLengthBatchSampler, derive_rng, sample_frame_indices
from vist3a.data.synthetic import SyntheticClips

__all__ = [
    "WAN_TEMPORAL_COMPRESSION",
    "ClipBatch",
    "DL3DVClips",
    "EqualLengthBatchSampler",
    "FolderClips",
    "MultiViewClip",
    "SyntheticClips",
    "check_num_frames",
    "collate_clips",
    "crop_resize_intrinsics",
    "derive_rng",
    "opengl_c2w_to_opencv_w2c",
    "resize_and_crop",
    "sample_frame_indices",
    "valid_depth",
]
