"""``vist3a info``: what is in a splat file (thin wrapper over :func:`vist3a.splats.summarize`)."""

from __future__ import annotations

from pathlib import Path

import typer

HELP = (
    "Print what a Gaussian-splat file (.ply or .splat) or a point-cloud .ply contains.\n\n"
    "Shows the number of splats, the spherical-harmonics degree, the bounding box (raw, and the robust "
    "2-98 % percentile box that ignores stray splats) and the distributions of opacity and splat size; for a "
    "point cloud (the points.ply of a pointmap preset) the number of points, its boxes, whether it has colours "
    "and confidences, and the typical spacing of its points.\n\n"
    "Examples:\n\n\b\n"
    "  vist3a info scene/scene.ply\n"
    "  vist3a info pointmaps/points.ply\n"
    "  vist3a info scene.splat --json > summary.json"
)


def register(app: typer.Typer) -> None:
    @app.command("info", help=HELP, no_args_is_help=True)
    def info_cmd(
        scene: Path = typer.Argument(..., help="Splat file (.ply in the 3DGS layout, or .splat), or a point-cloud "
                                     ".ply.", show_default=False),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON instead of tables."),
    ) -> None:
        import dataclasses
        import json

        from rich.console import Console
        from rich.table import Table

        from vist3a.splats import load_gaussians, summarize
        from vist3a.splats.ply import is_point_cloud_ply

        if is_point_cloud_ply(scene):
            _point_cloud_info(scene, as_json)
            return
        summary = summarize(load_gaussians(scene))
        if as_json:
            typer.echo(json.dumps({"file": str(scene), **dataclasses.asdict(summary)}, indent=2))
            return

        def vec(values) -> str:
            return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

        overview = Table(title=str(scene), show_header=False)
        overview.add_column("what", style="bold")
        overview.add_column("value")
        overview.add_row("splats", f"{summary.count:,}")
        overview.add_row("SH degree", f"{summary.sh_degree} ({(summary.sh_degree + 1) ** 2} coefficients per channel)")
        overview.add_row("file size", f"{scene.stat().st_size / 2**20:.2f} MiB")
        overview.add_row("bounding box min", vec(summary.bbox_min))
        overview.add_row("bounding box max", vec(summary.bbox_max))
        overview.add_row("robust box 2 %", vec(summary.robust_min))
        overview.add_row("robust box 98 %", vec(summary.robust_max))
        overview.add_row("invisible (opacity < 1/255)", f"{summary.num_transparent:,}")

        dist = Table(title="distributions")
        for column in ("quantity", "min", "5 %", "median", "mean", "95 %", "max"):
            dist.add_column(column, justify="left" if column == "quantity" else "right")
        for label, q in (
            ("opacity", summary.opacity),
            ("scale, largest axis", summary.scale_max),
            ("scale, smallest axis", summary.scale_min),
        ):
            dist.add_row(label, *(f"{v:.4g}" for v in (q.min, q.p05, q.median, q.mean, q.p95, q.max)))

        console = Console(width=max(100, Console().width))
        console.print(overview)
        console.print(dist)


def _point_cloud_info(path: Path, as_json: bool) -> None:
    """``vist3a info`` of a point-cloud PLY: size, boxes, colours, confidence and spacing."""
    import json

    import numpy as np
    import torch
    from plyfile import PlyData

    from vist3a.splats.ply import read_point_ply
    from vist3a.splats.points import point_spacing

    xyz, _, conf = read_point_ply(path)
    names = PlyData.read(str(path))["vertex"].data.dtype.names
    info = {
        "file": str(path), "kind": "point cloud", "count": len(xyz),
        "colours": all(c in names for c in ("red", "green", "blue")), "confidence": conf is not None,
        "bbox_min": xyz.min(0).tolist(), "bbox_max": xyz.max(0).tolist(),
        "robust_min": np.percentile(xyz, 2, axis=0).tolist(), "robust_max": np.percentile(xyz, 98, axis=0).tolist(),
        "spacing_median": point_spacing(torch.from_numpy(xyz)) if len(xyz) > 1 else None,
    }
    if conf is not None:
        info["confidence_median"] = float(np.median(conf))
    if as_json:
        typer.echo(json.dumps(info, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    def vec(values) -> str:
        return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

    table = Table(title=f"{path} (point cloud)", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("points", f"{info['count']:,}")
    table.add_row("colours", "yes" if info["colours"] else "no (rendered grey)")
    table.add_row("confidence", f"yes (median {info['confidence_median']:.4g})" if conf is not None else "no")
    table.add_row("file size", f"{path.stat().st_size / 2**20:.2f} MiB")
    for label, key in (("bounding box min", "bbox_min"), ("bounding box max", "bbox_max"),
                       ("robust box 2 %", "robust_min"), ("robust box 98 %", "robust_max")):
        table.add_row(label, vec(info[key]))
    spacing = info["spacing_median"]
    table.add_row("nearest-neighbour spacing, median", "n/a (one point)" if spacing is None else f"{spacing:.4g}")
    Console(width=max(100, Console().width)).print(table)
