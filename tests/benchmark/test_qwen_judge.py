"""The Qwen2.5-VL judge on a tiny random instance of the real classes (nothing downloaded), and the UnifiedReward
and DPG metrics on scripted answers."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import torch

from vist3a.errors import UserInputError

transformers = pytest.importorskip("transformers")
pytest.importorskip("transformers.models.qwen2_5_vl")

SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
           "<|video_pad|>"]
#: A ChatML template of the shape of Qwen2.5-VL's (image placeholder where the image sits in the turn).
TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def tiny_tokenizer():
    """A character-level tokenizer with Qwen2.5-VL's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {c: i for i, c in enumerate([chr(i) for i in range(32, 127)] + ["\n"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=" "))
    tok.pre_tokenizer = pre_tokenizers.Split("", "isolated")
    tok.decoder = decoders.Fuse()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>",
                                                pad_token="<|endoftext|>")
    fast.add_special_tokens({"additional_special_tokens": SPECIAL[1:]})
    return fast


def tiny_processor(monkeypatch, video_processor=None):
    """The real ``Qwen2_5_VLProcessor`` class with a small image processor. Without torchvision transformers has no
    video processor class to check against, so the check is skipped for an absent video processor only."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.processing_utils import ProcessorMixin

    if video_processor is None:
        check = ProcessorMixin.check_argument_for_proper_class
        monkeypatch.setattr(ProcessorMixin, "check_argument_for_proper_class",
                            lambda self, name, arg: None if arg is None else check(self, name, arg))
    image_processor = Qwen2VLImageProcessorPil(min_pixels=28 * 28 * 4, max_pixels=28 * 28 * 16, patch_size=14,
                                               merge_size=2, temporal_patch_size=2)
    return transformers.Qwen2_5_VLProcessor(image_processor=image_processor, tokenizer=tiny_tokenizer(),
                                            video_processor=video_processor, chat_template=TEMPLATE)


def tiny_model(tokenizer):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL}
    config = transformers.Qwen2_5_VLConfig(
        text_config={"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32,
                     "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                     "max_position_embeddings": 2048, "bos_token_id": ids["<|endoftext|>"],
                     "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
                     "rope_scaling": {"type": "mrope", "mrope_section": [1, 1, 2], "rope_theta": 10000.0}},
        vision_config={"depth": 1, "hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "out_hidden_size": 16,
                       "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2, "window_size": 56,
                       "fullatt_block_indexes": [0]},
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    torch.manual_seed(0)
    model = transformers.Qwen2_5_VLForConditionalGeneration(config).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    return model


@pytest.fixture
def tiny_judge(monkeypatch):
    from vist3a.benchmark.qwen_judge import QwenVLJudge

    processor = tiny_processor(monkeypatch)
    return QwenVLJudge(tiny_model(processor.tokenizer), processor, name="tiny")


def test_prompt_puts_the_image_before_the_question_in_one_user_turn(tiny_judge):
    from vist3a.benchmark.qwen_judge import to_pil
    from vist3a.evaluation.vqa_protocols import unified_reward_question

    question = unified_reward_question("a red cube")
    text = tiny_judge.prompt_text(to_pil(torch.rand(3, 32, 40)), question)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>" + question
                    + "<|im_end|>\n<|im_start|>assistant\n")
    # the processor expands the placeholder to the image's merged patches: 56x56 px -> 2x2 merged patches
    pil = to_pil(torch.rand(3, 56, 56))
    inputs = tiny_judge.processor(text=[tiny_judge.prompt_text(pil, "Is it red?")], images=[pil], return_tensors="pt")
    pad = tiny_judge.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4]] and int((inputs["input_ids"] == pad).sum()) == 4


def test_end_to_end_on_the_tiny_model_gives_an_unreadable_score_not_a_crash(tiny_judge):
    """A random model's answers are gibberish: the metrics report them as unread (None), the DPG answers as no."""
    from vist3a.benchmark.metric_models import dpg_metric, unified_reward_metric
    from vist3a.evaluation.dpg import DPGItem, DPGQuestion

    views = torch.rand(2, 3, 48, 64, generator=torch.Generator().manual_seed(0))
    answer = tiny_judge.ask(views[0], "Is it red?", max_new_tokens=6)
    assert isinstance(answer, str) and len(answer) <= 6
    out = unified_reward_metric(tiny_judge, max_new_tokens=6).evaluate(views, "a red cube", None)
    assert out.values == {"ur_alignment": None, "ur_coherence": None, "ur_style": None}
    assert out.details["views_counted"] == 0 and set(out.details["unread_answers"]) == {"0", "1"}
    item = DPGItem("x", "a red cube", (DPGQuestion(1, "Is there a cube?", (), "entity - whole"),
                                       DPGQuestion(2, "Is the cube red?", (1,), "attribute - color")))
    out = dpg_metric(tiny_judge, {"a red cube": item}, max_new_tokens=4).evaluate(views, "a red cube", None)
    assert out.values == {"dpg": 0.0} and out.details["answers"] == [[0, 0], [0, 0]]


class ScriptedJudge:
    """Answers from a script, keyed by (view index, question substring); records what it was asked."""

    name = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.asked: list[tuple[int, str]] = []

    def ask(self, image, question, max_new_tokens):
        view = int(image[0, 0, 0].item())  # the test writes the view's index into its first pixel
        self.asked.append((view, question))
        return self.answer(view, question)


def indexed_views(n):
    views = torch.zeros(n, 3, 8, 8)
    views[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return views


def test_unified_reward_means_over_the_views_whose_ratings_were_read():
    from vist3a.benchmark.metric_models import unified_reward_metric

    answers = ["Alignment Score (1-5): 4\nCoherence Score (1-5): 3\nStyle Score (1-5): 5",
               "Alignment Score (1-5): 2\nCoherence Score (1-5): 5\nStyle Score (1-5): 4",
               "Alignment Score (1-5): 5\nCoherence Score (1-5): ?\nStyle Score (1-5): 1"]  # not counted at all
    judge = ScriptedJudge(lambda view, question: answers[view])
    out = unified_reward_metric(judge, max_new_tokens=8).evaluate(indexed_views(3), "a red cube", None)
    assert out.values == pytest.approx({"ur_alignment": 3.0, "ur_coherence": 4.0, "ur_style": 4.5})
    assert out.details["views_counted"] == 2 and list(out.details["unread_answers"]) == ["2"]
    assert [v for v, _ in judge.asked] == [0, 1, 2]
    assert all(q.endswith("Caption: a red cube\n") for _, q in judge.asked)
    assert out.details["wording"] == "builtin"


def test_dpg_score_applies_the_dependency_rule_per_view_and_averages():
    from vist3a.benchmark.metric_models import dpg_metric
    from vist3a.evaluation.dpg import DPGItem, DPGQuestion

    item = DPGItem("toy", "a lamp on a table", (
        DPGQuestion(1, "Is there a table?", (), "entity - whole"),
        DPGQuestion(2, "Is there a lamp?", (), "entity - whole"),
        DPGQuestion(3, "Is the lamp on the table?", (1, 2), "relation - spatial"),
    ))
    # view 0: all yes -> 1; view 1: no table, but "on the table" answered yes -> only the lamp scores -> 1/3
    table, lamp, on = "Is there a table?", "Is there a lamp?", "Is the lamp on the table?"
    script = {(0, table): "Yes", (0, lamp): "Yes", (0, on): "Yes",
              (1, table): "No", (1, lamp): " Yes\n", (1, on): "Yes"}
    judge = ScriptedJudge(lambda view, q: script[view, q.split("\n", 1)[0]])  # the default asks the question first
    out = dpg_metric(judge, {"a lamp on a table": item}).evaluate(indexed_views(2), "a lamp on a table", None)
    assert out.values["dpg"] == pytest.approx(100 * (1 + 1 / 3) / 2)
    assert out.details["answers"] == [[1, 1, 1], [0, 1, 1]] and out.details["view_scores"] == pytest.approx([1, 1 / 3])
    assert len(judge.asked) == 6 and all(q.endswith("Yes or No.\n") for _, q in judge.asked)
    assert out.details["wording"] == "builtin"


def test_missing_judge_model_is_one_error_naming_it(tmp_path, monkeypatch):
    from vist3a.benchmark import qwen_judge

    monkeypatch.setattr(qwen_judge, "_missing_libraries", lambda: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError, match=r"UnifiedReward-qwen-7b.*unifiedreward=FOLDER.*vist3a\[eval\]"):
        qwen_judge.load_qwen_judge(None, "cpu", local_files_only=True)
    with pytest.raises(UserInputError, match="does not exist"):
        qwen_judge.load_qwen_judge(str(tmp_path / "no-such-folder"), "cpu")
    assert qwen_judge.judge_available(str(tmp_path))[0] is False
    monkeypatch.setattr(qwen_judge, "_missing_libraries", lambda: "torchvision (needed)")
    with pytest.raises(UserInputError, match=r"torchvision.*vist3a\[eval\]"):
        qwen_judge.load_qwen_judge(str(tmp_path), "cpu")
    assert qwen_judge.judge_available(str(tmp_path)) == (False, "torchvision (needed) is not installed "
                                                                "(pip install 'vist3a[eval]')")


def test_a_judge_sure_to_be_missing_stops_the_run_before_generation(tmp_path, monkeypatch):
    from vist3a.benchmark import qwen_judge
    from vist3a.benchmark.text3d import Text3DConfig, evaluate_text3d

    monkeypatch.setattr(qwen_judge, "_missing_libraries", lambda: None)
    with pytest.raises(UserInputError, match=r"has no config\.json"):
        qwen_judge.check_judge(str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserInputError, match="not in the local Hugging Face cache"):
        qwen_judge.check_judge("someone/not-cached-judge")
    monkeypatch.delenv("HF_HUB_OFFLINE")
    qwen_judge.check_judge("someone/not-cached-judge")  # online: the load may still download it

    class NoPipeline:
        def __call__(self, *args, **kwargs):
            raise AssertionError("nothing may be generated")

    prompts = tmp_path / "p.txt"
    prompts.write_text("a red cube\n")
    cfg = Text3DConfig(suite=str(prompts), preset="fake", metrics=("unifiedreward",),
                       metric_sources={"unifiedreward": str(tmp_path / "missing")}, progress=False)
    with pytest.raises(UserInputError, match="unifiedreward=FOLDER"):
        evaluate_text3d(cfg, tmp_path / "run", pipeline=NoPipeline())


def test_loads_a_saved_model_folder(tmp_path, monkeypatch):
    """``load_qwen_judge`` on a folder: the model through ``from_pretrained``; the processor through AutoProcessor
    (stubbed where torchvision, which its video processor needs, is missing)."""
    from vist3a.benchmark import qwen_judge

    processor = tiny_processor(monkeypatch)
    tiny_model(processor.tokenizer).save_pretrained(tmp_path)
    monkeypatch.setattr(qwen_judge, "_missing_libraries", lambda: None)
    monkeypatch.setattr(transformers.AutoProcessor, "from_pretrained", lambda *a, **k: processor)
    judge = qwen_judge.load_qwen_judge(str(tmp_path), "cpu")
    assert judge.name == str(tmp_path) and next(judge.model.parameters()).dtype == torch.float32
    assert qwen_judge.judge_available(str(tmp_path))[0]
    assert isinstance(judge.ask(torch.rand(3, 30, 30), "Is it red?", max_new_tokens=3), str)


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is None,
                    reason="transformers' Qwen2.5-VL processor needs torchvision")
def test_processor_round_trip_through_auto_processor(tmp_path, monkeypatch):
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    from vist3a.benchmark.qwen_judge import load_qwen_judge

    processor = tiny_processor(monkeypatch, video_processor=Qwen2VLVideoProcessor())
    tiny_model(processor.tokenizer).save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    judge = load_qwen_judge(str(tmp_path), "cpu")
    assert isinstance(judge.ask(torch.rand(3, 30, 30), "Is it red?", max_new_tokens=3), str)


def test_metric_sets_add_the_judge_only_where_it_is_at_hand(monkeypatch):
    from vist3a.benchmark import metric_models, qwen_judge

    monkeypatch.setattr(qwen_judge, "judge_available", lambda source: (False, "not cached"))
    base = metric_models.DEFAULT_METRICS["real"]
    assert metric_models.default_metrics("real", "t3bench") == base
    assert metric_models.default_metrics("real", "dpg", has_dpg_questions=True) == base
    assert metric_models.default_metrics("nano", "dpg", has_dpg_questions=True) == ("clip_nano", "consistency")
    # a named judge is asked for, whether it is there or not (its load then says what is missing)
    assert metric_models.default_metrics("real", "t3bench", {"unifiedreward": "/m"}) == base + ("unifiedreward",)
    monkeypatch.setattr(qwen_judge, "judge_available", lambda source: (True, ""))
    assert metric_models.default_metrics("real", "scenebench") == base + ("unifiedreward",)
    assert metric_models.default_metrics("real", "dpg") == base + ("unifiedreward",)  # no question file
    assert metric_models.default_metrics("real", "dpg", has_dpg_questions=True) == base + ("unifiedreward", "dpg")
    assert metric_models.default_metrics("nano", "scenebench") == ("clip_nano", "consistency")
    with pytest.raises(UserInputError, match="--dpg-questions"):
        metric_models.build_metrics(("dpg",), torch.device("cpu"))
    with pytest.raises(UserInputError, match="--metric-model takes"):
        metric_models.build_metrics(("clip_nano",), torch.device("cpu"), {"consistency": "/somewhere"})


def test_text3d_scores_judge_columns_and_dpg_categories(tmp_path, monkeypatch):
    """A run on the dpg metric with a scripted judge: the question file is checked up front, the columns and
    the DPG categories reach results.json / results.md, and unreadable prompts are skipped by the means."""
    from test_text3d import FakePipeline

    from vist3a.benchmark.text3d import Text3DConfig, evaluate_text3d

    prompts = tmp_path / "dpg_prompts.txt"
    prompts.write_text("a lamp\na cube\n")
    questions = tmp_path / "questions.csv"
    with questions.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["item_id", "text", "proposition_id", "dependency", "tuple", "question_natural_language"])
        writer.writerow(["i1", "a lamp", "1", "0", "entity - whole (lamp)", "Is there a lamp?"])
        writer.writerow(["i2", "a cube", "1", "0", "entity - whole (cube)", "Is there a cube?"])
        writer.writerow(["i2", "a cube", "2", "1", "attribute - color (cube, red)", "Is the cube red?"])
    def answer(view, q):
        if "Caption: a lamp" in q:
            return "Alignment Score: 4\nCoherence Score: 4\nStyle Score: 2"
        if "Caption:" in q:
            return "I cannot rate this."
        return "Yes" if "lamp" in q or "there a cube" in q else "No"

    judge = ScriptedJudge(answer)
    monkeypatch.setattr("vist3a.benchmark.qwen_judge.load_qwen_judge", lambda *a, **k: judge)
    monkeypatch.setattr("vist3a.benchmark.qwen_judge.check_judge", lambda *a, **k: None)
    cfg = Text3DConfig(suite=str(prompts), preset="fake", metrics=("unifiedreward", "dpg"), num_views=2,
                       dpg_questions=str(questions), progress=False, render_backend="torch")
    summary = evaluate_text3d(cfg, tmp_path / "run", pipeline=FakePipeline())
    assert summary["means"]["dpg"] == pytest.approx((100 + 50) / 2)
    assert summary["means"]["ur_alignment"] == 4.0 and summary["prompts_without_score"] == {
        "ur_alignment": 1, "ur_coherence": 1, "ur_style": 1}
    assert summary["dpg_categories"]["L2"] == pytest.approx({"entity - whole": 100.0, "attribute - color": 0.0})
    md = (tmp_path / "run" / "results.md").read_text()
    assert "DPG ↑" in md and "| L2 | attribute - color | 0.00 |" in md and "unreadable on every view of 1" in md
    # a question file that lacks a prompt is refused before anything is generated
    other = Text3DConfig(suite=str(prompts), preset="fake", metrics=("dpg",), dpg_questions=str(questions),
                         progress=False)
    questions.write_text("item_id,text,proposition_id,dependency,tuple,question_natural_language\n"
                         "i1,a lamp,1,0,entity - whole (lamp),Is there a lamp?\n")
    with pytest.raises(UserInputError, match="no questions for 1 of the 2"):
        evaluate_text3d(other, tmp_path / "run2")
    with pytest.raises(UserInputError, match="--dpg-questions"):
        evaluate_text3d(Text3DConfig(suite=str(prompts), preset="fake", metrics=("dpg",), progress=False),
                        tmp_path / "run3")



def test_text3d_judge_wording_files_are_used_recorded_and_part_of_the_resume_check(tmp_path, monkeypatch):
    """--judge-prompt / $VIST3A_DPG_PROMPT reach the judge; results.json and config.json record their sha256; a
    resume with another wording is refused; a file without its placeholder stops the run before generation."""
    import hashlib
    import json

    from test_text3d import FakePipeline

    from vist3a.benchmark.text3d import Text3DConfig, evaluate_text3d

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a lamp\n")
    questions = tmp_path / "questions.csv"
    questions.write_text("item_id,text,proposition_id,dependency,tuple,question_natural_language\n"
                         "i1,a lamp,1,0,entity - whole (lamp),Is there a lamp?\n")
    judge_file, dpg_file = tmp_path / "judge.txt", tmp_path / "dpg.txt"
    judge_file.write_text("RATE <<{caption}>>\n")
    dpg_file.write_text("ASK <<{question}>>\n")
    sha = {p: "sha256:" + hashlib.sha256(p.read_bytes()).hexdigest() for p in (judge_file, dpg_file)}

    def answer(view, q):
        if q.startswith("RATE"):
            return "Alignment Score (1-5): 5\nCoherence Score (1-5): 4\nStyle Score (1-5): 3"
        return "Yes" if q == "ASK <<Is there a lamp?>>\n" else "No"

    judge = ScriptedJudge(answer)
    monkeypatch.setattr("vist3a.benchmark.qwen_judge.load_qwen_judge", lambda *a, **k: judge)
    monkeypatch.setattr("vist3a.benchmark.qwen_judge.check_judge", lambda *a, **k: None)
    monkeypatch.setenv("VIST3A_DPG_PROMPT", str(dpg_file))
    common = dict(suite=str(prompts), preset="fake", metrics=("unifiedreward", "dpg"), num_views=2,
                  dpg_questions=str(questions), progress=False, render_backend="torch")
    out = tmp_path / "run"
    summary = evaluate_text3d(Text3DConfig(judge_prompt=str(judge_file), **common), out, pipeline=FakePipeline())
    assert {q for _, q in judge.asked} == {"RATE <<a lamp>>\n", "ASK <<Is there a lamp?>>\n"}
    assert summary["means"]["ur_alignment"] == 5.0 and summary["means"]["dpg"] == 100.0
    wording = {"unifiedreward": sha[judge_file], "dpg": sha[dpg_file]}
    assert json.loads((out / "results.json").read_text())["judge_wording"] == wording
    identity = json.loads((out / "config.json").read_text())["identity"]
    assert identity["judge_prompt"] == sha[judge_file] and identity["dpg_prompt"] == sha[dpg_file]
    assert sha[judge_file] in (out / "results.md").read_text()
    # the same wording resumes (nothing left to do); vist3a's default wording is another setting
    assert evaluate_text3d(Text3DConfig(judge_prompt=str(judge_file), **common), out)["num_prompts"] == 1
    with pytest.raises(UserInputError, match=r"judge_prompt differ.*builtin"):
        evaluate_text3d(Text3DConfig(**common), out)
    # a file without its placeholder stops the run before anything is generated or written
    dpg_file.write_text("ASK about the lamp\n")
    pipe = FakePipeline()
    with pytest.raises(UserInputError, match=r"^\$VIST3A_DPG_PROMPT .* has no \{question\} placeholder"):
        evaluate_text3d(Text3DConfig(judge_prompt=str(judge_file), **common), tmp_path / "run2", pipeline=pipe)
    assert pipe.calls == [] and not (tmp_path / "run2").exists()
    monkeypatch.delenv("VIST3A_DPG_PROMPT")
    # the default wording is recorded as builtin
    summary = evaluate_text3d(Text3DConfig(**common), tmp_path / "run3", pipeline=FakePipeline())
    assert summary["judge_wording"] == {"unifiedreward": "builtin", "dpg": "builtin"}
