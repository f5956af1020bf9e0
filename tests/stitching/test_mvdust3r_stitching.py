"""MV-DUSt3R behind the stitching adapter: cut points, the stitched forward, spec/size rules, search and training."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from vist3a.recon import MVDust3r, random_tiny_mvdust3r
from vist3a.stitching.adapters import MVDust3rAdapter, adapter_for_model, layer_name
from vist3a.stitching.decoder import StitchedDecoder


@pytest.fixture(scope="module")
def model():
    return random_tiny_mvdust3r("mvdust3r-plus", seed=1, n_ref=2)


def test_candidates_are_patch_embedding_and_every_block(model):
    adapter = adapter_for_model(model)
    assert isinstance(adapter, MVDust3rAdapter)
    assert adapter.candidate_layers(model) == ["enc_blocks_0", "enc_blocks_1", "enc_blocks_2"]
    frames = torch.rand(1, 3, 3, 32, 48)
    feats = adapter.candidate_features(model, frames)
    with torch.no_grad():
        tokens = model.embed(frames * 2 - 1)
        _, blocks = model.run_encoder_blocks(tokens, (2, 3), capture=True)
    assert feats["enc_blocks_0"].shape == (1, 3, 6, 32)
    torch.testing.assert_close(feats["enc_blocks_0"].flatten(0, 1), tokens)
    torch.testing.assert_close(feats["enc_blocks_2"].flatten(0, 1), blocks[1])


@pytest.mark.parametrize("k", [0, 1, 2])
def test_stitched_forward_from_true_tokens_is_the_original_forward(model, k):
    """Feeding the cut model the uncut model's own tokens at the cut reproduces its forward (non-square grid)."""
    adapter = adapter_for_model(model)
    frames = torch.rand(2, 3, 3, 32, 48)
    tokens = adapter.candidate_features(model, frames, [layer_name(k)])[layer_name(k)].flatten(0, 1)
    decoder = StitchedDecoder.from_recon(model, layer_name(k), "conv3d_k1x1x1_o32_s1x1x1_p0x0x0")
    assert len(decoder.recon.enc_blocks) == model.config.enc_depth - k and not hasattr(decoder.recon, "patch_embed")
    with torch.no_grad():
        stitched = adapter.run_tail(decoder.recon, tokens, 0, (2, 3), 3, frames)
        original = adapter.forward_original(model, frames)
    for key in ("points", "conf", "opacity", "scale", "rotation", "rgb"):
        torch.testing.assert_close(getattr(stitched, key), getattr(original, key), rtol=1e-5, atol=1e-5)
    targets = adapter.distill_targets(stitched)
    assert set(targets) == set(adapter.loss_terms()) and adapter.loss_terms()["conf"].weight == 1e-2


def test_paper_spec_and_default_sizes():
    adapter = MVDust3rAdapter()
    with torch.device("meta"):
        full = MVDust3r(multi_path=True)
    # VAE 384 px -> 48 latent; 224 px -> 14x14 tokens: the paper's layer (48 - 7) // 3 + 1 = 14
    assert adapter.default_recon_size(full, 48, 448) == 224
    assert adapter.stitch_spec(full, 48, 224) == "conv3d_k5x7x7_o1024_s1x3x3_p2x0x0"
    assert adapter.stitch_spec(full, 64, 224) is None  # other sizes: the default integer-stride rule
    assert adapter.default_recon_size(full, 8, 112) == 128  # 8x8 grid (divides the latent), closest to 112 px


def _run(args):
    from vist3a.cli.main import main

    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 0


def test_recon_by_name_with_a_small_preset_is_a_tiny_random_model():
    from vist3a.stitching.models import resolve_stitch_models

    models = resolve_stitch_models("tiny-random", recon="mvdust3r-plus", vae_size=32)
    assert isinstance(models.recon, MVDust3r) and models.recon.config.multi_path
    assert models.recon.config.enc_embed_dim == 32 and "random" in models.sources["recon"]
    # 4x4 latent: token grids 1, 2 or 4 divide it; 4 x 16 px = 64 is closest to the preset's 56 px
    assert models.latent_hw == (4, 4) and models.recon_size == 64
    assert models.spec == "conv3d_k5x3x3_o32_s1x1x1_p2x1x1"


def test_cli_search_train_and_resume(tmp_path):
    common = ["--preset", "tiny-random", "--recon", "tiny-random-mvdust3r", "--vae-size", "32", "--device", "cpu"]
    _run(["stitch", "search", *common, "--num-clips", "4", "--out", str(tmp_path / "search")])
    report = json.loads((tmp_path / "search" / "report.json").read_text())
    assert sorted(report["layers"]) == ["enc_blocks_0", "enc_blocks_1", "enc_blocks_2"]
    assert all(v["mse_fit"] >= 0 for v in report["layers"].values())
    train = ["stitch", "train", *common, "--init", str(tmp_path / "search"), "--max-steps", "2", "--num-clips", "2",
             "--lora-rank", "2", "--checkpoint-every", "1"]
    _run([*train, "--out", str(tmp_path / "full")])
    _run([*train, "--out", str(tmp_path / "resumed"), "--time-budget", "0.001"])  # stops after step 1
    _run([*train, "--out", str(tmp_path / "resumed"), "--resume", str(tmp_path / "resumed" / "checkpoint-1")])

    def losses(run):
        with (tmp_path / run / "losses.csv").open() as f:
            return [(int(r["step"]), float(r["loss"])) for r in csv.DictReader(f)]

    assert (tmp_path / "resumed" / "checkpoint-1").is_dir()
    assert losses("resumed") == losses("full") and len(losses("full")) == 2
    decoder = StitchedDecoder.from_pretrained(tmp_path / "full" / "final")
    assert decoder.config.recon_type == "mvdust3r" and decoder.layer == report["best_layer"]
