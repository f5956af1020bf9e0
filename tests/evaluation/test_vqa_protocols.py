"""The VQA judges' questions and answer reading, on hand-written answers."""

from __future__ import annotations

import hashlib

import pytest

from vist3a.errors import UserInputError
from vist3a.evaluation.vqa_protocols import (
    DPG_PROMPT,
    UNIFIED_REWARD_CRITERIA,
    UNIFIED_REWARD_PROMPT,
    dpg_question_prompt,
    is_yes,
    parse_unified_reward,
    read_template,
    unified_reward_question,
    yes_no,
)

# What a UnifiedReward answer looks like: word-wise scores first (words of the caption may be criterion names),
# then the three ratings.
TYPICAL = """Word-wise Scores: [["a", 0.1], ["style", 0.4], ["coherence", 2], ["[No_mistakes]", 0.7]]

Alignment Score (1-5): 4
Coherence Score (1-5): 3.5
Style Score (1-5): 5"""


@pytest.mark.parametrize(("text", "expected"), [
    (TYPICAL, (4.0, 3.5, 5.0)),
    ("Alignment Score: 2\nCoherence Score: 1\nStyle Score: 3.25", (2.0, 1.0, 3.25)),
    ("**Alignment**: 3\n**Coherence** - 4\nstyle score = 2", (3.0, 4.0, 2.0)),
    ("alignment score (1-5):4.0 coherence score (1-5):2 style score (1-5):1", (4.0, 2.0, 1.0)),
    # the first labelled rating counts
    ("Alignment Score (1-5): 2\nAlignment Score (1-5): 5\nCoherence Score (1-5): 3\nStyle Score (1-5): 3",
     (2.0, 3.0, 3.0)),
])
def test_ratings_are_read_from_labelled_lines(text, expected):
    assert tuple(parse_unified_reward(text)[c] for c in UNIFIED_REWARD_CRITERIA) == expected


@pytest.mark.parametrize(("text", "missing"), [
    ("Alignment Score (1-5): X\nCoherence Score (1-5): Y\nStyle Score (1-5): Z", {"alignment", "coherence", "style"}),
    ("Alignment Score (1-5): 7\nCoherence Score (1-5): 0\nStyle Score (1-5): 5", {"alignment", "coherence"}),
    ('Word-wise Scores: [["style", 0.4]]\nAlignment Score (1-5): 4\nCoherence Score (1-5): 4', {"style"}),
    ("The image shows 3 cats in style 2.", {"alignment", "coherence", "style"}),
    ("", {"alignment", "coherence", "style"}),
    ("!!@@##" * 20, {"alignment", "coherence", "style"}),
])
def test_unreadable_or_out_of_range_ratings_are_none(text, missing):
    parsed = parse_unified_reward(text)
    assert set(parsed) == set(UNIFIED_REWARD_CRITERIA)
    assert {c for c, v in parsed.items() if v is None} == missing


def test_unified_reward_question_asks_for_the_three_ratings_about_the_caption():
    caption = "a red cube on a wooden table"
    text = unified_reward_question(caption)
    assert "{caption}" not in text and text.count(caption) == 1 and text.rstrip().endswith(caption)
    for label in ("Alignment", "Coherence", "Style"):
        assert f"{label} Score (1-5): X" in text  # the answer format the parser reads
    assert "Word-wise Scores" in text
    # the format lines asked for in the question parse as unreadable (placeholder X), not as ratings
    assert set(parse_unified_reward(text).values()) == {None}


# Answers in the shape vist3a's default question asks for, written by hand (what a judge following it would say).
DEFAULT_SHAPED = [
    ('Word-wise Scores: [["a", 0], ["red", 1], ["cube", 0]]\n\nAlignment Score (1-5): 4\n'
     "Coherence Score (1-5): 5\nStyle Score (1-5): 3", (4.0, 5.0, 3.0)),
    ('Word-wise Scores: [["lamp", 3]]\nAlignment Score (1-5): 2.5\nCoherence Score (1-5): 4\n'
     "Style Score (1-5): 1\n", (2.5, 4.0, 1.0)),
    # a judge that repeats the criterion descriptions before rating: the descriptions carry no number
    ("Alignment - does the picture contain what the caption describes? Mostly.\n"
     "Alignment Score (1-5): 3\nCoherence Score (1-5): 3\nStyle Score (1-5): 4", (3.0, 3.0, 4.0)),
]


@pytest.mark.parametrize(("answer", "expected"), DEFAULT_SHAPED)
def test_answers_to_the_default_question_are_parsed(answer, expected):
    assert "Alignment Score (1-5): X" in UNIFIED_REWARD_PROMPT
    assert tuple(parse_unified_reward(answer)[c] for c in UNIFIED_REWARD_CRITERIA) == expected


def test_default_templates_have_one_placeholder_each():
    assert UNIFIED_REWARD_PROMPT.count("{caption}") == 1 and DPG_PROMPT.count("{question}") == 1
    assert "{question}" not in UNIFIED_REWARD_PROMPT and "{caption}" not in DPG_PROMPT


def test_dpg_question_and_answers():
    text = dpg_question_prompt("Is the jello orange?")
    assert text.startswith("Is the jello orange?") and "single word" in text and "Yes or No" in text
    assert "{question}" not in text
    assert is_yes("Yes") and is_yes(" Yes\n")
    for answer in ("yes", "Yes.", "No", "Yes, it is.", "", "YES"):
        assert not is_yes(answer), answer
    assert yes_no("yes.") is True and yes_no(" No ") is False and yes_no("Maybe") is None and yes_no("") is None


def test_template_files_round_trip(tmp_path):
    """A template file is used verbatim (line breaks, braces, the final newline), every placeholder replaced, and
    recorded by the sha256 of its text."""
    text = 'Rate it.\n{"format": [1, 2]} -> {caption}\nAgain: [{caption}]\nASSISTANT:\n'
    path = tmp_path / "judge.txt"
    path.write_bytes(text.encode("utf-8"))
    template = read_template(path, "{caption}", "--judge-prompt")
    assert template.text == text and template.source == "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    assert unified_reward_question("a cube", template) == (
        'Rate it.\n{"format": [1, 2]} -> a cube\nAgain: [a cube]\nASSISTANT:\n')
    dpg = tmp_path / "dpg.txt"
    dpg.write_text("Q: {question}\nOne word.", encoding="utf-8")
    assert dpg_question_prompt("Is it red?", read_template(dpg, "{question}")) == "Q: Is it red?\nOne word."
    # a file holding exactly the default wording is recorded as the default
    same = tmp_path / "same.txt"
    same.write_text(DPG_PROMPT, encoding="utf-8")
    assert read_template(same, "{question}").source == "builtin"


@pytest.mark.parametrize(("content", "placeholder", "match"), [
    ("Rate the image against [{prompt}].", "{caption}", "no {caption} placeholder"),
    ("Is it so? {caption}", "{question}", "no {question} placeholder"),
    ("", "{caption}", "no {caption} placeholder"),
    (b"\xff\xfe{caption}", "{caption}", "UTF-8"),
    (None, "{caption}", "not a file"),
])
def test_template_without_its_placeholder_is_refused(tmp_path, content, placeholder, match):
    path = tmp_path / "t.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    with pytest.raises(UserInputError, match=match) as info:
        read_template(path, placeholder, "--judge-prompt")
    assert "\n" not in str(info.value) and str(info.value).startswith("--judge-prompt")
