"""The nano evaluation runner on the tiny-random pipeline."""

from __future__ import annotations

import json

import pytest

from vist3a.evaluation.relations import left_right_cases
from vist3a.nano import evaluate as nano_eval


@pytest.mark.slow
def test_runner_end_to_end_on_tiny_random(tmp_path, fake_minilm, tiny_clip_config):
    from vist3a.alignment.scorers import NanoClipScorer
    from vist3a.nano.imagetext import NanoImageTextModel
    from vist3a.pipeline import Text2ScenePipeline

    pipe = Text2ScenePipeline.from_pretrained("tiny-random", device="cpu")
    judge = NanoClipScorer(NanoImageTextModel(**tiny_clip_config("vit", "evaluation")), fake_minilm)
    reward = NanoClipScorer(NanoImageTextModel(**tiny_clip_config()), fake_minilm)
    cfg = nano_eval.NanoEvalConfig(num_prompts=3, batch_size=2, num_views=2, num_steps=1, progress=False,
                                   render_backend="torch", left_right_scenes=3)
    summary = nano_eval.evaluate_nano(cfg, tmp_path, pipeline=pipe, eval_scorer=judge, reward_scorer=reward)
    report = json.loads((tmp_path / "eval.json").read_text())
    assert report["summary"] == summary and (tmp_path / "gallery.png").is_file()
    assert summary["num_prompts"] == 3 and summary["chance_r_precision"] == 0.1
    for key in ("r_precision_rendered", "r_precision_decoded", "r_precision_rendered_reward_model"):
        assert 0.0 <= summary[key] <= 1.0
    assert {"reward_clip_decoded", "reward_clip_rendered", "reward_consistency_l1"} <= set(summary)
    rows = report["per_prompt"]
    assert len(rows) == 3 and all(len(r["distractors"]) == 9 and len(r["scores_rendered"]) == 10 for r in rows)
    assert len({r["prompt"] for r in rows}) == 3 and report["views"] == [0, 4]
    # -L1 and PSNR describe the same decoded/rendered pairs
    assert all(r["rewards"]["consistency_l1"] <= 0 and r["consistency_psnr"] > 0 for r in rows)
    assert all(r["heldout_psnr"] > 0 for r in rows)  # novel views (cross-checked in test_nano_pipeline)
    assert summary["heldout_psnr"] == pytest.approx(sum(r["heldout_psnr"] for r in rows) / 3)
    left_right = report["left_right"]
    assert [r["prompt"] for r in left_right] == [c.prompt for c in left_right_cases(3, 0)]
    assert all(r[source] in (True, False, None) for r in left_right for source in ("decoded", "rendered"))
    assert 0.0 <= summary["left_right_visible"] <= 1.0 and 0.0 <= summary["left_right_visible_rendered"] <= 1.0
