"""The text-to-3D metric models' formulas on tiny random instances of their classes (nothing downloaded), and
their missing-model errors."""

from __future__ import annotations

import pytest
import torch

from vist3a.errors import UserInputError


def tiny_clip(tmp_path, text_positions=77):
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPConfig(
        text_config={"vocab_size": 99, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": text_positions},
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
    from vist3a.benchmark.metric_models import TransformersClipScorer, clip_score_from_scorer

    model = tiny_clip(tmp_path)
    scorer = TransformersClipScorer(model, HashTokenizer())
    views = torch.rand(3, 3, 40, 40)
    got = clip_score_from_scorer(scorer)(views, "a red cube", None)
    with torch.no_grad():
        out = model(pixel_values=clip_preprocess(views, 32, crop=True), **HashTokenizer()(["a red cube"]))
        cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds.expand(3, -1), dim=-1)
    assert got == pytest.approx(float((100 * cos.clamp_min(0)).mean()), abs=1e-4)


def test_longclip_keeps_prompts_up_to_its_text_length(tmp_path):
    """LongCLIP is a CLIPModel with 248 text positions: prompts are cut there, not at CLIP's 77 tokens."""
    from vist3a.benchmark.metric_models import TransformersClipScorer, clip_score_from_scorer

    seen = []

    class Spy(HashTokenizer):
        def __call__(self, prompts, **kwargs):
            out = super().__call__(prompts, **kwargs)
            seen.append((kwargs["max_length"], out["input_ids"].shape[1]))
            return out

    long_prompt = " ".join(f"w{i}" for i in range(150))
    views = torch.rand(1, 3, 32, 32)
    for positions in (77, 248):
        scorer = TransformersClipScorer(tiny_clip(tmp_path, positions), Spy())
        assert 0.0 <= clip_score_from_scorer(scorer)(views, long_prompt, None) <= 100.0
    assert seen == [(77, 77), (248, 152)]


def test_aesthetic_head_has_the_laion_layout_and_scores_unit_embeddings(tmp_path):
    from vist3a.benchmark.metric_models import AestheticPredictor, AestheticScorer

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
    from vist3a.benchmark import metric_models

    monkeypatch.delenv("VIST3A_AESTHETIC_HEAD", raising=False)
    with pytest.raises(UserInputError, match="aesthetic head is missing"):
        metric_models.load_aesthetic(str(tmp_path), torch.device("cpu"))
    monkeypatch.setitem(__import__("sys").modules, "pyiqa", None)
    with pytest.raises(UserInputError, match=r"vist3a\[eval\]"):
        metric_models.load_musiq(None, torch.device("cpu"))


def test_nano_stand_in_is_the_registrys_evaluation_model():
    """``clip_nano`` scores with the nano preset's ``"nano-clip-eval"`` scorer: the held-out evaluation model, never
    the reward model."""
    from vist3a.alignment.scorers import NanoClipScorer
    from vist3a.benchmark.metric_models import build_metrics, registry_scorer
    from vist3a.nano.weights import nano_available

    if not nano_available(["clip", "clip_eval"]):
        pytest.skip("the nano image-text models are not installed")
    judge = registry_scorer("nano", "nano-clip-eval", torch.device("cpu"))
    reward = registry_scorer("nano", "nano-clip", torch.device("cpu"))
    assert isinstance(judge, NanoClipScorer) and judge.model.config.role == "evaluation"
    assert reward.model.config.role != "evaluation"
    (metric,) = build_metrics(("clip_nano",), torch.device("cpu"))
    views = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    expected = float((100 * judge.score(views, ["a red cube"] * 2).clamp_min(0)).mean())
    assert metric(views, "a red cube", None) == pytest.approx(expected, abs=1e-4)


def test_stand_in_metrics_take_no_model_source():
    from vist3a.benchmark.metric_models import build_metrics

    with pytest.raises(UserInputError, match="--metric-model takes imaging, aesthetic, clip"):
        build_metrics(("clip_nano",), torch.device("cpu"), {"clip_nano": "/somewhere"})
