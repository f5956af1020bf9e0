"""3D reconstruction networks: VGGT, AnySplat and MV-DUSt3R(+), their layers and heads, official-checkpoint loading.

Public API:
    :class:`VGGT`, :class:`AnySplat`, :class:`MVDust3r` (diffusers ``ModelMixin`` / ``ConfigMixin``:
    ``save_pretrained`` / ``from_config``), :func:`vggt_from_pretrained`, :func:`anysplat_from_pretrained`,
    :func:`mvdust3r_from_pretrained` (official Hub repos, files or folders, vist3a
    folders), :func:`config_from_official`, the output dataclasses.
"""

from vist3a.recon.anysplat import AnySplat
from vist3a.recon.convert import config_from_official, load_official_state_dict
from vist3a.recon.hub import anysplat_from_pretrained, random_tiny_model, vggt_from_pretrained
from vist3a.recon.mvdust3r import MVDust3r, MVDust3rOutput
from vist3a.recon.mvdust3r_hub import mvdust3r_from_pretrained, random_tiny_mvdust3r
from vist3a.recon.outputs import AnySplatOutput, CameraPrediction, TrackPrediction, VGGTOutput
from vist3a.recon.vggt import VGGT

__all__ = [
    "VGGT",
    "AnySplat",
    "AnySplatOutput",
    "CameraPrediction",
    "MVDust3r",
    "MVDust3rOutput",
    "TrackPrediction",
    "VGGTOutput",
    "anysplat_from_pretrained",
    "config_from_official",
    "load_official_state_dict",
    "mvdust3r_from_pretrained",
    "random_tiny_model",
    "random_tiny_mvdust3r",
    "vggt_from_pretrained",
]
