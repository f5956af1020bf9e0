"""The two decoders the stitching tables compare, behind one call: frames in, 3D prediction out.

- ``original``: the reconstruction model on the frames themselves (resized to its input size).
- ``stitched``: the video VAE encodes the frames, the stitched decoder reads the latents (and, for AnySplat's
  Gaussian head, the frames). A video VAE needs ``4k + 1`` frames (:attr:`Decoder.frame_step` = 4).

Predictions are expressed at the **frames'** size: cameras ``w2c [V, 4, 4]`` (OpenCV) and pixel intrinsics
``K [V, 3, 3]`` with pixel centres at integer coordinates (rescaled from the model's input size), world pointmaps
``[V, H, W, 3]`` resized to the frames (nearest), and the Gaussians (AnySplat decoders).

``--direction motion | mirror-select`` (:func:`decode`): decoders trained on clips that turn one way (the nano
ones, ``canonical_direction``) run on the frames or on their mirror image, as ``vist3a generate`` does (motion: the
turn read off the frames, :func:`vist3a.recon.direction.image_motion_turn`; mirror-select: both passes, the one
whose splats explain held-out views better, :func:`vist3a.recon.direction.mirror_choice`), and a mirror pass is
mapped back to the frames' own world (:meth:`Prediction.mirrored`, i.e. :meth:`vist3a.scene.Scene.mirrored`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from vist3a.errors import UserInputError


@dataclass
class Prediction:
    """One decoder output for ``V`` views of ``H x W`` frames (see the module docstring); CPU float32."""

    w2c: torch.Tensor
    K: torch.Tensor
    points: torch.Tensor | None
    gaussians: Any = None

    def mirrored(self, image_size: tuple[int, int]) -> Prediction:
        """The prediction's mirror image across the world plane ``x = 0`` for frames of ``image_size`` ``(H, W)``:
        a prediction made on mirrored frames comes back in the frame of the frames themselves. The map is
        :meth:`vist3a.scene.Scene.mirrored` (cameras ``S w2c S``, ``cx -> W - 1 - cx``, pointmaps flipped
        left-right with ``x -> -x``, Gaussians mirrored); applying it twice gives the prediction back."""
        from vist3a.scene import Scene

        blank = torch.empty(0, 3, *image_size)  # Scene.mirrored flips frames too; a prediction has none
        scene = Scene(prompt="", frames=blank, w2c=self.w2c, K=self.K, image_size=tuple(image_size),
                      gaussians=self.gaussians, points=self.points).mirrored()
        return Prediction(scene.w2c, scene.K, scene.points, scene.gaussians)


def _prediction(out: Any, frames_hw: tuple[int, int]) -> Prediction:
    """Batch element 0 of an AnySplat / VGGT output as a :class:`Prediction` at ``frames_hw``."""
    from vist3a.cameras import K_from_edge_convention, to_homogeneous
    from vist3a.data.clip import crop_resize_intrinsics

    height, width = frames_hw
    model_h, model_w = (int(s) for s in out.depth.shape[-2:])
    K = crop_resize_intrinsics(K_from_edge_convention(out.cameras.K[0].float()), (0, 0),
                               (width / model_w, height / model_h))
    points = getattr(out, "world_points", None)  # VGGT; MV-DUSt3R's [B, V, H, W, 3] (its ``points`` are per path)
    if points is None:
        points = getattr(out, "points", None)  # AnySplat's unprojected depth
    if points is not None:
        points = F.interpolate(points[0].float().permute(0, 3, 1, 2), size=frames_hw, mode="nearest-exact")
        points = points.permute(0, 2, 3, 1).cpu()
    gaussians = getattr(out, "gaussians", None)
    return Prediction(to_homogeneous(out.cameras.w2c[0].float()).cpu(), K.cpu(), points,
                      gaussians[0].detach().to(device="cpu", dtype=torch.float32) if gaussians is not None else None)


def check_view_count(name: str, frame_step: int, count: int, what: str) -> None:
    """One clear error when ``count`` views are not ``1 + k * frame_step`` (a video VAE's frame rule)."""
    if (count - 1) % frame_step:
        raise UserInputError(f"the {name} decoder reads video latents and needs {frame_step}k+1 views, but {what} "
                             f"has {count}; choose --context/--targets (or --frames) so that the context and "
                             "context+targets are both 4k+1 (e.g. 9 and 4)")


class Decoder:
    """``decoder(frames [V, 3, H, W] in [0, 1]) -> Prediction``; ``frame_step``: V must be ``1 + k * step``.

    Subclasses implement :meth:`run` (the model's raw output, which :meth:`__call__` turns into a
    :class:`Prediction` and :meth:`score` rates for ``--direction mirror-select``) and name the 3D model of that
    output in ``recon`` (its Gaussian head renders held-out views; ``None`` for pointmap outputs, which need none).
    """

    name: str = "decoder"
    frame_step: int = 1
    recon: Any = None

    def check_views(self, count: int, what: str) -> None:
        check_view_count(self.name, self.frame_step, count, what)

    def run(self, frames: torch.Tensor) -> Any:
        """The model's output (batch of one) for ``frames [V, 3, H, W]``: an AnySplat / VGGT output."""
        raise NotImplementedError(f"{type(self).__name__} gives no raw output (needed by --direction mirror-select)")

    def __call__(self, frames: torch.Tensor) -> Prediction:
        return _prediction(self.run(frames), tuple(frames.shape[-2:]))


class OriginalDecoder(Decoder):
    """A recon model (AnySplat / VGGT) on frames resized to its square input ``size``."""

    name = "original"

    def __init__(self, model: torch.nn.Module, size: int) -> None:
        self.model, self.size = model.eval(), size
        self.recon = self.model

    @torch.no_grad()
    def run(self, frames: torch.Tensor) -> Any:
        param = next(self.model.parameters())
        x = F.interpolate(frames.float(), size=(self.size, self.size), mode="bilinear", align_corners=False,
                          antialias=self.size < min(frames.shape[-2:])).clamp(0, 1)
        return self.model(x[None].to(param.device, param.dtype))


class StitchedLatentDecoder(Decoder):
    """A :class:`~vist3a.stitching.StitchedDecoder` on the VAE posterior means of the frames."""

    name = "stitched"
    frame_step = 4

    def __init__(self, decoder: torch.nn.Module, encode: Any, frame_step: int = 4) -> None:
        self.decoder, self.encode, self.frame_step = decoder.eval(), encode, frame_step
        self.recon = getattr(self.decoder, "recon", None)  # the cut 3D model behind the stitching layer

    @torch.no_grad()
    def run(self, frames: torch.Tensor) -> Any:
        self.check_views(frames.shape[0], "the clip")
        param = next(self.decoder.parameters())
        latents = self.encode(frames[None].float())
        return self.decoder(latents.to(param.device, param.dtype), frames[None].to(param.device, param.dtype))


def resolve_direction(direction: str | None, preset: str | dict[str, Any]) -> str:
    """``--direction``: as given, else the preset's ``defaults.direction`` (what ``vist3a generate`` uses: the nano
    presets say "motion"), else "as-is"; one of :data:`vist3a.recon.direction.DIRECTIONS`."""
    from vist3a.recon.direction import DIRECTIONS

    if direction is None:
        from vist3a.components import resolve_preset

        direction = resolve_preset(preset).get("defaults", {}).get("direction", "as-is")
    if direction not in DIRECTIONS:
        raise UserInputError(f"--direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    return direction


def check_direction_views(direction: str, count: int, what: str) -> None:
    """mirror-select scores each pass on held-out views, so every decoded view set needs at least 3 views; motion
    compares consecutive views, so at least 2."""
    if direction == "mirror-select" and count < 3:
        raise UserInputError(f"--direction mirror-select holds out views of each pass and needs at least 3 views, "
                             f"but {what} has {count}; use more views or --direction as-is")
    if direction == "motion" and count < 2:
        raise UserInputError(f"--direction motion reads the turn off consecutive views and needs at least 2, but "
                             f"{what} has {count}; use more views or --direction as-is")


def decode(decoder: Decoder, frames: torch.Tensor, direction: str = "as-is", backend: str = "auto"
           ) -> tuple[Prediction, dict[str, Any] | None]:
    """``decoder`` on ``frames [V, 3, H, W]`` with the turning-direction rule ``direction``:
    ``(prediction in the frames' own world, choice)``.

    "as-is": one pass, ``choice`` is ``None``. "mirror-select": a pass on the frames and one on their mirror image,
    scored by :func:`vist3a.recon.direction.mirror_choice` (held-out self-consistency, no ground truth); the
    better is kept, a mirror pass mapped back with :meth:`Prediction.mirrored`. "motion": one pass, on the mirror
    image if the frames turn clockwise by :func:`vist3a.recon.direction.image_motion_turn`. ``choice``:
    ``{"decoded": "as is" | "mirror image", "heldout_psnr", "heldout_psnr_mirror"}`` or, for "motion",
    ``{"decoded", "image_motion_turn"}`` (as ``vist3a generate`` records it in meta.json).
    """
    from vist3a.recon.direction import DIRECTIONS, image_motion_turn, mirror_choice

    if direction not in DIRECTIONS:
        raise ValueError(f"`direction` must be one of {DIRECTIONS}, got {direction!r}")
    if direction == "as-is":
        return decoder(frames), None
    size = tuple(frames.shape[-2:])
    if direction == "motion":
        turn = float(image_motion_turn(frames[None].float())[0])
        choice = {"decoded": "mirror image" if turn < 0 else "as is", "image_motion_turn": turn}
        return decode_as(decoder, frames, choice), choice
    mirrored = frames.flip(-1)
    out, out_m = decoder.run(frames), decoder.run(mirrored)
    picked = mirror_choice(decoder.recon, out, out_m, frames[None].float(), backend=backend)
    take = bool(picked["take"][0])
    pred = _prediction(out_m, size).mirrored(size) if take else _prediction(out, size)
    return pred, {"decoded": "mirror image" if take else "as is", "heldout_psnr": float(picked["score"][0]),
                  "heldout_psnr_mirror": float(picked["score_m"][0])}


def decode_as(decoder: Decoder, frames: torch.Tensor, choice: dict[str, Any] | None) -> Prediction:
    """``decoder`` on ``frames`` through the pass an earlier :func:`decode` kept (``choice``; ``None``: as is),
    in the frames' own world: for a second run on the same clip (NVS' context + targets run)."""
    if choice is None or choice["decoded"] == "as is":
        return decoder(frames)
    return decoder(frames.flip(-1)).mirrored(tuple(frames.shape[-2:]))


def mirror_summary(result: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """``result`` with ``"mirror_taken"``: per decoder, the fraction of clips decoded from the mirror image
    (mirror-select and motion)."""
    if result["direction"] in ("mirror-select", "motion"):
        per_clip = result["per_clip"]
        result["mirror_taken"] = {n: sum(r["direction_choice"][n]["decoded"] == "mirror image" for r in per_clip)
                                  / len(per_clip) for n in names}
    return result


def direction_line(result: dict[str, Any]) -> str:
    """The markdown tables' note on the turning direction: the rule, and how often the mirror pass was kept."""
    direction = result.get("direction", "as-is")
    if direction not in ("mirror-select", "motion"):
        return f"Direction: {direction} (each clip decoded as it comes)"
    taken = ", ".join(f"{name} {round(share * result['num_clips'])}/{result['num_clips']}"
                      for name, share in result["mirror_taken"].items())
    return f"Direction: {direction} (clips decoded from their mirror image: {taken})"


def preset_sizes(preset: str | dict[str, Any]) -> tuple[int, int]:
    """``(frame size, recon size)`` of a preset's decoders, from its ``stitching`` block: the VAE input size the
    stitched decoder was fitted at (the clips are resized to it) and the plain 3D model's input size."""
    from vist3a.components import resolve_preset, stitching_sizes

    sizes = stitching_sizes(resolve_preset(preset))
    return int(sizes["vae_size"]), int(sizes["recon_size"])


def load_decoders(preset: str, names: tuple[str, ...], device: torch.device) -> list[Decoder]:
    """Decoders ``names`` ("stitched", "original") of a preset, its models from the component registry
    (:func:`vist3a.components.load_components`): the stitched decoder reads the posterior means of the preset's VAE
    (parts ``vae`` + ``stitched``), the original one is the plain 3D model (part ``recon``) at the preset's
    ``stitching.recon_size``. Missing weights are one ``UserInputError`` from the preset's provider."""
    from vist3a.components import load_components
    from vist3a.stitching.features import encode_latents
    from vist3a.video.frames import vae_scale_factors

    unknown = sorted(set(names) - {"stitched", "original"})
    if unknown:
        raise UserInputError(f"unknown decoders {unknown}; use stitched and/or original")
    parts = ({"recon"} if "original" in names else set()) | ({"vae", "stitched"} if "stitched" in names else set())
    components = load_components(preset, parts, device=device)
    out: list[Decoder] = []
    for name in names:
        if name == "original":
            _, recon_size = preset_sizes(components.preset)
            out.append(OriginalDecoder(components.recon.to(device), recon_size))
        else:
            vae = components.vae.to(device).eval()
            temporal, _ = vae_scale_factors(vae.config)
            out.append(StitchedLatentDecoder(components.stitched.to(device),
                                             lambda x, vae=vae: encode_latents(vae, x, sample=False).float(), temporal))
    return out
