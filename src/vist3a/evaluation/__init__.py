"""Evaluation of generated scenes: metrics and benchmark runners.

- :mod:`~vist3a.evaluation.metrics`: CLIP-R-precision (:func:`clip_r_precision`, :func:`prompt_scores`,
  :func:`top1_hit`) and 3D-consistency PSNR (:func:`consistency_psnr`); plain functions of tensors and scorers.
- :mod:`~vist3a.evaluation.prompts`: held-out nano compositions and their one-attribute R-precision candidates.
- :mod:`~vist3a.evaluation.relations`: left/right accuracy read from pixel colours (:func:`left_right_cases`,
  :func:`judge_left_right`), for relations the nano image-text models cannot judge.
- :mod:`~vist3a.evaluation.nano_eval`: ``vist3a nano eval``, the nano pipeline on held-out prompts
  (:func:`evaluate_nano`, :class:`NanoEvalConfig`).
- The paper's benchmarks (``vist3a eval``, docs/evaluation.md): metrics in :mod:`~vist3a.evaluation.image_metrics`,
  :mod:`~vist3a.evaluation.pose_metrics`, :mod:`~vist3a.evaluation.pointmap_metrics` and
  :mod:`~vist3a.evaluation.alignment3d`; runners :func:`evaluate_text3d`, :func:`evaluate_nvs`,
  :func:`evaluate_geometry`; per-scene refinement :func:`refine_scene`.

Layering: ``metrics`` and ``prompts`` are low-level (torch, the nano world), so training stages can use the same
protocol (:mod:`vist3a.nano.train_imagetext`); ``nano_eval`` sits on top of the pipeline. Modules load on first
attribute access, so importing this package stays cheap.
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "clip_r_precision": "metrics",
    "prompt_scores": "metrics",
    "top1_hit": "metrics",
    "consistency_psnr": "metrics",
    "heldout_compositions": "prompts",
    "r_precision_candidates": "prompts",
    "r_precision_prompts": "prompts",
    "changed_attribute": "prompts",
    "left_right_cases": "relations",
    "judge_left_right": "relations",
    "NanoEvalConfig": "nano_eval",
    "evaluate_nano": "nano_eval",
    "umeyama": "alignment3d",
    "relative_pose_metrics": "pose_metrics",
    "trajectory_metrics": "pose_metrics",
    "pointmap_metrics": "pointmap_metrics",
    "Text3DConfig": "text3d",
    "evaluate_text3d": "text3d",
    "NVSConfig": "nvs",
    "evaluate_nvs": "nvs",
    "GeometryConfig": "geometry",
    "evaluate_geometry": "geometry",
    "refine_scene": "refine",
    "refine_gaussians": "refine",
}

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
