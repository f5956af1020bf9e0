"""Prompts of the nano evaluation: held-out compositions and their one-attribute R-precision candidates.

The prompts come from the nano world's held-out split (compositions whose colour-shape pairs or relation triples
never occur in training, :mod:`vist3a.world.splits`), worded canonically
(:func:`~vist3a.world.describe_composition`). The R-precision candidates of a composition are its canonical
caption and ``K - 1`` captions that each change exactly one attribute: an object's colour or shape, a relation
word, or the direction of a relation, among compositions the world can show
(:func:`~vist3a.world.attribute_variant_compositions`).
"""

from __future__ import annotations

import random

from vist3a.world import (
    Composition,
    attribute_variant_compositions,
    describe_composition,
    make_rng,
    sample_composition,
)

#: Candidates per scene (truth included), as in the issue: "top-1 among 10 prompts that differ in attributes".
NUM_CANDIDATES = 10
ATTRIBUTES = ("colour", "shape", "relation", "direction")


def heldout_compositions(num: int, seed: int = 0) -> list[Composition]:
    """``num`` distinct held-out compositions (distinct up to paraphrase), a pure function of ``seed``."""
    if num < 1:
        raise ValueError(f"`num` must be >= 1, got {num}")
    rng = make_rng(seed, "nano-eval-prompts")
    out: dict[tuple, Composition] = {}
    for _ in range(100 * num):
        composition = sample_composition(rng, split="heldout")
        out.setdefault(composition.key(), composition)
        if len(out) == num:
            return list(out.values())
    raise ValueError(f"found only {len(out)} distinct held-out compositions in {100 * num} draws, asked for {num}")


def r_precision_candidates(
    composition: Composition, num_candidates: int = NUM_CANDIDATES, rng: int | str | random.Random | None = None
) -> list[Composition]:
    """``[composition, *variants]``: ``num_candidates - 1`` distinct one-attribute variants after the truth."""
    if num_candidates < 2:
        raise ValueError(f"`num_candidates` must be >= 2 (the truth and a distractor), got {num_candidates}")
    return [composition, *attribute_variant_compositions(composition, num_candidates - 1, rng)]


def r_precision_prompts(
    composition: Composition, num_candidates: int = NUM_CANDIDATES, rng: int | str | random.Random | None = None
) -> list[str]:
    """Canonical captions of :func:`r_precision_candidates`: the true prompt first, then the distractors."""
    return [describe_composition(c) for c in r_precision_candidates(composition, num_candidates, rng)]


def changed_attribute(truth: Composition, variant: Composition) -> str:
    """Which attribute ``variant`` changes: "colour", "shape", "relation" (the word) or "direction" (subject and
    reference swapped). ``ValueError`` unless exactly one attribute of one object or relation differs."""
    if len(truth.objects) != len(variant.objects) or len(truth.relations) != len(variant.relations):
        raise ValueError("the compositions differ in their number of objects or relations")
    changes = []
    for a, b in zip(truth.objects, variant.objects, strict=True):
        changes += [name for name in ("colour", "shape") if getattr(a, name) != getattr(b, name)]
    for a, b in zip(truth.relations, variant.relations, strict=True):
        if (a.subject, a.reference) == (b.reference, b.subject) and a.relation == b.relation:
            changes.append("direction")
        elif (a.subject, a.reference) != (b.subject, b.reference):
            changes.append("placement")
        elif a.relation != b.relation:
            changes.append("relation")
    if len(changes) != 1 or changes[0] not in ATTRIBUTES:
        raise ValueError(f"the compositions differ in {changes or 'nothing'}, not in exactly one attribute")
    return changes[0]
