"""What the VQA judges of the text-to-3D tables are asked, and how their answers are read (no model here).

Two protocols after the VIST3A release (``gohyojun15/VIST3A``, ``evaluation/gen_eval/``), both put to
UnifiedReward-Qwen-7B (``CodeGoat24/UnifiedReward-qwen-7b``, a Qwen2.5-VL fine-tune) with one image per question:

- **UnifiedReward rating**: the judge is given a view and the caption and answers with three 1-5 ratings,
  ``Alignment``, ``Coherence`` and ``Style`` (:func:`unified_reward_question`, :func:`parse_unified_reward`). A
  view counts only when all three ratings were read; the prompt's score per criterion is the mean over the views
  that count.
- **DPG-Bench VQA**: each of a prompt's DPG questions is asked as a one-word yes/no question
  (:func:`dpg_question_prompt`); only the answer ``Yes`` scores (:func:`is_yes`). The dependency rule and the
  question files are :mod:`vist3a.evaluation.dpg`.

Wording. A judge's ratings depend on how it is asked, so the wording is part of the metric. vist3a's default
wording (:data:`UNIFIED_REWARD_PROMPT`, :data:`DPG_PROMPT`) is its own and differs from the release's: it asks for
the same things (a word-by-word check of the caption, then the three labelled 1-5 ratings; a one-word Yes / No
answer) in other words, so its numbers are not directly comparable with the paper's. Any other wording is a
template file (:func:`read_template`: the text as the model receives it, with ``{caption}`` or ``{question}``
where the caption or the question goes); for numbers comparable with the paper, write the release's question
texts into such files: the question built in ``evaluation/gen_eval/gen_metrics/unified_reward.py`` and the one in
``evaluation/gen_eval/dpg_evaluation.py`` of ``gohyojun15/VIST3A``. :attr:`PromptTemplate.source` (``"builtin"``
or ``"sha256:<hex>"`` of the text) names the wording a run used.

The parsing is vist3a's own: the release reads ``<Label> Score (1-5): X`` and falls back to the first number on
any line naming the label; vist3a accepts the labelled forms only (``Alignment Score (1-5): 4``,
``Alignment Score: 4``, ``**Alignment**: 4``, ``Alignment - 4``) and rejects ratings outside 1-5, so a stray number
is never read as a rating.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from vist3a.errors import UserInputError

#: The UnifiedReward ratings, in the order the judge is asked for them; result columns are ``ur_<name>``.
UNIFIED_REWARD_CRITERIA = ("alignment", "coherence", "style")
#: The rating scale the judge is asked for.
RATING_RANGE = (1.0, 5.0)

#: vist3a's own UnifiedReward question (``{caption}``: the prompt); the answer lines it asks for are the ones
#: :func:`parse_unified_reward` reads.
UNIFIED_REWARD_PROMPT = """\
Judge the picture above against the caption at the end of this message.

First, go through the caption word by word and say how poorly the picture shows each word: 0 when it is shown \
correctly, higher the more it is missing or wrong. Put this on one line as
Word-wise Scores: [["<word>", <number>], ["<word>", <number>], ...]

Then rate the whole picture three times, each time from 1 (very poor) to 5 (excellent):
Alignment - does the picture contain what the caption describes?
Coherence - does the picture hold together, free of deformed objects, glitches and other artefacts?
Style - how good does the picture look, leaving the caption aside?

Finish with these three lines, putting your rating in place of the X:
Alignment Score (1-5): X
Coherence Score (1-5): X
Style Score (1-5): X

Caption: {caption}
"""

#: vist3a's own DPG-Bench question (``{question}``: one yes/no question of the prompt's DPG item).
DPG_PROMPT = "{question}\nReply with a single word, Yes or No.\n"

#: Placeholders of the two templates.
CAPTION, QUESTION = "{caption}", "{question}"


@dataclass(frozen=True)
class PromptTemplate:
    """A question text with one placeholder (every occurrence is replaced).

    Attributes:
        text: the question as the model receives it.
        placeholder: ``"{caption}"`` or ``"{question}"``.
        source: ``"builtin"`` for vist3a's default wording, else ``"sha256:<hex>"`` of ``text`` (what a run
            records, so runs with the same wording compare).
    """

    text: str
    placeholder: str
    source: str = "builtin"

    def fill(self, value: str) -> str:
        """The text with ``value`` in place of the placeholder."""
        return self.text.replace(self.placeholder, value)


def template_source(text: str, builtin: str) -> str:
    """``"builtin"`` when ``text`` is the default wording ``builtin``, else ``"sha256:<hex>"`` of its UTF-8 bytes."""
    return "builtin" if text == builtin else "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The default templates.
UNIFIED_REWARD_TEMPLATE = PromptTemplate(UNIFIED_REWARD_PROMPT, CAPTION)
DPG_TEMPLATE = PromptTemplate(DPG_PROMPT, QUESTION)
_BUILTIN = {CAPTION: UNIFIED_REWARD_PROMPT, QUESTION: DPG_PROMPT}


def read_template(path: str | os.PathLike, placeholder: str, option: str = "template") -> PromptTemplate:
    """The template in a UTF-8 text file, verbatim (line breaks, a final newline included): the question as the
    model receives it, with ``placeholder`` where the caption / the question goes. ``option`` names the setting
    in errors. A missing or unreadable file, or one without the placeholder, is a :class:`UserInputError`."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserInputError(f"{option} '{path}' is not a file (a text file holding the question, with "
                             f"{placeholder} where it goes)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"{option} '{path}' could not be read as UTF-8 text ({type(exc).__name__})") from None
    if placeholder not in text:
        raise UserInputError(f"{option} '{path}' has no {placeholder} placeholder: write {placeholder} where the "
                             f"{placeholder.strip('{}')} goes")
    return PromptTemplate(text, placeholder, template_source(text, _BUILTIN[placeholder]))


def unified_reward_question(caption: str, template: PromptTemplate = UNIFIED_REWARD_TEMPLATE) -> str:
    """The user-turn text of a UnifiedReward rating of one image against ``caption`` (the image goes before it)."""
    return template.fill(caption)


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


def dpg_question_prompt(question: str, template: PromptTemplate = DPG_TEMPLATE) -> str:
    """The user-turn text of one DPG-Bench question (the image goes before it)."""
    return template.fill(question)


def is_yes(answer: str) -> bool:
    """Whether a DPG answer scores: exactly ``Yes`` once surrounding whitespace is stripped (the release compares
    the decoded answer with ``"Yes"``; ``"yes"``, ``"Yes."`` or a sentence do not score)."""
    return answer.strip() == "Yes"


def yes_no(answer: str) -> bool | None:
    """``True`` / ``False`` for an answer that is a yes or a no in any case, with or without a full stop; ``None``
    for anything else (reported as unreadable answers, which score as a no)."""
    word = answer.strip().rstrip(".!").strip().lower()
    return {"yes": True, "no": False}.get(word)
