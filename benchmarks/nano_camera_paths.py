"""Does the nano preset make 3D scenes? Predicted camera span and the ±45° turntable judge per template and seed.

For each camera-motion template and seed, ``Text2ScenePipeline("nano")`` generates the quickstart prompt; the row
records the rotation span of the 13 predicted cameras (a 2.5D sheet has ~0), which pass ``--direction
mirror-select`` kept, and the share of the named colours' pixels in turntable views at 0°, -45° and +45° around the
objects (the judge of ``tests/nano/test_nano_3d.py``: each colour on >= 0.5 % of the first view, and every turned
view keeping >= 50 % of the first view's colour pixels). This is how docs/nano.md § Round 5 chose the nano template.

    python benchmarks/nano_camera_paths.py --seeds 8 --out camera_paths.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TEMPLATES = ("none", "The camera rises while circling {prompt}.", "The camera descends while circling {prompt}.",
             "The camera arcs around {prompt}.")


def measure(prompt: str, templates, seeds: int, colours=("red", "blue")) -> list[dict]:
    from vist3a.nano.scene3d import colour_pixel_fraction, rotation_span_deg, turntable_views
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano", device="cpu")
    rows = []
    for template in templates:
        for seed in range(seeds):
            scene = pipe(prompt, generator=torch.Generator().manual_seed(seed), progress=False, template=template)[0]
            views = turntable_views(scene, colours, (0.0, -45.0, 45.0), backend="torch")
            kept = [sum(colour_pixel_fraction(v, c) for c in colours) for v in views] if views is not None else []
            visible = min(colour_pixel_fraction(views[0], c) for c in colours) if views is not None else 0.0
            rows.append({
                "template": template, "seed": seed, "span_deg": rotation_span_deg(scene.w2c),
                "decoded": scene.settings.get("direction_choice", {}).get("decoded"), "colour_share": kept,
                "turntable_ok": bool(kept) and visible >= 0.005 and all(k >= 0.5 * kept[0] for k in kept[1:]),
            })
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a red cube left of a blue sphere")
    parser.add_argument("--templates", nargs="*", default=list(TEMPLATES))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = measure(args.prompt, args.templates, args.seeds)
    for template in args.templates:
        mine = [r for r in rows if r["template"] == template]
        spans = [r["span_deg"] for r in mine]
        print(f"{template!r}: span >= 30 deg {sum(s >= 30 for s in spans)}/{len(mine)} "
              f"({min(spans):.0f}-{max(spans):.0f} deg), turntable {sum(r['turntable_ok'] for r in mine)}/{len(mine)}")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
