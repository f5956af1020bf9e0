"""The ``nano-vggt`` preset (issue 21): nano generator + VAE + the stitched nano VGGT from the nano weights folder,
end to end through ``vist3a generate`` with tiny random weights installed into a temporary weights folder."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.cli.main import main
from vist3a.errors import UserInputError
from vist3a.nano.weights import nano_available

PROMPT = "a red cube left of a blue sphere"


def _install(tmp_path, components, tiny_vae_config, tiny_transformer_config, tiny_vggt_config):
    """Tiny random nano components saved as training runs and installed into ``tmp_path/weights``."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel
    from nano_helpers import install_tiny_components

    from vist3a.nano.configs import nano_stitch_spec, stitch_candidates
    from vist3a.recon import VGGT
    from vist3a.stitching.decoder import StitchedDecoder

    torch.manual_seed(0)
    vggt_config = {**tiny_vggt_config,
                   "aggregator_config": {**tiny_vggt_config["aggregator_config"], "img_size": 112}}  # 8x8 tokens
    vggt = VGGT(**vggt_config)
    models = {
        "vae": lambda: AutoencoderKLWan(**tiny_vae_config),
        "generator": lambda: WanTransformer3DModel(**tiny_transformer_config),
        "vggt": lambda: vggt,
        "stitch_vggt": lambda: StitchedDecoder.from_recon(vggt, stitch_candidates(vggt_config)[0],
                                                          nano_stitch_spec(vggt_config, tiny_vae_config)),
    }
    return install_tiny_components(tmp_path, {name: models[name] for name in components})


def test_missing_vggt_weights_name_the_stages_that_make_them(monkeypatch, tmp_path, tiny_vae_config,
                                                             tiny_transformer_config, tiny_vggt_config):
    from vist3a.components import load_components

    root = _install(tmp_path, ("vae", "generator"), tiny_vae_config, tiny_transformer_config, tiny_vggt_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    with pytest.raises(UserInputError) as err:
        load_components("nano-vggt", {"stitched"})
    message = str(err.value)
    assert "\n" not in message and "stitch_vggt" in message
    assert "vist3a nano train vggt" in message and "vist3a nano train stitch-vggt" in message
    # the AnySplat preset's own message is unchanged
    with pytest.raises(UserInputError, match="vist3a nano train all"):
        load_components("nano", {"stitched"})


def test_the_unshipped_uncut_vggt_says_how_to_do_without_it(monkeypatch, tmp_path, tiny_vae_config,
                                                            tiny_transformer_config, tiny_vggt_config):
    """The package ships ``stitch_vggt`` but not ``vggt`` (weights budget): asking for the original decoder says
    so, and how to go on (the stitched one alone, or train and install the uncut one)."""
    from vist3a.components import load_components

    root = _install(tmp_path, ("vae", "generator", "stitch_vggt"), tiny_vae_config, tiny_transformer_config,
                    tiny_vggt_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    assert load_components("nano-vggt", {"stitched"}).stitched is not None
    with pytest.raises(UserInputError) as err:
        load_components("nano-vggt", {"recon"})
    message = str(err.value)
    assert "\n" not in message and "does not ship" in message
    assert "--compare none" in message and "vist3a nano install OUT --component vggt" in message


def test_random_fallback_builds_a_nano_size_vggt(monkeypatch, tmp_path):
    from vist3a.components import load_components
    from vist3a.recon import VGGT

    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "empty"))
    parts = load_components("nano-vggt", {"recon", "stitched"}, random_fallback=True)
    assert isinstance(parts.recon, VGGT) and parts.stitched.config.recon_type == "vggt"
    assert parts.sources["weights"] == "random-init"


def test_generate_writes_a_pointmap_scene(monkeypatch, tmp_path, capsys, tiny_vae_config, tiny_transformer_config,
                                          tiny_vggt_config):
    import imageio.v3 as iio
    from plyfile import PlyData

    root = _install(tmp_path, ("vae", "generator", "stitch_vggt"), tiny_vae_config, tiny_transformer_config,
                    tiny_vggt_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    out = tmp_path / "p"
    with pytest.raises(SystemExit) as info:
        main(["generate", PROMPT, "--preset", "nano-vggt", "--out", str(out), "--steps", "2", "--device", "cpu",
              "--flythrough-frames", "3"])
    captured = capsys.readouterr()
    assert info.value.code in (0, None), captured.err
    assert "pointmaps of 13 views" in captured.out
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"points.ply", "cameras.json", "flythrough.mp4", "frames.mp4", "meta.json"} <= names
    assert {f"depth/{i:03d}.png" for i in range(13)} <= names and "scene.ply" not in names
    vertices = PlyData.read(str(out / "points.ply"))["vertex"]
    assert vertices.count == 13 * 112 * 112 // 2  # the confidence filter keeps the most confident half
    assert {"red", "green", "blue", "confidence"} <= set(vertices.data.dtype.names)
    cameras = json.loads((out / "cameras.json").read_text())
    assert len(cameras["frames"] if isinstance(cameras, dict) else cameras) == 13
    assert iio.imread(out / "flythrough.mp4").shape[0] == 3
    meta = json.loads((out / "meta.json").read_text())
    assert meta["settings"]["preset"] == "nano-vggt" and meta["num_points"] == vertices.count


def test_mirror_passes_decode_pointmaps_in_the_video_frame(monkeypatch, tmp_path, tiny_vae_config,
                                                          tiny_transformer_config, tiny_vggt_config):
    """``--direction mirror-select`` on a pointmap decoder: the real score runs end to end; a forced mirror pass
    comes back in the decoded video's frame (frames as decoded, depth, confidences and pointmaps the mirror pass's
    flipped back left-right, points mirrored across x = 0, cameras ``S w2c S``). The preset's default,
    ``--direction motion``, given a clockwise reading, decodes that same mirror pass alone and maps it back the same
    way."""
    import vist3a.recon.direction as direction
    from vist3a.cameras import to_homogeneous
    from vist3a.pipeline import Text2ScenePipeline
    from vist3a.recon.outputs import scene_pointmap

    root = _install(tmp_path, ("vae", "generator", "stitch_vggt"), tiny_vae_config, tiny_transformer_config,
                    tiny_vggt_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    pipe = Text2ScenePipeline.from_pretrained("nano-vggt", device="cpu")
    assert pipe.settings().direction == "motion"
    run = lambda rule="mirror-select": pipe(PROMPT, generator=torch.Generator().manual_seed(0), num_inference_steps=2,
                                            num_frames=5, progress=False, direction=rule)[0]
    scene = run()
    choice = scene.settings["direction_choice"]
    assert torch.isfinite(torch.tensor([choice["heldout_psnr"], choice["heldout_psnr_mirror"]])).all()

    passes = []

    def mirror_wins(model, out, frames, *args, **kwargs):  # decide the choice; the decoding stays real
        passes.append((out, frames))
        return torch.full((frames.shape[0],), 2.0 if len(passes) == 2 else 1.0)

    monkeypatch.setattr(direction, "heldout_consistency", mirror_wins)
    mirror = run()
    (out, frames), (out_m, frames_m) = passes
    assert mirror.settings["direction_choice"]["decoded"] == "mirror image" and torch.equal(frames_m, frames.flip(-1))
    assert torch.equal(mirror.frames, frames[0]) and torch.equal(mirror.frames, scene.frames)
    assert torch.equal(mirror.depth, out_m.depth[0].flip(-1))
    points_m, conf_m = scene_pointmap(out_m)  # the scene's points: the mirror pass's depth through its cameras
    assert torch.equal(mirror.points_conf, conf_m[0].flip(-1))
    assert torch.equal(mirror.points, points_m[0].flip(-2) * torch.tensor([-1.0, 1.0, 1.0]))
    flip = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))
    torch.testing.assert_close(mirror.w2c, flip @ to_homogeneous(out_m.cameras.w2c[0]) @ flip)
    assert not torch.equal(mirror.points, scene_pointmap(out)[0][0])  # the other pass: the test tells them apart

    monkeypatch.setattr(direction, "image_motion_turn", lambda frames: torch.tensor([-1.0]))
    moved = run("motion")
    assert moved.settings["direction_choice"] == {"decoded": "mirror image", "image_motion_turn": -1.0}
    assert torch.equal(moved.frames, scene.frames) and len(passes) == 2  # no render score ran
    for name in ("points", "points_conf", "depth", "w2c"):
        assert torch.equal(getattr(moved, name), getattr(mirror, name)), name


@pytest.mark.skipif(not nano_available(("vae", "generator", "stitch_vggt")),
                    reason="the nano VGGT weights are not installed in this checkout yet")
def test_shipped_nano_vggt_puts_the_red_points_left_of_the_blue_ones():
    """Issue 21's check on the shipped weights: in the generated point cloud (what points.ply holds), seen from the
    first predicted camera, the red points lie left of the blue ones."""
    from vist3a.evaluation.relations import LeftRightCase, judge_left_right_points
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano-vggt", device="cpu")
    scene = pipe(PROMPT, generator=torch.Generator().manual_seed(0), progress=False)[0]
    xyz, rgb, _ = scene.fused_points()
    case = LeftRightCase(PROMPT, "red", "blue", "left of")
    assert judge_left_right_points(xyz, rgb, scene.w2c[0], case) is True
