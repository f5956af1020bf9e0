"""Every video-VAE family x every recon model through ``vist3a stitch search|train --vae ... --recon ...``.

Tiny random VAEs of each diffusers class (48-channel Wan 2.2, 4-channel SVD with one latent frame per video
frame, 8n+1-frame LTX-Video with a 32x latent) prove that nothing in stitching assumes Wan 2.1's 16 channels, 8x/4x
factors or 4n+1 frames. Sizes: 32 px VAE input, 28 px model input (a 2x2 token grid), so the 8x families stitch with
stride 2, Wan 2.2 (16x) with stride 1, and LTX-Video's 1x1 latent is resampled to 2x2 first.
"""

from __future__ import annotations

import json

import pytest
import torch.nn.functional as F
from safetensors.torch import load_file

from vist3a.cli.main import run as run_cli
from vist3a.stitching.features import FeatureStore
from vist3a.video.vae_adapters import VAE_ADAPTERS, tiny_vae, vae_adapter

SIZES = ["--vae-size", "32", "--recon-size", "28", "--device", "cpu"]
FAST = [("wan2.2", "anysplat"), ("svd", "vggt"), ("ltx", "anysplat")]
ALL = [(family, recon) for family in VAE_ADAPTERS for recon in ("anysplat", "vggt")]


def search(out, vae: str, recon: str) -> dict:
    args = ["stitch", "search", "--preset", "tiny-random", "--vae", vae, "--recon", recon, "--num-clips", "2",
            "--holdout-fraction", "0.5", *SIZES, "--out", str(out)]
    assert run_cli(args) == 0
    return json.loads((out / "report.json").read_text())


def independent_mse(out, report: dict, family: str, clips: list[int]) -> float:
    """The fitted layer's MSE with plain torch ops: resample the latent to (frames, resample_hw or its own size),
    replicate-pad, conv3d, compare with the stored tokens."""
    adapter = vae_adapter(tiny_vae(family))
    weights = load_file(str(out / "layers" / f"{report['best_layer']}.safetensors"))
    resample = report["config"]["resample_hw"]
    total, count = 0.0, 0
    for latent, tokens in FeatureStore(out).clips(set(clips), [report["best_layer"]]):
        z = latent.double()
        size = (adapter.frames_for_latents(z.shape[2]), *(resample or z.shape[3:]))
        z = F.pad(F.interpolate(z, size=size, mode="trilinear", align_corners=True), (1, 1, 1, 1, 2, 2),
                  mode="replicate")
        stride = report["spec"].split("_s1x")[1].split("x")[0]
        pred = F.conv3d(z, weights["weight"].double(), weights["bias"].double(), stride=(1, int(stride), int(stride)))
        y = tokens[report["best_layer"]][0].double()  # [T, P, D]
        y = y.reshape(y.shape[0], *pred.shape[-2:], y.shape[-1]).permute(3, 0, 1, 2)
        total += float((pred[0] - y).square().sum())
        count += y.numel()
    return total / count


def check_search(out, report: dict, family: str, recon: str) -> None:
    adapter = vae_adapter(tiny_vae(family))
    assert report["vae"]["family"] == family and report["vae"]["latent_channels"] == adapter.latent_channels
    assert report["config"]["recon_type"] == recon
    assert report["config"]["temporal_factor"] == adapter.temporal_factor
    assert family in (out / "report.md").read_text()
    store = FeatureStore(out)
    assert store.settings.vae == family
    latent, _ = next(store.clips(layers=[]))
    frames = store.settings.num_frames
    assert tuple(latent.shape[1:]) == adapter.latent_shape(frames, 32, 32)
    weight = load_file(str(out / "layers" / f"{report['best_layer']}.safetensors"))["weight"]
    assert weight.shape[1] == adapter.latent_channels
    mse = independent_mse(out, report, family, [0])
    assert report["layers"][report["best_layer"]]["mse_fit"] == pytest.approx(mse, rel=1e-4)


def train_and_resume(search_dir, run) -> None:
    """Train one step, resume to two; the VAE and recon model default to those of the search."""
    args = ["stitch", "train", "--preset", "tiny-random", "--init", str(search_dir), "--checkpoint-every", "1",
            "--num-clips", "2", "--lora-rank", "2", *SIZES, "--out", str(run)]
    family = json.loads((search_dir / "report.json").read_text())["vae"]["family"]
    recon = json.loads((search_dir / "report.json").read_text())["config"]["recon_type"]
    assert run_cli(args + ["--max-steps", "1"]) == 0
    assert run_cli(args + ["--max-steps", "2", "--resume", str(run / "checkpoint-1")]) == 0
    assert (run / "checkpoint-2" / "meta.json").is_file()
    config = json.loads((run / "final" / "config.json").read_text())
    assert config["latent_channels"] == vae_adapter(tiny_vae(family)).latent_channels
    assert config["recon_type"] == recon
    sources = json.loads((run / "train_config.json").read_text())["sources"]
    assert sources["vae_family"] == family
    rows = (run / "losses.csv").read_text().strip().splitlines()
    assert len(rows) == 3  # header + 2 steps, the resumed one appended


@pytest.mark.parametrize(("family", "recon"), FAST)
def test_search_and_train_on_other_vaes(tmp_path, family, recon):
    report = search(tmp_path / "search", family, recon)
    check_search(tmp_path / "search", report, family, recon)
    if family == "ltx":  # 32 px -> a 1x1 latent, resampled onto the 2x2 token grid
        assert report["config"]["resample_hw"] == [2, 2] and report["spec"].endswith("_s1x1x1_p2x1x1")
        assert FeatureStore(tmp_path / "search").settings.num_frames == 9  # the preset's 5 -> the 8n+1 rule
    train_and_resume(tmp_path / "search", tmp_path / "run")


@pytest.mark.slow
@pytest.mark.parametrize(("family", "recon"), [case for case in ALL if case not in FAST])
def test_every_vae_and_recon(tmp_path, family, recon):
    report = search(tmp_path / "search", family, recon)
    check_search(tmp_path / "search", report, family, recon)
    train_and_resume(tmp_path / "search", tmp_path / "run")


def test_vae_folder_and_wrong_vae_for_the_init(tmp_path, capsys):
    tiny_vae("cogvideox").save_pretrained(tmp_path / "cog" / "vae")
    report = search(tmp_path / "search", str(tmp_path / "cog"), "anysplat")
    assert report["vae"]["family"] == "cogvideox" and report["models"]["vae"] == str(tmp_path / "cog")
    args = ["stitch", "train", "--preset", "tiny-random", "--init", str(tmp_path / "search"), "--max-steps", "1",
            "--num-clips", "1", "--lora-rank", "2", *SIZES, "--vae", "wan2.2", "--out", str(tmp_path / "run")]
    capsys.readouterr()
    assert run_cli(args) == 2
    assert "pass the --vae its layer search used" in capsys.readouterr().err


def test_image_vae_is_a_user_error(tmp_path, capsys):
    from diffusers import AutoencoderKL

    AutoencoderKL(block_out_channels=(32,), norm_num_groups=32).save_pretrained(tmp_path / "sd" / "vae")
    args = ["stitch", "search", "--preset", "tiny-random", "--vae", str(tmp_path / "sd"), "--num-clips", "2",
            *SIZES, "--out", str(tmp_path / "out")]
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert "image VAE (AutoencoderKL)" in err and "Traceback" not in err


def test_resampled_geometry_for_released_sizes():
    """LTX-Video at the release sizes: a 16x16 latent (512 px / 32) against AnySplat's 32x32 grid (448 px / 14)."""
    from vist3a.recon import random_tiny_model
    from vist3a.stitching.adapters import adapter_for_model
    from vist3a.stitching.models import stitch_geometry

    recon = random_tiny_model("anysplat")
    adapter = adapter_for_model(recon)
    for family, vae_size, expected in (("ltx", 512, ((32, 32), 1)), ("wan2.2", 512, (None, 1)),
                                       ("wan2.1", 512, (None, 2)), ("svd", 640, ((96, 96), 3))):
        spec, resample = stitch_geometry(recon, adapter, tiny_vae(family), vae_size, 448)
        assert (resample, int(spec.split("_s1x")[1].split("x")[0])) == expected, family
