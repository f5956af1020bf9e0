"""The VQA judges' questions and answer reading, on hand-written answers."""

from __future__ import annotations

import pytest

from vist3a.evaluation.vqa_protocols import (
    UNIFIED_REWARD_CRITERIA,
    dpg_question_prompt,
    is_yes,
    parse_unified_reward,
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
    assert text.endswith(f"Text Caption: [{caption}]\nASSISTANT:\n")
    for label in ("Alignment", "Coherence", "Style"):
        assert f"{label} Score (1-5):" in text  # the answer format the parser reads
    assert "Word-wise Scores" in text and text.count(caption) == 1
    # the format lines asked for in the question parse as unreadable (placeholders X, Y, Z), not as ratings
    assert set(parse_unified_reward(text).values()) == {None}


def test_dpg_question_and_answers():
    text = dpg_question_prompt("Is the jello orange?")
    assert "only one word 'Yes' or 'No'" in text and text.endswith("Is the jello orange?\nASSISTANT:\n")
    assert is_yes("Yes") and is_yes(" Yes\n")
    for answer in ("yes", "Yes.", "No", "Yes, it is.", "", "YES"):
        assert not is_yes(answer), answer
    assert yes_no("yes.") is True and yes_no(" No ") is False and yes_no("Maybe") is None and yes_no("") is None
