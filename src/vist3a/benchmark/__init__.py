"""The paper's benchmarks (``vist3a eval``, docs/evaluation.md): runners that load models and data and apply the
plain metric functions of :mod:`vist3a.evaluation` to them.

- :mod:`~vist3a.benchmark.text3d`: text-to-3DGS quality on a prompt suite (Tables 1, 2, 6): :func:`evaluate_text3d`;
  the suites ship in ``suites/``; the per-scene metric models are in :mod:`~vist3a.benchmark.metric_models`.
- :mod:`~vist3a.benchmark.nvs`: novel-view synthesis, stitched vs original decoder (Table 3): :func:`evaluate_nvs`.
- :mod:`~vist3a.benchmark.geometry`: cameras and pointmaps (Table 5): :func:`evaluate_geometry`.
- :mod:`~vist3a.benchmark.decoders` (frames -> 3D prediction, models from :func:`vist3a.components.load_components`)
  and :mod:`~vist3a.benchmark.eval_data` (posed clips, ``--data KIND[:DIR]``) serve the last two.

Layering: this package sits above :mod:`vist3a.pipeline` and :mod:`vist3a.components` (it generates scenes and
loads models) and never imports :mod:`vist3a.nano`; every model, the nano ones included, comes through the registry.
Modules load on first attribute access.
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "Text3DConfig": "text3d",
    "evaluate_text3d": "text3d",
    "NVSConfig": "nvs",
    "evaluate_nvs": "nvs",
    "GeometryConfig": "geometry",
    "evaluate_geometry": "geometry",
    "load_decoders": "decoders",
    "eval_clips": "eval_data",
    "build_metrics": "metric_models",
}

__all__ = list(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
