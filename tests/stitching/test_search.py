"""Layer search end to end (the CLI on tiny random models): report schema, argmin, fitted layers, resumability."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from vist3a.cli.main import run as run_cli
from vist3a.stitching.search import load_fitted_layer

ARGS = ["--preset", "tiny-random", "--num-clips", "3", "--num-frames", "5", "--vae-size", "16", "--recon-size", "28",
        "--holdout-fraction", "0.34", "--device", "cpu"]


def release_mse(layer_file, shards: list[dict], name: str, clips: list[int]) -> float:
    """MSE as the release's main() computes it, written out with plain torch ops: trilinear upsampling
    (align_corners) to (T_lat−1)·4+1 frames, conv3d with replicate padding, tokens as (i·W + j) rows."""
    weights = load_file(str(layer_file))
    total, count = 0.0, 0
    for shard in shards:
        for row, clip in enumerate(shard["clip_index"].tolist()):
            if clip not in clips:
                continue
            z = shard["latents"][row : row + 1].double()
            t = (z.shape[2] - 1) * 4 + 1
            z = F.interpolate(z, size=(t, *z.shape[3:]), mode="trilinear", align_corners=True)
            z = F.pad(z, (1, 1, 1, 1, 2, 2), mode="replicate")  # p2x1x1 of the derived spec
            pred = F.conv3d(z, weights["weight"].double(), weights["bias"].double())
            y = shard[name][row].double()  # [T, H*W, D]
            y = y.reshape(y.shape[0], *pred.shape[-2:], y.shape[-1]).permute(3, 0, 1, 2)
            total += float((pred[0] - y).square().sum())
            count += y.numel()
    return total / count


@pytest.fixture(scope="module")
def cli_search(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "search"
    assert run_cli(["stitch", "search", *ARGS, "--out", str(out)]) == 0
    return out


def test_report_schema_and_best_layer_is_argmin(cli_search):
    report = json.loads((cli_search / "report.json").read_text())
    layers = report["layers"]
    assert list(layers) == ["enc_blocks_1", "enc_blocks_2"]  # the tiny AnySplat has 2 DINO blocks
    for scores in layers.values():
        assert set(scores) == {"mse_fit", "mse_holdout"}
        assert scores["mse_fit"] > 0 and scores["mse_holdout"] > 0
    assert report["best_layer"] == min(layers, key=lambda n: layers[n]["mse_fit"])
    assert report["spec"] == "conv3d_k5x3x3_o32_s1x1x1_p2x1x1"
    assert report["num_fit_clips"] == 2 and report["num_holdout_clips"] == 1
    assert report["models"]["recon"] == "tiny-random"
    for name in ("report.md", "mse.png", "layers/enc_blocks_1.safetensors", "layers/enc_blocks_2.safetensors"):
        assert (cli_search / name).is_file(), name
    assert report["best_layer"] in (cli_search / "report.md").read_text()


def test_reported_mse_matches_an_independent_evaluation(cli_search):
    report = json.loads((cli_search / "report.json").read_text())
    shards = [load_file(str(p)) for p in sorted((cli_search / "features").glob("shard-*.safetensors"))]
    for name, scores in report["layers"].items():
        layer_file = cli_search / "layers" / f"{name}.safetensors"
        assert release_mse(layer_file, shards, name, [0, 1]) == pytest.approx(scores["mse_fit"], rel=1e-4)
        assert release_mse(layer_file, shards, name, [2]) == pytest.approx(scores["mse_holdout"], rel=1e-4)
    layer = load_fitted_layer(cli_search, report["best_layer"])
    assert str(layer.spec) == report["spec"]


def test_features_are_the_models_block_outputs(cli_search, tiny_models):
    """Stored enc_blocks_k tokens = the DINO block outputs (prefix dropped) on the stored clip, in fp16."""
    from vist3a.data import SyntheticClips, resize_and_crop

    shard = load_file(str(cli_search / "features" / "shard-00000.safetensors"))
    clip = SyntheticClips(3, num_frames=5, size=28, seed=0)[(0, 5)]
    frames = resize_and_crop(clip, 28).frames[None]
    model = tiny_models.recon
    agg = model.aggregator
    with torch.no_grad():
        _, blocks = agg.patch_embed(((frames - agg.image_mean) / agg.image_std).flatten(0, 1),
                                    return_block_outputs=True)
    prefix = 1 + agg.config.num_register_tokens
    for k in (1, 2):
        torch.testing.assert_close(shard[f"enc_blocks_{k}"][0].float(), blocks[k - 1][:, prefix:].half().float())
    assert shard["latents"].shape == (3, 16, 2, 2, 2) and shard["latents"].dtype == torch.float16


def test_rerun_resumes_without_recomputing(cli_search):
    shards = sorted((cli_search / "features").glob("shard-*.safetensors"))
    stamps = {p: p.stat().st_mtime_ns for p in shards}
    before = json.loads((cli_search / "report.json").read_text())
    assert run_cli(["stitch", "search", *ARGS, "--out", str(cli_search)]) == 0
    assert {p: p.stat().st_mtime_ns for p in shards} == stamps
    after = json.loads((cli_search / "report.json").read_text())["layers"]
    for name, scores in before["layers"].items():  # refitted from the same features (thread count may differ)
        assert after[name] == pytest.approx(scores, rel=1e-7)


def test_other_settings_in_the_same_folder_are_refused(cli_search, capsys):
    args = [a if a != "5" else "9" for a in ARGS]  # --num-frames 9
    assert run_cli(["stitch", "search", *args, "--out", str(cli_search)]) == 2
    assert "num_frames" in capsys.readouterr().err


def test_unknown_preset_and_layers_are_user_errors(tmp_path, capsys):
    assert run_cli(["stitch", "search", "--preset", "huge", "--out", str(tmp_path / "x")]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert run_cli(["stitch", "search", *ARGS, "--layers", "enc_blocks_9", "--out", str(tmp_path / "y")]) == 2
    assert "enc_blocks_9" in capsys.readouterr().err
