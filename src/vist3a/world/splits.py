"""The fixed held-out split of compositions, the composition samplers, and attribute-swapped prompts.

Held out (never seen in training) are a hash-chosen ~10% of ``(colour, shape)`` pairs and ~10% of the
canonical relation triples ``("red cube", "left of", "blue sphere")`` (see
:func:`~vist3a.world.composition.canonical_triple`, so "A right of B" and "B left of A" share a fate).
A composition is held out if any of its pairs or triples is. The choice depends only on the words and a
fixed salt (SHA-256), never on a seed, so every machine and every run agrees on the split.
"""

from __future__ import annotations

import hashlib
import random

from vist3a.world.composition import Composition, ObjectSpec, Relation, Triple
from vist3a.world.vocab import COLOURS, FLAT_TOPPED, MAX_OBJECTS, RELATIONS, SHAPES, make_rng

SPLITS = ("train", "heldout")
HELDOUT_PAIR_FRACTION = 0.1
HELDOUT_TRIPLE_FRACTION = 0.1
_SALT = "vist3a-nano-world-heldout-v1"
# probabilities of 1, 2, 3, 4 objects in a sampled composition
_NUM_OBJECTS_WEIGHTS = (0.2, 0.45, 0.25, 0.1)
_DIRECTIONS = ("left of", "right of")
_RELATED_PROB = 0.85  # chance that an object after the first is related to an earlier one
_MAX_REJECTIONS = 10_000


def _unit_hash(*words: str) -> float:
    digest = hashlib.sha256("|".join((_SALT, *words)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def is_heldout_pair(colour: str, shape: str) -> bool:
    """Whether objects of this colour and shape are held out."""
    return _unit_hash("pair", colour, shape) < HELDOUT_PAIR_FRACTION


def is_heldout_triple(triple: Triple) -> bool:
    """Whether this *canonical* relation triple is held out."""
    return _unit_hash("triple", *triple) < HELDOUT_TRIPLE_FRACTION


def heldout_pairs() -> list[tuple[str, str]]:
    """All held-out ``(colour, shape)`` pairs, sorted."""
    return sorted((c, s) for c in COLOURS for s in SHAPES if is_heldout_pair(c, s))


def is_heldout(composition: Composition) -> bool:
    """True if any object's (colour, shape) pair or any relation triple of ``composition`` is held out."""
    return any(is_heldout_pair(*p) for p in composition.pairs()) or any(
        is_heldout_triple(t) for t in composition.triples()
    )


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"`split` must be one of {SPLITS}, got {split!r}")
    return split


def _random_composition(rng: random.Random, num_objects: int | None) -> Composition:
    n = num_objects or rng.choices(range(1, MAX_OBJECTS + 1), weights=_NUM_OBJECTS_WEIGHTS)[0]
    names: set[tuple[str, str]] = set()
    objects: list[ObjectSpec] = []
    while len(objects) < n:  # distinct (colour, shape) pairs keep captions unambiguous
        spec = ObjectSpec(rng.choice(tuple(COLOURS)), rng.choice(SHAPES))
        if spec.pair not in names:
            names.add(spec.pair)
            objects.append(spec)
    relations: list[Relation] = []
    stacked: set[int] = set()
    for i in range(1, n):
        if rng.random() >= _RELATED_PROB:
            continue
        ref = rng.randrange(i)
        choices = [r for r in RELATIONS if r != "on top of"]
        if objects[ref].shape in FLAT_TOPPED and ref not in stacked:
            choices.append("on top of")
        relation = rng.choice(choices)
        if relation == "on top of":
            stacked.add(ref)
        relations.append(Relation(i, relation, ref))
    return Composition(tuple(objects), tuple(relations))


def sample_composition(
    rng: int | str | random.Random | None, split: str = "train", num_objects: int | None = None,
    require_direction: bool = False,
) -> Composition:
    """A random composition of ``split``: "train" rejects held-out ones, "heldout" accepts only those.

    ``num_objects`` (1..MAX_OBJECTS) fixes the object count; otherwise 1-4 objects are drawn, and each
    object after the first is related to an earlier one with high probability. ``require_direction`` rejects
    compositions without a "left of"/"right of" relation (needs ``num_objects`` != 1). Sizes and materials are
    left None (drawn when the scene is built).
    """
    want_heldout = _check_split(split) == "heldout"
    if num_objects is not None and not 1 <= num_objects <= MAX_OBJECTS:
        raise ValueError(f"`num_objects` must be in 1..{MAX_OBJECTS}, got {num_objects}")
    if require_direction and num_objects == 1:
        raise ValueError("a single object has no left/right relation: `require_direction` needs num_objects >= 2")
    rng = make_rng(rng)
    for _ in range(_MAX_REJECTIONS):
        composition = _random_composition(rng, num_objects)
        if require_direction and not any(r.relation in _DIRECTIONS for r in composition.relations):
            continue
        if is_heldout(composition) == want_heldout:
            return composition
    raise RuntimeError(f"no {split} composition found in {_MAX_REJECTIONS} draws")  # unreachable in practice


# ----------------------------------------------------------------------------- attribute variants
def _variants(composition: Composition) -> list[Composition]:
    """Every composition one attribute away: one object's colour or shape, one relation, or its direction."""
    out: list[Composition] = []
    objects, relations = list(composition.objects), list(composition.relations)
    for i, obj in enumerate(objects):
        for colour in COLOURS:
            if colour != obj.colour:
                out.append(_replace_object(composition, i, ObjectSpec(colour, obj.shape, obj.size, obj.material)))
        for shape in SHAPES:
            if shape != obj.shape:
                out.append(_replace_object(composition, i, ObjectSpec(obj.colour, shape, obj.size, obj.material)))
    for j, rel in enumerate(relations):
        for relation in RELATIONS:
            if relation != rel.relation:
                out.append(_replace_relation(composition, j, Relation(rel.subject, relation, rel.reference)))
        out.append(_replace_relation(composition, j, Relation(rel.reference, rel.relation, rel.subject)))
    return out


def _replace_object(composition: Composition, i: int, spec: ObjectSpec) -> Composition:
    objects = list(composition.objects)
    objects[i] = spec
    return Composition(tuple(objects), composition.relations)


def _replace_relation(composition: Composition, j: int, rel: Relation) -> Composition | None:
    relations = list(composition.relations)
    relations[j] = rel
    try:
        return Composition(composition.objects, tuple(relations))
    except ValueError:  # e.g. reversing the relation made an object the subject of two relations
        return None


def can_be_sampled(composition: Composition) -> bool:
    """Whether the composition sampler can draw ``composition``: things stand only on flat-topped shapes."""
    objects = composition.objects
    return all(objects[r.reference].shape in FLAT_TOPPED for r in composition.relations if r.relation == "on top of")


def attribute_variant_compositions(
    composition: Composition, n: int = 10, rng: int | str | random.Random | None = None
) -> list[Composition]:
    """``n`` distinct compositions that each differ from ``composition`` in one attribute (a colour, a shape,
    a relation or its direction), are not a paraphrase of it, and could be sampled (:func:`can_be_sampled`:
    a distractor the world never shows, like something on top of a sphere, would be rejected by a text prior
    alone). Deterministic for a given composition when ``rng`` is None. ValueError if fewer than ``n`` exist."""
    if n < 1:
        raise ValueError(f"`n` must be >= 1, got {n}")
    truth = composition.key()
    unique: dict[tuple, Composition] = {}
    for variant in _variants(composition):
        if variant is not None and variant.key() != truth and can_be_sampled(variant):
            unique.setdefault(variant.key(), variant)
    if len(unique) < n:
        raise ValueError(f"`n` = {n} but only {len(unique)} attribute variants of this composition exist")
    keys = sorted(unique)
    make_rng(rng if rng is not None else repr(truth), "variants").shuffle(keys)
    return [unique[k] for k in keys[:n]]


def attribute_variants(
    composition: Composition, n: int = 10, rng: int | str | random.Random | None = None
) -> list[str]:
    """Prompts for CLIP-R-precision: the canonical captions of :func:`attribute_variant_compositions`
    (compare them with ``describe_composition(composition)``, which uses the same wording)."""
    from vist3a.world.captions import describe_composition

    return [describe_composition(c) for c in attribute_variant_compositions(composition, n, rng)]
