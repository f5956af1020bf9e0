"""Does the nano preset make 3D scenes? Predicted camera span and the ±45° turntable judge per template and seed.

For each camera-motion template and seed, ``Text2ScenePipeline("nano")`` generates the quickstart prompt; the row
records the rotation span of the 13 predicted cameras (a 2.5D sheet has ~0), which pass the direction rule kept
(``--direction``; the preset's, motion, unless given), and the share of the named colours' pixels in turntable
views at 0°, -45° and +45° around the objects (the judge of ``tests/nano/test_nano_3d.py``: each colour on >= 0.5 %
of the first view, and every turned view keeping >= 50 % of the first view's colour pixels). This is how
docs/nano.md § Round 5 chose the nano template.

    python benchmarks/nano_camera_paths.py --seeds 8 --out camera_paths.json

``--direction mirror-select``: compare the direction rules (docs/nano.md § Round 10).

``--stitch RUN/stitch/model``: a stitched decoder of ``vist3a nano train stitch`` in place of the installed one
(to judge a candidate before ``vist3a nano install``).

``--left-right 32``: the preset's own template on two-object prompts instead (the 24 left/right cases of
:func:`vist3a.evaluation.relations.left_right_cases`, repeated with new seeds past 24): camera span, the share of
turntable views from -60° to +60° (5 views) that show both named colours, and left/right judged on the first frame.

``--follow``: also whether the stitched decoder's cameras follow the decoded video. A generated video has no true
cameras, so the reference is the installed nano AnySplat (the stitched decoder's teacher) on the decoded frames,
with the same direction rule: per scene its span (``span_teacher_deg``) and ``follow_deg``, the median over frames of
the angle between the two decoders' rotations relative to the first frame (docs/nano.md § Round 11).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

TEMPLATES = ("none", "The camera rises while circling {prompt}.", "The camera descends while circling {prompt}.",
             "The camera arcs around {prompt}.")


def nano_pipeline(stitch: Path | None = None):
    """The nano pipeline on the CPU, with the stitched decoder at ``stitch`` if given."""
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano", device="cpu")
    if stitch is not None:
        from vist3a.nano.train_stitch import load_stitched_decoder

        pipe.decoder = load_stitched_decoder(stitch)
    return pipe


def teacher_decoder(enabled: bool):
    """The installed nano AnySplat as a ``vist3a.benchmark`` decoder (``--follow``), or None."""
    if not enabled:
        return None
    from vist3a.benchmark.decoders import load_decoders

    return load_decoders("nano", ("original",), torch.device("cpu"))[0]


def follow(scene, teacher, direction: str) -> dict:
    """The teacher on the scene's decoded frames: its span and the median angle between the two decoders' camera
    rotations relative to frame 0 (``follow_deg``)."""
    from vist3a.benchmark.decoders import decode
    from vist3a.nano.scene3d import geodesic_deg, rotation_span_deg

    pred, _ = decode(teacher, scene.frames.float(), direction)

    def relative(w2c: torch.Tensor) -> torch.Tensor:
        rot = w2c[:, :3, :3].double()
        return rot @ rot[:1].transpose(-1, -2)

    angles = geodesic_deg(relative(scene.w2c.float()), relative(pred.w2c.float()))[1:]
    return {"span_teacher_deg": rotation_span_deg(pred.w2c), "follow_deg": float(angles.median())}


def measure(prompt: str, templates, seeds: int, colours=("red", "blue"), stitch: Path | None = None,
            direction: str | None = None, teacher=None) -> list[dict]:
    from vist3a.nano.scene3d import colour_pixel_fraction, rotation_span_deg, turntable_views

    pipe = nano_pipeline(stitch)
    rows = []
    for template in templates:
        for seed in range(seeds):
            scene = pipe(prompt, generator=torch.Generator().manual_seed(seed), progress=False, template=template,
                         direction=direction)[0]
            views = turntable_views(scene, colours, (0.0, -45.0, 45.0), backend="torch")
            kept = [sum(colour_pixel_fraction(v, c) for c in colours) for v in views] if views is not None else []
            visible = min(colour_pixel_fraction(views[0], c) for c in colours) if views is not None else 0.0
            rows.append({
                "template": template, "seed": seed, "span_deg": rotation_span_deg(scene.w2c),
                "decoded": scene.settings.get("direction_choice", {}).get("decoded"), "colour_share": kept,
                "turntable_ok": bool(kept) and visible >= 0.005 and all(k >= 0.5 * kept[0] for k in kept[1:]),
            })
            if teacher is not None:
                rows[-1].update(follow(scene, teacher, scene.settings["direction"]))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def measure_left_right(num: int, stitch: Path | None = None, direction: str | None = None, teacher=None
                       ) -> list[dict]:
    from vist3a.evaluation.relations import judge_left_right, left_right_cases
    from vist3a.nano.scene3d import colour_pixel_fraction, rotation_span_deg, turntable_views

    pipe = nano_pipeline(stitch)
    cases = left_right_cases(24, 2026)
    rows = []
    for i in range(num):
        case = cases[i % len(cases)]
        scene = pipe(case.prompt, generator=torch.Generator().manual_seed(i if i < 24 else 1000 + i), progress=False,
                     direction=direction)[0]
        colours = (case.subject_colour, case.reference_colour)
        views = turntable_views(scene, colours, (0.0, -60.0, -30.0, 30.0, 60.0), backend="torch")
        both = [all(colour_pixel_fraction(v, c) >= 0.005 for c in colours) for v in views] if views is not None else []
        rows.append({"prompt": case.prompt, "span_deg": rotation_span_deg(scene.w2c),
                     "both_visible_share": sum(both) / 5, "left_right": judge_left_right(scene.frames[0].float(), case),
                     "decoded": scene.settings.get("direction_choice", {}).get("decoded")})
        if teacher is not None:
            rows[-1].update(follow(scene, teacher, scene.settings["direction"]))
        print(json.dumps(rows[-1]), flush=True)
    spans = sorted(r["span_deg"] for r in rows)
    whole = sum(r["both_visible_share"] == 1 for r in rows)
    right, wrong = sum(r["left_right"] is True for r in rows), sum(r["left_right"] is False for r in rows)
    print(f"span median {spans[len(spans) // 2]:.0f} deg, >= 30 deg {sum(s >= 30 for s in spans)}/{num}; "
          f"both colours in all 5 turntable views {whole}/{num}; left/right right {right}, wrong {wrong}")
    print_follow(rows)
    return rows


def print_follow(rows: list[dict]) -> None:
    if rows and "follow_deg" in rows[0]:
        def median(key: str) -> float:
            return sorted(r[key] for r in rows)[len(rows) // 2]

        print(f"follow: median {median('follow_deg'):.1f} deg from the teacher on the frames; span median "
              f"{median('span_deg'):.0f} deg (teacher {median('span_teacher_deg'):.0f} deg)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompt", default="a red cube left of a blue sphere")
    parser.add_argument("--templates", nargs="*", default=list(TEMPLATES))
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--left-right", type=int, default=0, help="measure N two-object prompts instead")
    parser.add_argument("--stitch", type=Path, default=None, help="a stitched decoder folder instead of the installed")
    parser.add_argument("--direction", default=None, help="as-is | mirror-select | motion (default: the preset's)")
    parser.add_argument("--follow", action="store_true",
                        help="also compare the cameras with the installed AnySplat's on the decoded frames")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    teacher = teacher_decoder(args.follow)
    if args.left_right:
        rows = measure_left_right(args.left_right, args.stitch, args.direction, teacher)
        if args.out:
            args.out.write_text(json.dumps(rows, indent=1) + "\n")
        return
    rows = measure(args.prompt, args.templates, args.seeds, stitch=args.stitch, direction=args.direction,
                   teacher=teacher)
    for template in args.templates:
        mine = [r for r in rows if r["template"] == template]
        spans = [r["span_deg"] for r in mine]
        print(f"{template!r}: span >= 30 deg {sum(s >= 30 for s in spans)}/{len(mine)} "
              f"({min(spans):.0f}-{max(spans):.0f} deg), turntable {sum(r['turntable_ok'] for r in mine)}/{len(mine)}")
        print_follow(mine)
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
