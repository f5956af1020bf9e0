"""Scene exports for other tools: one module per format, one registry.

=================  ========================  ==================================================================
format             written to                read by
=================  ========================  ==================================================================
``spz``            ``scene.spz``             Niantic spz, Spark, PlayCanvas/SuperSplat, gsply (~8x smaller)
``compressed-ply`` ``scene.compressed.ply``  SuperSplat, PlayCanvas engine and splat-transform, gsply (~4-14x)
``splat``          ``scene.splat``           antimatter15's viewer and most web viewers (DC colour only)
``glb``            ``scene.glb``             any glTF viewer: point cloud + camera frustums
``nerfstudio``     ``nerfstudio/``           ``ns-train splatfacto --data nerfstudio/`` (transforms.json)
``colmap``         ``colmap/``               COLMAP, gsplat's trainer, nerfstudio (sparse/0/*.txt + images/)
=================  ========================  ==================================================================

Every format's axes, units and activations are in its module docstring and in docs/formats.md. vist3a's world
frame is the OpenCV one of its cameras (x right, y down, z forward).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from vist3a.errors import UserInputError
from vist3a.exports.source import SceneData, load_scene_dir, scene_data_from_scene
from vist3a.splats.sh import DEFAULT_SH_DEGREE

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportFormat:
    """One export: where it goes inside the scene folder and how it is written."""

    target: str
    needs_gaussians: bool
    write: Callable[[SceneData, Path, int | None], Path]
    description: str


def _spz(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    from vist3a.exports.spz import save_spz

    return save_spz(data.gaussians, path, sh_degree=sh_degree)


def _compressed_ply(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    from vist3a.exports.compressed_ply import save_compressed_ply

    return save_compressed_ply(data.gaussians, path, sh_degree=sh_degree)


def _splat(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    from vist3a.splats.splat_file import save_splat

    return save_splat(data.gaussians, path)


def _glb(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    try:
        import trimesh  # noqa: F401
    except ImportError:
        raise UserInputError('--format glb needs trimesh: pip install -e ".[export]"') from None
    from vist3a.exports.glb import save_glb

    return save_glb(data, path)


def _nerfstudio(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    from vist3a.exports.nerfstudio import save_nerfstudio

    return save_nerfstudio(data, path)


def _colmap(data: SceneData, path: Path, sh_degree: int | None) -> Path:
    from vist3a.exports.colmap import save_colmap

    return save_colmap(data, path)


FORMATS: dict[str, ExportFormat] = {
    "spz": ExportFormat("scene.spz", True, _spz, "Niantic .spz (compressed splats)"),
    "compressed-ply": ExportFormat("scene.compressed.ply", True, _compressed_ply, "PlayCanvas compressed PLY"),
    "splat": ExportFormat("scene.splat", True, _splat, "antimatter15 .splat"),
    "glb": ExportFormat("scene.glb", False, _glb, "glTF point cloud + camera frustums"),
    "nerfstudio": ExportFormat("nerfstudio", False, _nerfstudio, "nerfstudio transforms.json + images"),
    "colmap": ExportFormat("colmap", False, _colmap, "COLMAP text model + images"),
}


def parse_formats(names: Iterable[str]) -> list[str]:
    """Normalise ``names`` (comma-separated allowed, ``all`` = every format) -> known names in registry order.

    Unknown names are a ``UserInputError`` listing the known ones.
    """
    wanted = {part.strip().lower() for name in names for part in str(name).split(",") if part.strip()}
    if "all" in wanted:
        return list(FORMATS)
    unknown = sorted(wanted - set(FORMATS))
    if unknown:
        raise UserInputError(f"unknown export format(s) {', '.join(unknown)}; choose from {', '.join(FORMATS)}, all")
    return [name for name in FORMATS if name in wanted]


def export_scene_data(
    data: SceneData, out_dir: str | os.PathLike, formats: Iterable[str], *, sh_degree: int | None = DEFAULT_SH_DEGREE,
    skip_unsupported: bool = False,
) -> dict[str, Path]:
    """Write each of ``formats`` for ``data`` into ``out_dir``; returns ``{format: path}``.

    Splat formats need Gaussians: for a pointmap-only scene they are a ``UserInputError``, or skipped with a
    warning when ``skip_unsupported``. Every file and folder is written atomically.
    """
    out_dir = Path(out_dir)
    written = {}
    for name in parse_formats(formats):
        spec = FORMATS[name]
        if spec.needs_gaussians and data.gaussians is None:
            if skip_unsupported:
                logger.warning("skipping --format %s: the scene has no Gaussians (pointmap decoder)", name)
                continue
            raise UserInputError(f"--format {name} needs Gaussians, but this scene has only a point cloud")
        written[name] = spec.write(data, out_dir / spec.target, sh_degree)
    return written


def export_scene(
    scene_dir: str | os.PathLike, formats: Iterable[str], *, out_dir: str | os.PathLike | None = None,
    sh_degree: int | None = DEFAULT_SH_DEGREE,
) -> dict[str, Path]:
    """Read a scene folder (``vist3a generate`` / ``reconstruct`` output) and write ``formats`` into ``out_dir``
    (default: the scene folder itself). ``all`` skips the splat formats for pointmap-only scenes."""
    names = list(formats)
    data = load_scene_dir(scene_dir)
    skip = any(str(n).strip().lower() == "all" for n in names)
    return export_scene_data(data, out_dir or scene_dir, names, sh_degree=sh_degree, skip_unsupported=skip)


__all__ = [
    "FORMATS",
    "ExportFormat",
    "SceneData",
    "export_scene",
    "export_scene_data",
    "load_scene_dir",
    "parse_formats",
    "scene_data_from_scene",
]
