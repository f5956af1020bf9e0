"""The ``nano-mvdust3r`` preset (issue 21): nano generator + VAE + the stitched nano MV-DUSt3R from the nano weights
folder. A weights folder without them gets one line saying how to make them; with tiny random weights installed
into a temporary weights folder, ``vist3a generate`` writes the pointmap scene, the Gaussians and the cameras; the
shipped weights put the red points left of the blue ones."""

from __future__ import annotations

import json

import pytest
import torch
from nano_helpers import install_tiny_components

from vist3a.cli.main import run
from vist3a.errors import UserInputError
from vist3a.nano.weights import nano_available

PROMPT = "a red cube left of a blue sphere"


def _install(tmp_path, components, tiny_vae_config, tiny_transformer_config):
    """Tiny random nano components (an MV-DUSt3R stitched at its first candidate) installed into
    ``tmp_path/weights``."""
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vist3a.nano.configs import nano_stitch_spec, stitch_candidates
    from vist3a.recon import random_tiny_mvdust3r
    from vist3a.stitching.decoder import StitchedDecoder

    # the tiny random model with its points in front of the cameras; patch 14: the 8x8 latent -> 112 px, as nano
    mvdust3r = random_tiny_mvdust3r("mvdust3r", patch_size=14, img_size=112, gs_mlp_dim=8, skip_dim=4)
    config = dict(mvdust3r.config)
    torch.manual_seed(0)
    models = {
        "vae": lambda: AutoencoderKLWan(**tiny_vae_config),
        "generator": lambda: WanTransformer3DModel(**tiny_transformer_config),
        "mvdust3r": lambda: mvdust3r,
        "stitch_mvdust3r": lambda: StitchedDecoder.from_recon(mvdust3r, stitch_candidates(config)[1],
                                                              nano_stitch_spec(config, tiny_vae_config)),
    }
    return install_tiny_components(tmp_path, {name: models[name] for name in components})


def test_missing_weights_are_one_line_naming_the_stages(monkeypatch, tmp_path, capsys, tiny_vae_config,
                                                        tiny_transformer_config):
    from vist3a.components import load_components

    root = _install(tmp_path, ("vae", "generator"), tiny_vae_config, tiny_transformer_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    with pytest.raises(UserInputError) as err:
        load_components("nano-mvdust3r", {"stitched"})
    message = str(err.value)
    assert "\n" not in message and "stitch_mvdust3r" in message and "MV-DUSt3R" in message
    assert "vist3a nano train mvdust3r" in message and "vist3a nano train stitch-mvdust3r" in message
    assert "vist3a nano install OUT" in message
    # through the command: exit 2 and that one line
    code = run(["generate", PROMPT, "--preset", "nano-mvdust3r", "--out", str(tmp_path / "p"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.strip().count("\n") == 0
    assert "vist3a nano train stitch-mvdust3r" in err and "Traceback" not in err


def test_the_uncut_model_is_not_shipped(monkeypatch, tmp_path, tiny_vae_config, tiny_transformer_config):
    from vist3a.components import load_components

    root = _install(tmp_path, ("vae", "generator", "stitch_mvdust3r"), tiny_vae_config, tiny_transformer_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    assert load_components("nano-mvdust3r", {"stitched"}).stitched.config.recon_type == "mvdust3r"
    with pytest.raises(UserInputError) as err:
        load_components("nano-mvdust3r", {"recon"})
    message = str(err.value)
    assert "\n" not in message and "does not ship" in message
    assert "vist3a nano install OUT --component mvdust3r" in message


def test_random_fallback_builds_a_nano_size_mvdust3r(monkeypatch, tmp_path):
    from vist3a.components import load_components
    from vist3a.nano.configs import nano_mvdust3r_config
    from vist3a.recon import MVDust3r

    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(tmp_path / "empty"))
    parts = load_components("nano-mvdust3r", {"recon", "stitched"}, random_fallback=True)
    assert isinstance(parts.recon, MVDust3r) and parts.stitched.config.recon_type == "mvdust3r"
    assert parts.recon.config.enc_embed_dim == nano_mvdust3r_config()["enc_embed_dim"]
    assert parts.sources["weights"] == "random-init"


@pytest.mark.slow
def test_generate_writes_points_gaussians_and_cameras(monkeypatch, tmp_path, capsys, tiny_vae_config,
                                                      tiny_transformer_config):
    from plyfile import PlyData

    root = _install(tmp_path, ("vae", "generator", "stitch_mvdust3r"), tiny_vae_config, tiny_transformer_config)
    monkeypatch.setenv("VIST3A_NANO_WEIGHTS", str(root))
    out = tmp_path / "p"
    code = run(["generate", PROMPT, "--preset", "nano-mvdust3r", "--out", str(out), "--steps", "2", "--device",
                "cpu", "--flythrough-frames", "3"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert {"points.ply", "scene.ply", "cameras.json", "flythrough.mp4", "frames.mp4", "meta.json"} <= names
    points = PlyData.read(str(out / "points.ply"))["vertex"]
    assert points.count == 13 * 112 * 112 // 2 and "confidence" in points.data.dtype.names
    assert PlyData.read(str(out / "scene.ply"))["vertex"].count == 13 * 112 * 112  # a Gaussian per pixel
    cameras = json.loads((out / "cameras.json").read_text())
    assert len(cameras["frames"] if isinstance(cameras, dict) else cameras) == 13
    assert json.loads((out / "meta.json").read_text())["settings"]["preset"] == "nano-mvdust3r"


@pytest.mark.skipif(not nano_available(("vae", "generator", "stitch_mvdust3r")),
                    reason="the nano MV-DUSt3R weights are not installed in this checkout yet")
def test_shipped_nano_mvdust3r_puts_the_red_points_left_of_the_blue_ones():
    """Issue 21's check on the shipped weights, as for nano-vggt: in the generated point cloud (what points.ply
    holds), seen from the first recovered camera, the red points lie left of the blue ones."""
    from vist3a.evaluation.relations import LeftRightCase, judge_left_right_points
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("nano-mvdust3r", device="cpu")
    scene = pipe(PROMPT, generator=torch.Generator().manual_seed(0), progress=False)[0]
    xyz, rgb, _ = scene.fused_points()
    case = LeftRightCase(PROMPT, "red", "blue", "left of")
    assert judge_left_right_points(xyz, rgb, scene.w2c[0], case) is True
