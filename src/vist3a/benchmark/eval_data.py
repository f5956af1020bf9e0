"""Posed evaluation clips for ``vist3a eval nvs|geometry``, named by ``--data KIND[:DIR]``.

- ``nano``: held-out clips of the nano world (:class:`~vist3a.data.SyntheticClips`, split "heldout": compositions
  never trained on), with exact cameras and z-depth; a pure function of the seed.
- ``dl3dv:DIR``: DL3DV / any nerfstudio-format scenes (``transforms.json``; :class:`~vist3a.data.dl3dv.DL3DVClips`),
  cameras only (NVS, poses).
- ``re10k:DIR``: RealEstate10K in the pixelSplat / MVSplat chunk layout (:func:`re10k_clips`), cameras only.
- ``7scenes:DIR``, ``eth3d:DIR``, ``scannet:DIR``: the pointmap / pose benchmarks in their release layouts, with
  depth (:mod:`vist3a.benchmark.datasets`: layouts, conventions and frame selection per dataset). ``keyframe_every``
  sets their keyframe stride (default: 7-Scenes and ETH3D every frame, ScanNet every 3rd of the first 270).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError

BENCHMARKS = ("7scenes", "eth3d", "scannet")  # native loaders in vist3a.benchmark.datasets (depth included)
KINDS = ("nano", "dl3dv", "re10k", *BENCHMARKS)


def parse_data(spec: str) -> tuple[str, str | None]:
    """``"dl3dv:/data/x"`` -> ``("dl3dv", "/data/x")``; ``"nano"`` -> ``("nano", None)``."""
    kind, _, folder = spec.partition(":")
    if kind not in KINDS:
        raise UserInputError(f"--data must be nano or one of {', '.join(k + ':DIR' for k in KINDS[1:])}, "
                             f"got {spec!r}")
    if kind == "nano" and folder:
        raise UserInputError("--data nano takes no folder")
    if kind != "nano" and not folder:
        raise UserInputError(f"--data {kind} needs a folder: --data {kind}:DIR")
    return kind, folder or None


def check_data(spec: str, keyframe_every: int | None = None) -> tuple[str, str | None]:
    """:func:`parse_data`, and for the benchmark kinds a look into the folder: a wrong ``--data`` fails in one line
    (naming the expected layout) before any model loads."""
    kind, folder = parse_data(spec)
    if keyframe_every is not None and kind not in BENCHMARKS:
        raise UserInputError(f"--keyframe-every applies to --data {', '.join(BENCHMARKS)}, not {kind}")
    if kind in BENCHMARKS:
        from vist3a.benchmark.datasets import check_folder

        check_folder(kind, Path(folder))
    return kind, folder


def eval_clips(spec: str, num_clips: int, num_frames: int, size: int, seed: int = 0,
               keyframe_every: int | None = None) -> list[Any]:
    """``num_clips`` :class:`~vist3a.data.clip.MultiViewClip` of ``num_frames`` square ``size`` px frames
    (``keyframe_every``: the keyframe stride of the 7scenes / eth3d / scannet loaders, None = theirs)."""
    kind, folder = check_data(spec, keyframe_every)
    if kind in BENCHMARKS:
        from vist3a.benchmark.datasets import LOADERS

        stride = {} if keyframe_every is None else {"stride": keyframe_every}
        return LOADERS[kind](Path(folder), num_clips, num_frames, size, **stride)
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
