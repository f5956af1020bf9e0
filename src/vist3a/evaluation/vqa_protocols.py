"""What the VQA judges of the text-to-3D tables are asked, and how their answers are read (no model here).

Two protocols of the VIST3A release (``gohyojun15/VIST3A``, ``evaluation/gen_eval/``), both put to
UnifiedReward-Qwen-7B (``CodeGoat24/UnifiedReward-qwen-7b``, a Qwen2.5-VL fine-tune) with one image per question:

- **UnifiedReward rating** (``gen_metrics/unified_reward.py``): the judge is given a view and the caption and
  answers with word-wise scores and three 1-5 ratings, ``Alignment``, ``Coherence`` and ``Style``
  (:func:`unified_reward_question`, :func:`parse_unified_reward`). A view counts only when all three ratings
  were read; the prompt's score per criterion is the mean over the views that count.
- **DPG-Bench VQA** (``dpg_evaluation.py``): each of a prompt's DPG questions is asked as a one-word yes/no
  question (:func:`dpg_question_prompt`); only the answer ``Yes`` scores (:func:`is_yes`). The dependency rule and
  the question files are :mod:`vist3a.evaluation.dpg`.

The question wording is the release's, word for word: a judge's ratings depend on how it is asked, so the wording
is part of the metric (the "ASSISTANT:" line at the end of the user turn included). The parsing is vist3a's own:
the release reads ``<Label> Score (1-5): X`` and falls back to the first number on any line naming the label;
vist3a accepts the labelled forms only (``Alignment Score (1-5): 4``, ``Alignment Score: 4``, ``**Alignment**: 4``,
``Alignment - 4``) and rejects ratings outside 1-5, so a stray number is never read as a rating.
"""

from __future__ import annotations

import re

#: The UnifiedReward ratings, in the order the judge is asked for them; result columns are ``ur_<name>``.
UNIFIED_REWARD_CRITERIA = ("alignment", "coherence", "style")
#: The rating scale the judge is asked for.
RATING_RANGE = (1.0, 5.0)

_UNIFIED_REWARD_TASK = (
    "You are presented with a generated image and its associated text caption. Your task is to analyze the image "
    "across multiple dimensions in relation to the caption. Specifically:",
    "",
    "1. Evaluate each word in the caption based on how well it is visually represented in the image. Assign a "
    "numerical score to each word using the format:",
    '   Word-wise Scores: [["word1", score1], ["word2", score2], ..., ["wordN", scoreN], ["[No_mistakes]", scoreM]]',
    "   - A higher score indicates that the word is less well represented in the image.",
    "   - The special token [No_mistakes] represents whether all elements in the caption were correctly depicted. "
    "A high score suggests no mistakes; a low score suggests missing or incorrect elements.",
    "",
    "2. Provide overall assessments for the image along the following axes (each rated from 1 to 5):",
    "- Alignment Score: How well the image matches the caption in terms of content.",
    "- Coherence Score: How logically consistent the image is (absence of visual glitches, object distortions, etc.).",
    "- Style Score: How aesthetically appealing the image looks, regardless of caption accuracy.",
    "",
    "Output your evaluation using the format below:",
    "",
    "---",
    "",
    'Word-wise Scores: [["word1", score1], ..., ["[No_mistakes]", scoreM]]',
    "",
    "Alignment Score (1-5): X",
    "Coherence Score (1-5): Y",
    "Style Score (1-5): Z",
    "",
    "Your task is provided as follows:",
)


def unified_reward_question(caption: str) -> str:
    """The user-turn text of a UnifiedReward rating of one image against ``caption`` (the image goes before it)."""
    return "\n".join(_UNIFIED_REWARD_TASK) + f"\nText Caption: [{caption}]\nASSISTANT:\n"


_NUMBER = r"(\d+(?:\.\d+)?)"


def _rating_pattern(label: str) -> re.Pattern[str]:
    # label, optional "Score", optional "(1-5)", optional markdown bold, then ':' '-' or '=' and the number
    return re.compile(rf"\b{label}(?:\s+score)?\s*(?:\([^)\n]*\))?\s*\**\s*[:=\-]\s*\**\s*{_NUMBER}", re.IGNORECASE)


_RATING_PATTERNS = {name: _rating_pattern(name) for name in UNIFIED_REWARD_CRITERIA}


def parse_unified_reward(text: str) -> dict[str, float | None]:
    """The three ratings in a UnifiedReward answer: ``{"alignment": 4.0, "coherence": 3.5, "style": None}``.

    The first labelled rating of each criterion counts; a criterion without one, or whose rating is outside
    :data:`RATING_RANGE`, is ``None``. Example::

        >>> parse_unified_reward("Alignment Score (1-5): 4\\nCoherence Score (1-5): 3.5\\nStyle Score (1-5): 9")
        {'alignment': 4.0, 'coherence': 3.5, 'style': None}
    """
    low, high = RATING_RANGE
    out: dict[str, float | None] = {}
    for name, pattern in _RATING_PATTERNS.items():
        match = pattern.search(text)
        value = float(match.group(1)) if match else None
        out[name] = value if value is not None and low <= value <= high else None
    return out


def dpg_question_prompt(question: str) -> str:
    """The user-turn text of one DPG-Bench question (the image goes before it)."""
    return f"Please answer the following question with only one word 'Yes' or 'No': {question}\nASSISTANT:\n"


def is_yes(answer: str) -> bool:
    """Whether a DPG answer scores: exactly ``Yes`` once surrounding whitespace is stripped (the release compares
    the decoded answer with ``"Yes"``; ``"yes"``, ``"Yes."`` or a sentence do not score)."""
    return answer.strip() == "Yes"


def yes_no(answer: str) -> bool | None:
    """``True`` / ``False`` for an answer that is a yes or a no in any case, with or without a full stop; ``None``
    for anything else (reported as unreadable answers, which score as a no)."""
    word = answer.strip().rstrip(".!").strip().lower()
    return {"yes": True, "no": False}.get(word)
