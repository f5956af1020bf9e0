"""Text -> 3D through a stitched MV-DUSt3R+ (tiny random models, CPU): the built-in preset, a preset naming a
user's stitched decoder folder, and the shipped ``wan-mvdust3r-1.3b`` preset's error without that folder."""

from __future__ import annotations

import json

import pytest
import torch
from plyfile import PlyData

from vist3a.errors import UserInputError
from vist3a.pipeline import Text2ScenePipeline


@pytest.fixture(scope="module")
def pipe() -> Text2ScenePipeline:
    return Text2ScenePipeline.from_pretrained("tiny-random-mvdust3r", device="cpu")


def test_scene_has_pixel_gaussians_pointmaps_and_cameras(pipe):
    scene = pipe("a red chair", seed=1, progress=False)[0]
    views = pipe.settings().num_frames
    height, width = scene.image_size
    assert pipe.decoder.config.recon_type == "mvdust3r" and pipe.decoder.recon.config.multi_path
    assert len(scene.gaussians) == views * height * width  # one Gaussian per pixel of path 0
    assert scene.points.shape == (views, height, width, 3) and scene.depth.shape == (views, height, width)
    torch.testing.assert_close(scene.w2c[0], torch.eye(4))  # world = the reference view's camera
    assert torch.allclose(scene.K[:, 0, 2], torch.full((views,), (width - 1) / 2.0))
    # Gaussian colours are the decoded frames, resized to the model input (the release renders with pixels)
    assert float(scene.gaussians.sh.abs().max()) < 0.5 / 0.2820948 + 1e-4


def test_preset_with_a_user_stitched_folder(tmp_path, pipe):
    from vist3a.cli.main import main

    saved = pipe.save_pretrained(tmp_path / "pipe")
    preset = json.loads((saved / "preset.json").read_text())
    preset.pop("builtin", None)
    preset.update(name="my-mvdust3r", generator={"repo_id": str(saved / "generator")},
                  stitched={"folder": str(saved / "decoder")})
    path = tmp_path / "my-mvdust3r.json"
    path.write_text(json.dumps(preset))
    with pytest.raises(SystemExit) as exc:
        main(["generate", "a red chair", "--preset", str(path), "--out", str(tmp_path / "out"), "--device", "cpu",
              "--seed", "1"])
    assert exc.value.code == 0
    assert (tmp_path / "out" / "scene.ply").is_file()
    assert PlyData.read(str(tmp_path / "out" / "points.ply"))["vertex"].count > 0
    direct = pipe("a red chair", seed=1, progress=False)[0]
    again = Text2ScenePipeline.from_pretrained(path, device="cpu")("a red chair", seed=1, progress=False)[0]
    torch.testing.assert_close(again.gaussians.means, direct.gaussians.means, atol=1e-4, rtol=1e-4)


def test_shipped_preset_names_the_missing_stitched_folder(monkeypatch):
    monkeypatch.delenv("VIST3A_MVDUST3R_STITCHED", raising=False)
    with pytest.raises(UserInputError, match=r"VIST3A_MVDUST3R_STITCHED.*stitch train"):
        Text2ScenePipeline.from_pretrained("wan-mvdust3r-1.3b", device="cpu")
