"""Held-out evaluation prompts and their R-precision candidates: one attribute changed, canonical wording."""

from __future__ import annotations

import pytest

from vist3a.evaluation.prompts import (
    changed_attribute,
    heldout_compositions,
    r_precision_candidates,
    r_precision_prompts,
)
from vist3a.world import Composition, describe_composition, is_heldout


def _differences(a: Composition, b: Composition) -> list[str]:
    """Independent of ``changed_attribute``: every field that differs, object by object, relation by relation."""
    assert len(a.objects) == len(b.objects) and len(a.relations) == len(b.relations)
    out = []
    for i, (x, y) in enumerate(zip(a.objects, b.objects, strict=True)):
        out += [f"object {i} {f}" for f in ("colour", "shape") if getattr(x, f) != getattr(y, f)]
    for j, (x, y) in enumerate(zip(a.relations, b.relations, strict=True)):
        if x.relation != y.relation:
            out.append(f"relation {j} word")
        if (x.subject, x.reference) != (y.subject, y.reference):
            out.append(f"relation {j} direction")
    return out


def test_heldout_compositions_are_distinct_heldout_and_seeded():
    comps = heldout_compositions(24, seed=3)
    assert len(comps) == 24 and len({c.key() for c in comps}) == 24
    assert all(is_heldout(c) for c in comps)
    assert [c.key() for c in heldout_compositions(24, seed=3)] == [c.key() for c in comps]
    assert [c.key() for c in heldout_compositions(24, seed=4)] != [c.key() for c in comps]


@pytest.mark.parametrize("seed", [0, 1])
def test_distractors_differ_in_exactly_one_attribute(seed):
    for truth in heldout_compositions(20, seed=seed):
        candidates = r_precision_candidates(truth)
        assert len(candidates) == 10 and candidates[0] == truth
        keys = [c.key() for c in candidates]
        assert len(set(keys)) == 10  # no distractor is a paraphrase of the truth or of another one
        for variant in candidates[1:]:
            diff = _differences(truth, variant)
            assert len(diff) == 1, (describe_composition(truth), describe_composition(variant), diff)
            expected = {"colour": "colour", "shape": "shape", "word": "relation", "direction": "direction"}
            assert changed_attribute(truth, variant) == expected[diff[0].split()[-1]]


def test_prompts_are_the_canonical_wording_truth_first():
    truth = Composition.of(("red", "cube"), "left of", ("blue", "sphere"))
    prompts = r_precision_prompts(truth)
    assert prompts[0] == "a red cube to the left of a blue sphere"
    assert len(set(prompts)) == 10 and prompts == r_precision_prompts(truth)  # deterministic
    # e.g. the mirrored relation is a direction change, not a paraphrase
    mirrored = Composition.of(("blue", "sphere"), "left of", ("red", "cube"))
    swapped = Composition((truth.objects[0], truth.objects[1]), ((1, "left of", 0),))
    assert changed_attribute(truth, swapped) == "direction"
    assert swapped.key() == mirrored.key()


def test_changed_attribute_rejects_two_changes():
    truth = Composition.of(("red", "cube"), "left of", ("blue", "sphere"))
    with pytest.raises(ValueError, match="exactly one"):
        changed_attribute(truth, Composition.of(("green", "cone"), "left of", ("blue", "sphere")))
    with pytest.raises(ValueError, match="exactly one"):
        changed_attribute(truth, truth)


def test_distractors_are_compositions_the_world_can_show():
    """Nothing stands on a sphere in the world, so "... on top of a sphere" would be rejected by a text prior."""
    from vist3a.world.splits import can_be_sampled

    truth = Composition.of(("red", "cone"), "on top of", ("blue", "cube"))
    candidates = r_precision_candidates(truth, num_candidates=34)  # the truth and all 33 sampleable variants
    assert all(can_be_sampled(c) for c in candidates)
    assert not any(c.objects[1].shape == "sphere" for c in candidates)
    assert any(c.objects[1].shape == "cylinder" for c in candidates)  # flat-topped: allowed
