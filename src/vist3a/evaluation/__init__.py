"""Evaluation of generated scenes: metrics and benchmark runners.

- :mod:`~vist3a.evaluation.metrics`: CLIP-R-precision (:func:`clip_r_precision`, :func:`prompt_scores`,
  :func:`top1_hit`), 3D-consistency PSNR (:func:`consistency_psnr`), image :func:`psnr` / :func:`ssim`; plain
  functions of tensors and scorers.
- :mod:`~vist3a.evaluation.prompts`: held-out nano compositions and their one-attribute R-precision candidates.
- :mod:`~vist3a.evaluation.relations`: left/right accuracy read from pixel colours (:func:`left_right_cases`,
  :func:`judge_left_right`), for relations the nano image-text models cannot judge.
- :mod:`~vist3a.evaluation.views`: which views of a scene are scored, and its renders at its predicted cameras.
- The paper's benchmark metrics: :mod:`~vist3a.evaluation.image_metrics` (PSNR / SSIM / LPIPS),
  :mod:`~vist3a.evaluation.pose_metrics`, :mod:`~vist3a.evaluation.pointmap_metrics` and
  :mod:`~vist3a.evaluation.alignment3d` (Umeyama Sim(3)); per-scene refinement :func:`refine_scene`
  (``vist3a refine``) and the scene-folder reader :mod:`~vist3a.evaluation.scene_folder`.

Layering: everything here is low-level (torch, :mod:`vist3a.world`, :mod:`vist3a.splats`, :mod:`vist3a.data`)
and loads no model, so the nano training stages use the same protocol. The runners that load models sit higher:
``vist3a eval`` is :mod:`vist3a.benchmark`, ``vist3a nano eval`` is :mod:`vist3a.nano.evaluate`. Modules load on
first attribute access, so importing this package stays cheap.
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "clip_r_precision": "metrics",
    "prompt_scores": "metrics",
    "top1_hit": "metrics",
    "consistency_psnr": "metrics",
    "psnr": "metrics",
    "ssim": "metrics",
    "heldout_compositions": "prompts",
    "r_precision_candidates": "prompts",
    "r_precision_prompts": "prompts",
    "changed_attribute": "prompts",
    "left_right_cases": "relations",
    "judge_left_right": "relations",
    "evenly_spaced": "views",
    "render_predicted_views": "views",
    "umeyama": "alignment3d",
    "relative_pose_metrics": "pose_metrics",
    "trajectory_metrics": "pose_metrics",
    "pointmap_metrics": "pointmap_metrics",
    "refine_scene": "refine",
    "refine_gaussians": "refine",
}

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
