"""DPG-Bench's questions and its dependency-aware score (no model here; the VQA wording is
:mod:`vist3a.evaluation.vqa_protocols`).

DPG-Bench (ELLA, ``TencentQQGYLab/ELLA``, ``dpg_bench/``) decomposes each prompt into yes/no questions that form a
graph: "Is the jello orange?" depends on "Is there jello?". The question file is a CSV with one row per question
and the columns ``item_id, text, proposition_id, dependency, tuple, question_natural_language`` (others are
ignored): ``text`` is the prompt, ``proposition_id`` the question's id within its prompt (1, 2, ...),
``dependency`` the comma-separated ids of its parents (``0``: none) and ``tuple`` its category, e.g.
``attribute - color (jello, orange)``. ELLA's ``dpg_bench/dpg_bench.csv`` (1065 prompts) and the VIST3A release's
``evaluation/gen_eval/dpg_bench_sampled_answers.csv`` (its 100 sampled prompts) both have this layout.

Score of one image (the rule of ELLA's ``compute_dpg_bench.py``, kept by the release's ``dpg_evaluation.py``):
every question is answered; then, in file order, a question whose parent already scores 0 is set to 0 (so a zero
travels down chains whose parents come first, as they do in the files); the image scores the mean over its
questions. A prompt scores the mean over its images (vist3a: the 8 scored views), the benchmark the mean over
prompts, reported x 100. Category scores (L2: the tuple's text before ``(``, e.g. ``entity - whole``; L1: before
``-``, e.g. ``entity``) average the answers *before* the dependency rule, as the references do.
"""

from __future__ import annotations

import csv
import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("item_id", "text", "proposition_id", "dependency", "tuple", "question_natural_language")


@dataclass(frozen=True)
class DPGQuestion:
    """One yes/no question of a prompt.

    Attributes:
        qid: id within its prompt (``proposition_id``, >= 1).
        question: the natural-language question.
        parents: ids of the questions it depends on (the file's ``0``, "no parent", is left out).
        category: L2 category, e.g. ``"attribute - color"``.
    """

    qid: int
    question: str
    parents: tuple[int, ...]
    category: str

    @property
    def broad_category(self) -> str:
        """L1 category, e.g. ``"attribute"``."""
        return self.category.split("-")[0].strip()


@dataclass(frozen=True)
class DPGItem:
    """A prompt and its questions, in file order."""

    item_id: str
    prompt: str
    questions: tuple[DPGQuestion, ...]


def normalize_prompt(text: str) -> str:
    """The key prompts are matched on: whitespace runs collapsed to one space, ends stripped."""
    return " ".join(text.split())


def _int(value: str, what: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise UserInputError(f"DPG question file: {what} must be an integer, got {value!r}") from None


def check_item(item: DPGItem) -> None:
    """Ids unique and >= 1, every parent another question of the same prompt."""
    ids = [q.qid for q in item.questions]
    if len(set(ids)) != len(ids) or min(ids) < 1:
        raise UserInputError(f"DPG question file: item '{item.item_id}' has repeated or non-positive question ids "
                             f"{sorted(ids)}")
    for q in item.questions:
        bad = [p for p in q.parents if p not in ids or p == q.qid]  # a self-parent would be a no-op: a typo
        if bad:
            raise UserInputError(f"DPG question file: question {q.qid} of item '{item.item_id}' depends on {bad}, "
                                 f"which are not other questions of that item (its ids: {sorted(ids)})")


def read_dpg_questions(path: str | os.PathLike) -> dict[str, DPGItem]:
    """The question file (module docstring) as ``{normalize_prompt(text): DPGItem}``; rows of one ``item_id`` are
    gathered in file order, and of two items with the same prompt the later one is kept (as the release's script
    does), with a warning. Raises :class:`~vist3a.errors.UserInputError` for a missing file, missing columns or
    non-integer ids; an item's graph is checked when a run uses it (:func:`items_for_prompts`)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserInputError(f"DPG question file '{path}' does not exist (ELLA's dpg_bench/dpg_bench.csv or the VIST3A "
                             "release's evaluation/gen_eval/dpg_bench_sampled_answers.csv)")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise UserInputError(f"DPG question file '{path}' lacks the columns {missing} (it has {reader.fieldnames})")
        rows: dict[str, list[dict[str, str]]] = defaultdict(list)
        for row in reader:
            rows[row["item_id"]].append(row)
    items: dict[str, DPGItem] = {}
    for item_id, group in rows.items():
        questions = []
        for row in group:
            qid = _int(row["proposition_id"], f"proposition_id of item '{item_id}'")
            parents = tuple(p for p in (_int(d, f"dependency of item '{item_id}' question {qid}")
                                        for d in row["dependency"].split(",")) if p != 0)
            questions.append(DPGQuestion(qid, row["question_natural_language"].strip(), parents,
                                         row["tuple"].split("(")[0].strip()))
        item = DPGItem(item_id, group[0]["text"], tuple(questions))
        key = normalize_prompt(item.prompt)
        if key in items:
            logger.warning("DPG question file '%s': items '%s' and '%s' have the same prompt; the later one is used",
                           path, items[key].item_id, item_id)
        items[key] = item
    if not items:
        raise UserInputError(f"DPG question file '{path}' has no questions")
    return items


def items_for_prompts(items: Mapping[str, DPGItem], prompts: Sequence[str]) -> list[DPGItem]:
    """The item of each prompt, its question graph checked (:func:`check_item`); one
    :class:`~vist3a.errors.UserInputError` says how many prompts have none."""
    found = [items.get(normalize_prompt(p)) for p in prompts]
    missing = [p for p, item in zip(prompts, found, strict=True) if item is None]
    if missing:
        raise UserInputError(f"the DPG question file has no questions for {len(missing)} of the {len(prompts)} "
                             f"prompts (first: {missing[0][:80]!r}); DPG-Bench's score needs the suite's own file")
    for item in dict.fromkeys(found):
        check_item(item)
    return [item for item in found if item is not None]


def dependency_scores(item: DPGItem, answers: Mapping[int, bool]) -> dict[int, float]:
    """Per-question scores of one image after the dependency rule: 1.0 for a yes whose parents all score,
    else 0.0. ``answers``: ``{qid: answered yes}`` for every question of ``item``."""
    scores = {q.qid: float(bool(answers[q.qid])) for q in item.questions}
    for q in item.questions:  # in file order: a parent zeroed earlier in the loop passes its zero on
        if any(scores[p] == 0.0 for p in q.parents):
            scores[q.qid] = 0.0
    return scores


def image_score(item: DPGItem, answers: Mapping[int, bool]) -> float:
    """DPG score of one image in [0, 1]: the mean of :func:`dependency_scores`."""
    scores = dependency_scores(item, answers)
    return sum(scores.values()) / len(scores)


def category_scores(records: Iterable[tuple[Sequence[str], Sequence[bool]]]) -> dict[str, dict[str, float]]:
    """``{"L1": {category: score}, "L2": {...}}`` in percent: the mean answer (before the dependency rule) of the
    questions of each category. ``records``: ``(categories, answers)`` per answered image, the L2 category and the
    yes/no of each question."""
    groups: dict[str, dict[str, list[float]]] = {"L1": defaultdict(list), "L2": defaultdict(list)}
    for categories, answers in records:
        for category, yes in zip(categories, answers, strict=True):
            groups["L2"][category].append(float(yes))
            groups["L1"][category.split("-")[0].strip()].append(float(yes))
    return {level: {c: 100.0 * sum(v) / len(v) for c, v in sorted(g.items())} for level, g in groups.items()}
