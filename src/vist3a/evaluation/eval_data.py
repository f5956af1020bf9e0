"""Posed evaluation clips for ``vist3a eval nvs|geometry``, named by ``--data KIND[:DIR]``.

- ``nano``: held-out clips of the nano world (:class:`~vist3a.data.SyntheticClips`, split "heldout": compositions
  never trained on), with exact cameras and z-depth; a pure function of the seed.
- ``dl3dv:DIR``: DL3DV / any nerfstudio-format scenes (``transforms.json``; :class:`~vist3a.data.dl3dv.DL3DVClips`),
  cameras only (NVS, poses). Other posed datasets (RealEstate10K, 7-Scenes, ETH3D, ScanNet) can be converted to
  this layout; their native loaders are not part of vist3a yet.
"""

from __future__ import annotations

from typing import Any

from vist3a.errors import UserInputError

KINDS = ("nano", "dl3dv")
PLANNED = ("re10k", "7scenes", "eth3d", "scannet")


def parse_data(spec: str) -> tuple[str, str | None]:
    """``"dl3dv:/data/x"`` -> ``("dl3dv", "/data/x")``; ``"nano"`` -> ``("nano", None)``."""
    kind, _, folder = spec.partition(":")
    if kind in PLANNED:
        raise UserInputError(f"--data {kind}: no native {kind} loader yet; convert the scenes to the nerfstudio layout "
                             "(transforms.json + images/) and pass --data dl3dv:DIR")
    if kind not in KINDS:
        raise UserInputError(f"--data must be nano or dl3dv:DIR, got {spec!r}")
    if kind == "nano" and folder:
        raise UserInputError("--data nano takes no folder")
    if kind != "nano" and not folder:
        raise UserInputError(f"--data {kind} needs a folder: --data {kind}:DIR")
    return kind, folder or None


def eval_clips(spec: str, num_clips: int, num_frames: int, size: int, seed: int = 0) -> list[Any]:
    """``num_clips`` :class:`~vist3a.data.clip.MultiViewClip` of ``num_frames`` square ``size`` px frames."""
    kind, folder = parse_data(spec)
    if kind == "nano":
        from vist3a.data.synthetic import SyntheticClips

        data = SyntheticClips(num_clips, num_frames=num_frames, size=size, seed=seed, split="heldout",
                              camera_phrase_prob=0.0)
        return [data[i] for i in range(num_clips)]
    from vist3a.data.dl3dv import DL3DVClips

    data = DL3DVClips(folder, num_frames=num_frames, size=size, seed=seed)
    return [data[i] for i in range(min(num_clips, len(data)))]
