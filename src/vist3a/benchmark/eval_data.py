"""Posed evaluation clips for ``vist3a eval nvs|geometry``, named by ``--data KIND[:DIR]``.

- ``nano``: held-out clips of the nano world (:class:`~vist3a.data.SyntheticClips`, split "heldout": compositions
  never trained on), with exact cameras and z-depth; a pure function of the seed.
- ``dl3dv:DIR``: DL3DV / any nerfstudio-format scenes (``transforms.json``; :class:`~vist3a.data.dl3dv.DL3DVClips`),
  cameras only (NVS, poses).
- ``re10k:DIR``: RealEstate10K in the pixelSplat / MVSplat chunk layout (:func:`re10k_clips`), cameras only.

7-Scenes, ETH3D and ScanNet have no native loader yet: convert them to the nerfstudio layout.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError

KINDS = ("nano", "dl3dv", "re10k")
PLANNED = ("7scenes", "eth3d", "scannet")


def parse_data(spec: str) -> tuple[str, str | None]:
    """``"dl3dv:/data/x"`` -> ``("dl3dv", "/data/x")``; ``"nano"`` -> ``("nano", None)``."""
    kind, _, folder = spec.partition(":")
    if kind in PLANNED:
        raise UserInputError(f"--data {kind}: no native {kind} loader yet; convert the scenes to the nerfstudio layout "
                             "(transforms.json + images/) and pass --data dl3dv:DIR")
    if kind not in KINDS:
        raise UserInputError(f"--data must be nano, dl3dv:DIR or re10k:DIR, got {spec!r}")
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
    if kind == "re10k":
        return re10k_clips(Path(folder), num_clips, num_frames, size)
    from vist3a.data.dl3dv import DL3DVClips

    data = DL3DVClips(folder, num_frames=num_frames, size=size, seed=seed)
    return [data[i] for i in range(min(num_clips, len(data)))]


def re10k_cameras(rows: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """pixelSplat's RealEstate10K camera rows ``[N, 18]`` -> ``(w2c [N, 4, 4], K [N, 3, 3])`` in vist3a's
    conventions. A row is ``fx, fy, cx, cy`` normalised by the image size (pixel edges: ``cx = 0.5`` is the
    centre), two unused values, then the OpenCV world-to-camera ``[3, 4]`` row by row."""
    rows = rows.double()
    w2c = torch.eye(4, dtype=torch.float64).repeat(rows.shape[0], 1, 1)
    w2c[:, :3] = rows[:, 6:18].reshape(-1, 3, 4)
    K = torch.zeros(rows.shape[0], 3, 3, dtype=torch.float64)
    K[:, 0, 0], K[:, 1, 1] = rows[:, 0] * width, rows[:, 1] * height
    K[:, 0, 2], K[:, 1, 2] = rows[:, 2] * width - 0.5, rows[:, 3] * height - 0.5  # to integer pixel centres
    K[:, 2, 2] = 1.0
    return w2c.float(), K.float()


def re10k_clips(root: Path, num_clips: int, num_frames: int, size: int) -> list[Any]:
    """Clips of RealEstate10K scenes stored as pixelSplat chunks.

    ``root`` holds ``*.torch`` chunks (each a list of scenes: ``key``, ``cameras [N, 18]``, ``images``: JPEG bytes
    as uint8 tensors) and optionally an evaluation index ``evaluation_index*.json`` (``key -> {"context": [a,
    b], "target": [...]}`` or null). With an index, the listed scenes are used in its order and ``num_frames``
    frames are taken evenly over ``a .. b`` (the context span of the benchmark); without, the first scenes of the
    chunks, evenly over the whole sequence. Frames are centre-cropped and resized to ``size``.
    """
    import imageio.v3 as iio
    import numpy as np

    from vist3a.data.clip import MultiViewClip, resize_and_crop
    from vist3a.evaluation.views import evenly_spaced

    chunks = sorted(root.glob("*.torch"))
    if not chunks:
        raise UserInputError(f"--data re10k:{root}: no *.torch chunks there (the pixelSplat RealEstate10K layout)")
    index_files = sorted(root.glob("evaluation_index*.json"))
    spans = json.loads(index_files[0].read_text()) if index_files else None
    clips = []
    for chunk in chunks:
        for scene in torch.load(chunk, map_location="cpu", weights_only=False):
            key = scene["key"]
            total = len(scene["images"])
            if spans is not None:
                span = spans.get(key)
                if not span:
                    continue
                start, stop = min(span["context"]), max(span["context"])
            else:
                start, stop = 0, total - 1
            if stop - start + 1 < num_frames:
                continue
            picks = [start + i for i in evenly_spaced(stop - start + 1, num_frames)]
            images = [iio.imread(np.asarray(scene["images"][i], dtype=np.uint8).tobytes()) for i in picks]
            frames = torch.from_numpy(np.stack(images)[..., :3]).permute(0, 3, 1, 2).float() / 255.0
            w2c, K = re10k_cameras(scene["cameras"][picks], frames.shape[-2], frames.shape[-1])
            clip = MultiViewClip(frames=frames, w2c=w2c, K=K, meta={"source": "re10k", "key": key, "frames": picks})
            clips.append(resize_and_crop(clip, size))
            if len(clips) == num_clips:
                return clips
    if not clips:
        raise UserInputError(f"--data re10k:{root}: no scene with {num_frames} frames in its span")
    return clips
