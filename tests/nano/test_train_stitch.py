"""Stitch stage: the project's layer search + stitched fine-tuning run on nano models, end to end."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from vist3a.nano import train_stitch as ts


def test_view_choices_must_fit_the_clips():
    with pytest.raises(ValueError, match="view_choices"):
        ts.StitchStageConfig(num_frames=5, view_choices=(5, 9))


@pytest.mark.slow
@pytest.mark.parametrize("canonical", [False, True])
def test_stitch_stage_end_to_end(tmp_path, tiny_caches, stage_defaults, tiny_vae_config, tiny_anysplat_config,
                                 canonical):
    from diffusers import AutoencoderKLWan

    from vist3a.nano.scene3d import rotation_span_deg
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import AnySplat
    from vist3a.stitching.decoder import StitchedDecoder

    torch.manual_seed(0)
    vae, recon = AutoencoderKLWan(**tiny_vae_config), AnySplat(**tiny_anysplat_config)
    # a budget already spent by the search: the fine-tuning stops cleanly after its first step, the stage goes on
    cfg = ts.StitchStageConfig(**stage_defaults, steps=2, batch_size=1, search_clips=4, view_choices=(5,),
                               lora_rank=2, render_backend="torch", time_budget_s=1e-3,
                               canonical_direction=canonical, loss_weights={"extrinsics": 10.0})
    run = ts.train_stitch(cfg, tmp_path / "stitch", "cpu", caches=tiny_caches, models=(vae, recon))
    train_config = json.loads((run / "train_config.json").read_text())
    assert train_config["steps_done"] == 1 and train_config["stopped_by"] == "time_budget"
    assert (run / "finetune" / "checkpoint-1").is_dir()
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    assert set(evaluation["search_mse"]) == {"enc_blocks_1", "enc_blocks_2"}
    best = min(evaluation["search_mse"], key=lambda k: evaluation["search_mse"][k]["mse_fit"])
    assert evaluation["search_best_layer"] == best == evaluation["layer"]
    assert (run / "search" / "report.json").is_file()
    terms = json.loads((run / "finetune" / "train_config.json").read_text())["loss_terms"]
    assert terms["extrinsics"]["weight"] == 10.0 and terms["depth"]["weight"] == 1.0
    # cameras against the world: the true span is the held-out clips' own (independent of either model)
    held = ts.canonical_cache(tiny_caches[1]) if canonical else tiny_caches[1]
    spans = [rotation_span_deg(held.batch([i]).w2c[0]) for i in range(len(held))]
    assert evaluation["heldout_span_gt_deg"] == pytest.approx(sum(spans) / len(spans), abs=0.1)  # float32 vs 64
    for key in ("stitched_rotation_median_deg", "teacher_rotation_median_deg", "rotation_diff_median_deg",
                "stitched_span_pred_deg", "teacher_span_pred_deg"):
        assert 0.0 <= evaluation[f"heldout_{key}"] <= 180.0, key
    decoder = load_component_from(run, "stitch")
    assert isinstance(decoder, StitchedDecoder) and decoder.layer == best and decoder.config.lora_rank == 0
    # the saved decoder decodes latents of the nano VAE into AnySplat outputs for every frame
    frames = tiny_caches[1].batch([0]).frames
    with torch.no_grad():
        latents = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mean
        out = decoder(latents, frames)
    assert out.depth.shape == (1, 5, 28, 28)
    if canonical:
        return
    # continuing the run: no search, the saved decoder is the start (lr ~0: it comes back unchanged)
    more = ts.train_stitch(replace(cfg, init=str(run), lr=1e-12, steps=1, time_budget_s=None),
                           tmp_path / "more", "cpu", caches=tiny_caches, models=(vae, recon))
    evaluation = json.loads((more / "eval.json").read_text())
    assert not (more / "search").exists() and "search_mse" not in evaluation
    assert evaluation["init"] == str(run / "model") and evaluation["layer"] == best
    assert evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    again = load_component_from(more, "stitch").state_dict()
    for key, value in decoder.state_dict().items():
        torch.testing.assert_close(again[key], value, rtol=0, atol=1e-6, msg=key)


def test_teacher_comes_from_the_recon_folder(tmp_path, tiny_vggt_config):
    from vist3a.errors import UserInputError
    from vist3a.recon import VGGT

    VGGT(**tiny_vggt_config).save_pretrained(tmp_path / "vggt" / "model")
    assert ts.StitchStageConfig(recon=str(tmp_path / "vggt")).teacher_component() == "vggt"
    assert ts.StitchStageConfig().teacher_component() == "recon"
    assert ts.StitchVGGTStageConfig().teacher_component() == "vggt"
    with pytest.raises(UserInputError, match="no trained AnySplat or VGGT"):
        ts.StitchStageConfig(recon=str(tmp_path / "vggt" / "model" / "missing")).teacher_component()
    with pytest.raises(ValueError, match="teacher"):
        ts.StitchStageConfig(teacher="dust3r")


def test_mvdust3r_teacher_comes_from_its_folder_or_its_stage(tmp_path, tiny_mvdust3r_config):
    from vist3a.recon import MVDust3r

    MVDust3r(**tiny_mvdust3r_config).save_pretrained(tmp_path / "mvdust3r" / "model")
    assert ts.StitchStageConfig(recon=str(tmp_path / "mvdust3r")).teacher_component() == "mvdust3r"
    assert ts.StitchMVDust3rStageConfig().teacher_component() == "mvdust3r"


def test_stitch_stage_with_a_vggt_teacher(tmp_path, tiny_caches, stage_defaults, tiny_vae_config, tiny_vggt_config):
    """The stitch stage on a VGGT: search, fine-tuning and the pointmap evaluation against the world's ground truth."""
    from diffusers import AutoencoderKLWan

    from vist3a.nano.recipes import get_stage
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import VGGT
    from vist3a.stitching.decoder import StitchedDecoder

    torch.manual_seed(0)
    vae, recon = AutoencoderKLWan(**tiny_vae_config), VGGT(**tiny_vggt_config)
    stage = get_stage("stitch-vggt")
    cfg = stage.config_cls(**stage_defaults, steps=2, batch_size=1, search_clips=4, view_choices=(5,), lora_rank=2,
                           eval_max_points=64, canonical_direction=True)
    run = stage.train(cfg, tmp_path / "stitch_vggt", "cpu", caches=tiny_caches, models=(vae, recon))
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "stitch_vggt" and record["steps_done"] == 2
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["teacher"] == "vggt" and evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    for name in ("stitched", "teacher"):
        for key in ("depth_abs_rel", "points_acc", "points_comp", "points_nc", "rra@5", "auc@30",
                    "rotation_error_median_deg"):
            assert isinstance(evaluation[f"heldout_{name}_{key}"], float), (name, key)
    assert "heldout_stitched_points_acc_fp16" in evaluation and evaluation["heldout_points_rel_diff"] >= 0
    decoder = load_component_from(run, "stitch_vggt")
    assert isinstance(decoder, StitchedDecoder) and decoder.config.recon_type == "vggt"
    with pytest.raises(Exception, match="no trained StitchedDecoder"):
        load_component_from(run, "stitch")  # an AnySplat slot never takes a stitched VGGT
    frames = tiny_caches[1].batch([0]).frames
    with torch.no_grad():
        latents = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mean
        out = decoder(latents)  # a VGGT needs no frames
    assert out.world_points.shape == (1, 5, 28, 28, 3) and out.cameras.w2c.shape == (1, 5, 3, 4)


def test_cli_stitches_a_vae_of_another_family(tmp_path, capsys, tiny_anysplat_config):
    """Issue 18 at nano scale: `vist3a nano train vae --set family=hunyuanvideo`, then `vist3a nano train stitch
    --vae <that run> --recon <an AnySplat run>` on the world's clips: the layer search, fine-tuning and the held-out
    evaluation run on the HunyuanVideo latents, and the report and eval.json name the VAE family."""
    from vist3a.cli.main import main
    from vist3a.nano.training import save_component
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import AnySplat

    torch.manual_seed(0)
    save_component(AnySplat(**tiny_anysplat_config), tmp_path / "runs" / "recon", torch.float32)
    tiny = ["--device", "cpu", "--quiet", "--steps", "1", "--batch-size", "1", "--set", "size=16",
            "--set", "num_frames=5", "--set", "num_train_clips=4", "--set", "num_eval_clips=1",
            "--set", "data_workers=0", "--set", "eval_reserve_s=0"]
    hunyuan = ["--set", "family=hunyuan", "--set", "model.block_out_channels=[8, 8, 16, 16]",
               "--set", "model.norm_num_groups=4", "--set", "model.mid_block_add_attention=false",
               "--set", "stats_clips=4"]
    for argv in (["nano", "train", "vae", "--out", str(tmp_path / "hy"), *tiny, *hunyuan],
                 ["nano", "train", "stitch", "--out", str(tmp_path / "st"), "--vae", str(tmp_path / "hy" / "vae"),
                  "--recon", str(tmp_path / "runs" / "recon"), *tiny, "--set", "search_clips=4",
                  "--set", "view_choices=[5]", "--set", "lora_rank=2", "--set", "render_backend=torch"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 0, capsys.readouterr().err
    assert type(load_component_from(tmp_path / "hy" / "vae", "vae")).__name__ == "AutoencoderKLHunyuanVideo"
    run = tmp_path / "st" / "stitch"
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["vae_family"] == "hunyuanvideo" and evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    assert set(evaluation["search_mse"]) == {"enc_blocks_1", "enc_blocks_2"}
    for name in ("stitched", "teacher"):
        assert all(isinstance(evaluation[f"heldout_{name}_{key}"], float) for key in ("psnr", "novel_psnr_pred"))
    report = json.loads((run / "search" / "report.json").read_text())
    assert report["vae"]["family"] == "hunyuanvideo" and report["vae"]["temporal_factor"] == 4
    decoder = load_component_from(run, "stitch")
    assert decoder.layer == evaluation["layer"]
    # benchmarks/nano_two_vaes.py tabulates the run: min search MSE, the VAE's own PSNR, stitched novel-view PSNR
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "nano_two_vaes.py"
    spec = importlib.util.spec_from_file_location("nano_two_vaes", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.row(tmp_path / "st")
    vae_eval = json.loads((tmp_path / "hy" / "vae" / "eval.json").read_text())
    assert row["vae_family"] == "hunyuanvideo" and row["vae_heldout_psnr"] == vae_eval["heldout_psnr"]
    assert row["min_mse_fit"] == min(v["mse_fit"] for v in evaluation["search_mse"].values())
    assert row["stitched_novel_psnr_pred"] == evaluation["heldout_stitched_novel_psnr_pred"]
    assert "hunyuanvideo" in module.table([row]) and "nothing to compare" in module.verdict([row])


@pytest.mark.slow
def test_stitch_stage_with_an_mvdust3r_teacher(tmp_path, tiny_caches, stage_defaults, tiny_vae_config,
                                               tiny_mvdust3r_config):
    """The stitch-mvdust3r stage: the layer search over the patch embedding and the encoder blocks, fine-tuning on
    the MV-DUSt3R adapter's distillation terms, and the pointmap evaluation (cameras recovered from the pointmaps)
    of stitched and teacher against the world's ground truth."""
    from diffusers import AutoencoderKLWan

    from vist3a.nano.recipes import get_stage
    from vist3a.nano.weights import load_component_from
    from vist3a.recon import MVDust3r
    from vist3a.stitching.decoder import StitchedDecoder

    torch.manual_seed(0)
    vae, recon = AutoencoderKLWan(**tiny_vae_config), MVDust3r(**tiny_mvdust3r_config)
    stage = get_stage("stitch-mvdust3r")
    cfg = stage.config_cls(**stage_defaults, steps=2, batch_size=1, search_clips=4, view_choices=(5,), lora_rank=2,
                           eval_max_points=64)
    run = stage.train(cfg, tmp_path / "stitch_mvdust3r", "cpu", caches=tiny_caches, models=(vae, recon))
    record = json.loads((run / "train_config.json").read_text())
    assert record["stage"] == "stitch_mvdust3r" and record["steps_done"] == 2
    evaluation = json.loads((run / "eval.json").read_text())
    assert evaluation["teacher"] == "mvdust3r" and evaluation["spec"] == "conv3d_k5x3x3_o16_s1x1x1_p2x1x1"
    assert set(evaluation["search_mse"]) == {"enc_blocks_0", "enc_blocks_1", "enc_blocks_2"}
    for name in ("stitched", "teacher"):
        for key in ("depth_abs_rel", "points_acc", "points_comp", "rra@5", "rotation_error_median_deg"):
            assert isinstance(evaluation[f"heldout_{name}_{key}"], float), (name, key)
    terms = json.loads((run / "finetune" / "train_config.json").read_text())["loss_terms"]
    assert {"points", "conf", "gaussian_opacity"} <= set(terms)
    decoder = load_component_from(run, "stitch_mvdust3r")
    assert isinstance(decoder, StitchedDecoder) and decoder.config.recon_type == "mvdust3r"
    frames = tiny_caches[1].batch([0]).frames
    with torch.no_grad():
        latents = vae.encode(frames.permute(0, 2, 1, 3, 4) * 2 - 1).latent_dist.mean
        out = decoder(latents, frames)  # its point heads read the frames
    assert out.world_points.shape == (1, 5, 28, 28, 3) and out.gaussians is not None
