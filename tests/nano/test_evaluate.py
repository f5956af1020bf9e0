"""The nano evaluation runner on the tiny-random pipeline, and rendering at the predicted cameras."""

from __future__ import annotations

import json

import pytest
import torch

from vist3a.evaluation.relations import left_right_cases
from vist3a.nano import evaluate as nano_eval


def test_evenly_spaced_views():
    assert nano_eval.evenly_spaced(13, 8) == [0, 2, 3, 5, 7, 9, 10, 12]
    assert nano_eval.evenly_spaced(5, 8) == [0, 1, 2, 3, 4]
    assert nano_eval.evenly_spaced(13, 1) == [0]


def test_renders_at_the_frames_size_with_rescaled_intrinsics():
    """A splat on the optical axis lands on the image centre of the smaller frames (pixel-centre convention)."""
    from vist3a.scene import Scene
    from vist3a.splats import Gaussians

    splat = Gaussians(means=torch.tensor([[0.0, 0.0, 4.0]]), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                      scales=torch.full((1, 3), 0.05), opacities=torch.ones(1), sh=torch.ones(1, 1, 3))
    K = torch.tensor([[40.0, 0.0, 15.5], [0.0, 40.0, 15.5], [0.0, 0.0, 1.0]])  # principal point at the centre
    scene = Scene(prompt="p", frames=torch.zeros(2, 3, 16, 16), w2c=torch.eye(4).expand(2, 4, 4).clone(),
                  K=K.expand(2, 3, 3).clone(), image_size=(32, 32), gaussians=splat)
    out = nano_eval.render_predicted_views(scene, [1], backend="torch")
    assert out.shape == (1, 3, 16, 16)
    brightness = out[0].sum(0)
    # symmetric about the centre (7.5, 7.5) of the 16 px image
    torch.testing.assert_close(brightness, brightness.flip(0).flip(1), atol=1e-5, rtol=0)
    assert float(brightness[7:9, 7:9].mean()) > 2 * float(brightness.mean())


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
    left_right = report["left_right"]
    assert [r["prompt"] for r in left_right] == [c.prompt for c in left_right_cases(3, 0)]
    assert all(r[source] in (True, False, None) for r in left_right for source in ("decoded", "rendered"))
    assert 0.0 <= summary["left_right_visible"] <= 1.0 and 0.0 <= summary["left_right_visible_rendered"] <= 1.0
