"""Per-scene refinement, the ``vist3a refine`` / ``vist3a eval`` commands' user errors, and the metric models'
formulas on tiny random instances of their classes (nothing downloaded)."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.cameras import look_at_w2c
from vist3a.cli.main import main
from vist3a.errors import UserInputError
from vist3a.evaluation.refine import RefineSettings, refine_gaussians
from vist3a.scene import Scene, save_scene
from vist3a.splats import Gaussians, load_ply, render

SIZE = 24


def run_cli(args: list[str]) -> int:
    try:
        main(args)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def small_scene() -> tuple[Gaussians, torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    n = 200
    g = Gaussians.from_rgb((torch.rand(n, 3, generator=gen) - 0.5), torch.rand(n, 3, generator=gen),
                           torch.full((n, 3), 0.08), torch.full((n,), 0.9))
    eyes = [torch.tensor([3.0 * float(torch.sin(a)), 0.3, -3.0 * float(torch.cos(a))]) for a in torch.linspace(0, 1, 5)]
    w2c = torch.stack([look_at_w2c(e, torch.zeros(3), torch.tensor([0.0, -1.0, 0.0])) for e in eyes])
    K = torch.tensor([[22.0, 0.0, 11.5], [0.0, 22.0, 11.5], [0.0, 0.0, 1.0]]).expand(5, 3, 3).clone()
    frames = render(g, w2c, K, SIZE, SIZE, backend="torch").colors.clamp(0, 1).permute(0, 3, 1, 2)
    return g, frames, w2c, K


@pytest.mark.slow
def test_refinement_recovers_perturbed_colours():
    g, frames, w2c, K = small_scene()
    gen = torch.Generator().manual_seed(1)
    spoiled = Gaussians(means=g.means, quats=g.quats, scales=g.scales, opacities=g.opacities,
                        sh=g.sh + 0.5 * torch.randn(g.sh.shape, generator=gen))
    result = refine_gaussians(spoiled, frames, w2c, K, RefineSettings(steps=15, lr_sh_dc=0.1), backend="torch")
    assert result.psnr_after > result.psnr_before + 3.0
    assert len(result.gaussians) == len(g) and not result.gaussians.means.requires_grad


def test_refine_command_writes_beside_the_original(tmp_path, capsys):
    g, frames, w2c, K = small_scene()
    folder = tmp_path / "scene"
    save_scene(Scene("p", frames, w2c, K, (SIZE, SIZE), gaussians=g), folder, flythrough_frames=0)
    before = (folder / "scene.ply").read_bytes()
    assert run_cli(["refine", str(folder), "--steps", "3", "--device", "cpu", "--backend", "torch"]) == 0
    assert "PSNR vs decoded frames" in capsys.readouterr().out
    assert (folder / "scene.ply").read_bytes() == before
    assert len(load_ply(folder / "scene_refined.ply")) == len(g)
    assert json.loads((folder / "scene_refined.json").read_text())["steps"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["refine", "/nonexistent/scene"], "not a vist3a scene folder"),
        (["eval", "text3d", "--suite", "nope", "--out", "OUT"], "neither a suite name"),
        (["eval", "nvs", "--data", "eth3d:/x"], "no native eth3d loader"),
        (["eval", "nvs", "--data", "nano", "--context", "8"], "4k+1"),
        (["eval", "geometry", "--frames", "12"], "4k+1"),
        (["eval", "text3d", "--suite", "t3bench", "--metrics", "fid", "--preset", "nano", "--limit", "1",
          "--out", "OUT"], "unknown metrics"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys, args, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(args) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def tiny_clip(tmp_path):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 77},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=8,
    )
    torch.manual_seed(0)
    return transformers.CLIPModel(config).eval()


class HashTokenizer:
    """Stands in for CLIP's tokenizer: words hashed into the tiny vocabulary."""

    def __call__(self, prompts, padding=True, truncation=True, max_length=77, return_tensors="pt"):
        import zlib

        from transformers import BatchEncoding

        ids = [[1] + [2 + zlib.crc32(w.encode()) % 90 for w in p.split()][: max_length - 2] + [98] for p in prompts]
        width = max(map(len, ids))
        mask = [[1] * len(i) + [0] * (width - len(i)) for i in ids]
        ids = [i + [0] * (width - len(i)) for i in ids]
        return BatchEncoding({"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)})


def test_clip_score_is_100_times_the_clamped_cosine(tmp_path):
    from vist3a.alignment.scorers import clip_preprocess
    from vist3a.evaluation.metric_models import TransformersClipScorer, clip_score_from_scorer

    model = tiny_clip(tmp_path)
    scorer = TransformersClipScorer(model, HashTokenizer())
    views = torch.rand(3, 3, 40, 40)
    got = clip_score_from_scorer(scorer)(views, "a red cube", None)
    with torch.no_grad():
        out = model(pixel_values=clip_preprocess(views, 32, crop=True), **HashTokenizer()(["a red cube"]))
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds.expand(3, -1), dim=-1)
    assert got == pytest.approx(float((100 * cos.clamp_min(0)).mean()), abs=1e-4)


def test_aesthetic_head_has_the_laion_layout_and_scores_unit_embeddings(tmp_path):
    from vist3a.evaluation.metric_models import AestheticPredictor, AestheticScorer

    head = AestheticPredictor(8)
    assert sorted(head.state_dict()) == sorted(f"layers.{i}.{p}" for i in (0, 2, 4, 6, 7) for p in ("weight", "bias"))
    model = tiny_clip(tmp_path)
    scorer = AestheticScorer(model, head)
    views = torch.rand(2, 3, 32, 32)
    from vist3a.alignment.scorers import clip_preprocess

    with torch.no_grad():
        emb = model.get_image_features(pixel_values=clip_preprocess(views, 32, crop=True))
        emb = getattr(emb, "pooler_output", emb)
        expected = head(emb / emb.norm(dim=-1, keepdim=True))
    torch.testing.assert_close(scorer(views), expected)


def test_missing_metric_models_name_the_fix(monkeypatch, tmp_path):
    from vist3a.evaluation import metric_models

    monkeypatch.delenv("VIST3A_AESTHETIC_HEAD", raising=False)
    with pytest.raises(UserInputError, match="aesthetic head is missing"):
        metric_models.load_aesthetic(str(tmp_path), torch.device("cpu"))
    monkeypatch.setitem(__import__("sys").modules, "pyiqa", None)
    with pytest.raises(UserInputError, match=r"vist3a\[eval\]"):
        metric_models.load_musiq(None, torch.device("cpu"))
