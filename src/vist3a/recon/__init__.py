"""3D reconstruction networks: VGGT, AnySplat and MV-DUSt3R(+), their layers and heads, official-checkpoint loading.

Public API:
    :class:`VGGT`, :class:`AnySplat`, :class:`MVDust3r` (diffusers ``ModelMixin`` / ``ConfigMixin``:
    ``save_pretrained`` / ``from_config``), :func:`vggt_from_pretrained`, :func:`anysplat_from_pretrained`,
    :func:`mvdust3r_from_pretrained` (official Hub repos, files or folders, vist3a
    folders), :func:`config_from_official`, the output dataclasses.
Modules load on first attribute access (:mod:`vist3a.lazy`), so a command that needs one model (``vist3a
generate`` on the nano preset: AnySplat) does not import the others.
"""

from __future__ import annotations

from vist3a.lazy import lazy_getattr

_LAZY = {
    "AnySplat": "anysplat",
    "config_from_official": "convert",
    "load_official_state_dict": "convert",
    "anysplat_from_pretrained": "hub",
    "random_tiny_model": "hub",
    "vggt_from_pretrained": "hub",
    "MVDust3r": "mvdust3r",
    "MVDust3rOutput": "mvdust3r",
    "mvdust3r_from_pretrained": "mvdust3r_hub",
    "random_tiny_mvdust3r": "mvdust3r_hub",
    "AnySplatOutput": "outputs",
    "CameraPrediction": "outputs",
    "TrackPrediction": "outputs",
    "VGGTOutput": "outputs",
    "VGGT": "vggt",
}

__all__ = sorted(_LAZY)
__getattr__ = lazy_getattr(__name__, _LAZY)
