"""Which views of a scene are scored, and its renders at its own predicted cameras.

Shared by every runner that scores a :class:`~vist3a.scene.Scene` (``vist3a nano eval``, ``vist3a eval text3d``'s
consistency metric, ``vist3a refine``): the views are picked one way, and the predicted intrinsics (given at the
3D model's input size ``scene.image_size``) are rescaled to the decoded frames one way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def evenly_spaced(num_frames: int, count: int) -> list[int]:
    """``min(count, num_frames)`` distinct frame indices spread over ``range(num_frames)``, first and last included."""
    count = min(count, num_frames)
    if count == 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (count - 1)) for i in range(count)})


def scene_cameras_at_frames(scene: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w2c [T, 4, 4], K [T, 3, 3])`` of a :class:`~vist3a.scene.Scene`, ``K`` rescaled from the 3D model's
    ``image_size`` to the decoded frames' size (pixel-centre convention kept)."""
    from vist3a.data.clip import crop_resize_intrinsics

    height, width = (int(s) for s in scene.frames.shape[-2:])
    model_h, model_w = scene.image_size
    K = crop_resize_intrinsics(scene.K.float(), (0, 0), (width / model_w, height / model_h))
    return scene.w2c.float(), K


def render_predicted_views(scene: Any, views: Sequence[int], backend: str = "auto",
                           device: str | torch.device | None = None) -> torch.Tensor:
    """Renders ``[k, 3, H, W]`` in ``[0, 1]`` of the scene (:meth:`~vist3a.scene.Scene.render_splats`: its
    Gaussians, or a pointmap scene's point splats, the pointmaps re-projected) at the predicted cameras of frames
    ``views``, at the decoded frames' size ``(H, W)``. CPU output."""
    from vist3a.splats import render

    splats = scene.render_splats()
    height, width = (int(s) for s in scene.frames.shape[-2:])
    w2c, K = scene_cameras_at_frames(scene)
    views = list(views)
    device = torch.device(device) if device is not None else splats.device
    out = render(splats.to(device=device, dtype=torch.float32), w2c[views], K[views], width, height,
                 backend=backend)
    return out.colors.clamp(0.0, 1.0).permute(0, 3, 1, 2).cpu()
