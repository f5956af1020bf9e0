"""DPG-Bench's question files and its dependency-aware score, on hand-made question graphs."""

from __future__ import annotations

import csv
import itertools

import pytest

from vist3a.errors import UserInputError
from vist3a.evaluation.dpg import (
    DPGItem,
    DPGQuestion,
    category_scores,
    dependency_scores,
    image_score,
    items_for_prompts,
    read_dpg_questions,
)

#   1 (root) ── 2 ── 4
#      └─────── 3     5 (root) ── 6 (parents 3 and 5)
GRAPH = DPGItem("toy1", "a toy prompt", (
    DPGQuestion(1, "Is there a table?", (), "entity - whole"),
    DPGQuestion(2, "Is the table wooden?", (1,), "attribute - texture"),
    DPGQuestion(3, "Is the table round?", (1,), "attribute - shape"),
    DPGQuestion(4, "Is the wood dark?", (2,), "attribute - color"),
    DPGQuestion(5, "Is there a lamp?", (), "entity - whole"),
    DPGQuestion(6, "Is the lamp on the table?", (3, 5), "relation - spatial"),
))


def reference_scores(answers: dict[int, bool]) -> dict[int, float]:
    """The rule written differently: a question scores when it and all its ancestors were answered yes."""
    parents = {q.qid: q.parents for q in GRAPH.questions}

    def ok(qid: int) -> bool:
        return answers[qid] and all(ok(p) for p in parents[qid])

    return {qid: float(ok(qid)) for qid in parents}


def test_a_failed_parent_zeroes_its_descendants():
    all_yes = dict.fromkeys(range(1, 7), True)
    assert image_score(GRAPH, all_yes) == 1.0
    # "no table": 2, 3 lose their parent, 4 its grandparent, 6 one of its parents; only the lamp (5) scores
    answers = {**all_yes, 1: False}
    assert dependency_scores(GRAPH, answers) == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0, 5: 1.0, 6: 0.0}
    assert image_score(GRAPH, answers) == pytest.approx(1 / 6)
    # a child answered yes under a parent answered no does not score; a no under a yes stays a no
    answers = {**all_yes, 3: False, 4: False}
    assert dependency_scores(GRAPH, answers) == {1: 1.0, 2: 1.0, 3: 0.0, 4: 0.0, 5: 1.0, 6: 0.0}


@pytest.mark.parametrize("bits", list(itertools.product([False, True], repeat=6)))
def test_rule_matches_the_ancestor_formulation_on_every_answer_pattern(bits):
    answers = dict(zip(range(1, 7), bits, strict=True))
    assert dependency_scores(GRAPH, answers) == reference_scores(answers)
    assert image_score(GRAPH, answers) == pytest.approx(sum(reference_scores(answers).values()) / 6)


def test_category_scores_use_the_answers_before_the_rule():
    categories = [q.category for q in GRAPH.questions]
    views = [[False, True, True, True, True, True], [True, True, False, True, False, True]]
    scores = category_scores((categories, v) for v in views)
    # entity - whole: questions 1 and 5 over two views: no, yes, yes, no -> 50 %
    assert scores["L2"]["entity - whole"] == pytest.approx(50.0)
    assert scores["L2"]["relation - spatial"] == pytest.approx(100.0)  # yes twice, though its parents failed
    # attribute: 2, 3, 4 over two views: yes yes yes, yes no yes -> 5 / 6
    assert scores["L1"]["attribute"] == pytest.approx(500 / 6)
    assert set(scores["L1"]) == {"entity", "attribute", "relation"}


COLUMNS = ["item_id", "text", "keywords", "proposition_id", "dependency", "category_broad", "category_detailed",
           "tuple", "question_natural_language"]


def write_csv(path, rows):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    return path


def test_question_file_is_read_grouped_and_matched_on_whitespace_normalised_prompts(tmp_path):
    prompt = "A red  cube, on a table."
    path = write_csv(tmp_path / "q.csv", [
        ["p1", prompt, "", "1", "0", "entity", "whole", "entity - whole (cube)", "Is there a cube?"],
        ["p2", "Another prompt", "", "1", "0", "entity", "whole", "entity - whole (dog)", "Is there a dog?"],
        ["p1", prompt, "", "2", "1", "attribute", "color", "attribute - color (cube, red)", "Is the cube red?"],
        ["p1", prompt, "", "3", "1,2", "relation", "spatial", "relation - spatial (cube, table, on)",
         "Is the cube on the table?"],
    ])
    items = read_dpg_questions(path)
    (item,) = items_for_prompts(items, ["A red cube, on a table. "])
    assert item.item_id == "p1" and [q.qid for q in item.questions] == [1, 2, 3]
    assert [q.parents for q in item.questions] == [(), (1,), (1, 2)]
    assert item.questions[2].category == "relation - spatial" and item.questions[2].broad_category == "relation"
    assert item.questions[1].question == "Is the cube red?"
    with pytest.raises(UserInputError, match="no questions for 1 of the 2 prompts"):
        items_for_prompts(items, ["Another prompt", "a prompt of another suite"])


@pytest.mark.parametrize(("rows", "match"), [
    ([["p", "t", "", "1", "0", "e", "w", "entity - whole (x)", "Q?"],
      ["p", "t", "", "2", "3", "e", "w", "entity - whole (y)", "Q?"]], "depends on"),
    ([["p", "t", "", "1", "1", "e", "w", "entity - whole (x)", "Q?"]], "depends on"),
    ([["p", "t", "", "one", "0", "e", "w", "entity - whole (x)", "Q?"]], "integer"),
    ([["p", "t", "", "1", "0", "e", "w", "entity - whole (x)", "Q?"],
      ["p", "t", "", "1", "0", "e", "w", "entity - whole (y)", "Q?"]], "repeated"),
    ([], "no questions"),
])
def test_bad_question_files_are_refused(tmp_path, rows, match):
    """Unreadable rows when the file is read; a broken question graph when a run's prompt uses it."""
    with pytest.raises(UserInputError, match=match):
        items_for_prompts(read_dpg_questions(write_csv(tmp_path / "q.csv", rows)), ["t"])


def test_a_repeated_prompt_keeps_the_later_item(tmp_path):
    path = write_csv(tmp_path / "q.csv", [["a", "t", "", "1", "0", "e", "w", "entity - whole (x)", "Q1?"],
                                          ["b", "t", "", "1", "0", "e", "w", "entity - whole (y)", "Q2?"]])
    (item,) = items_for_prompts(read_dpg_questions(path), ["t"])
    assert item.item_id == "b"


def test_missing_file_or_columns_are_refused(tmp_path):
    with pytest.raises(UserInputError, match="does not exist"):
        read_dpg_questions(tmp_path / "nope.csv")
    (tmp_path / "bad.csv").write_text("item_id,text\np,t\n")
    with pytest.raises(UserInputError, match="lacks the columns"):
        read_dpg_questions(tmp_path / "bad.csv")
