"""What a caption asserts about a scene: objects (colour, shape, size, material) and relations between them.

A :class:`Composition` is the symbolic half of a scene; :func:`vist3a.world.scene.scene_from_composition`
realises one in 3D, :mod:`~vist3a.world.captions` words it, :mod:`~vist3a.world.splits` decides
whether it is held out. Relations form a forest: each object is the subject of at most one relation (its
placement is defined relative to its reference), and following subject -> reference never loops.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from vist3a.world.vocab import COLOURS, INVERSE_RELATION, MATERIALS, MAX_OBJECTS, RELATIONS, SHAPES, SIZES
from vist3a.world.vocab import check_word as _check

Triple = tuple[str, str, str]  # ("red cube", "left of", "blue sphere")


@dataclass(frozen=True)
class ObjectSpec:
    """One object of a composition. ``size``/``material`` may be None (= chosen when the scene is built)."""

    colour: str
    shape: str
    size: str | None = None
    material: str | None = None

    def __post_init__(self) -> None:
        _check(self.colour, COLOURS, "colour")
        _check(self.shape, SHAPES, "shape")
        if self.size is not None:
            _check(self.size, SIZES, "size")
        if self.material is not None:
            _check(self.material, MATERIALS, "material")

    @property
    def name(self) -> str:
        """``"red cube"``: the words that identify the object in a caption."""
        return f"{self.colour} {self.shape}"

    @property
    def pair(self) -> tuple[str, str]:
        """``(colour, shape)``."""
        return (self.colour, self.shape)


@dataclass(frozen=True)
class Relation:
    """``objects[subject]`` *relation* ``objects[reference]``, e.g. (0, "left of", 1)."""

    subject: int
    relation: str
    reference: int

    def __post_init__(self) -> None:
        _check(self.relation, RELATIONS, "relation")


def canonical_triple(subject: str, relation: str, reference: str) -> Triple:
    """The one spelling of a relation triple shared by all its paraphrases.

    "A right of B" becomes "B left of A", "A in front of B" becomes "B behind A", and "next to" is
    symmetric (names sorted); "on top of" is kept as is.
    """
    _check(relation, RELATIONS, "relation")
    if relation == "right of":
        return (reference, "left of", subject)
    if relation == "in front of":
        return (reference, "behind", subject)
    if relation == "next to":
        a, b = sorted((subject, reference))
        return (a, "next to", b)
    return (subject, relation, reference)


@dataclass(frozen=True)
class Composition:
    """1 to ``MAX_OBJECTS`` objects and the relations between them (see the module docstring for the rules)."""

    objects: tuple[ObjectSpec, ...]
    relations: tuple[Relation, ...] = field(default=())

    def __post_init__(self) -> None:
        objects = tuple(o if isinstance(o, ObjectSpec) else ObjectSpec(*o) for o in self.objects)
        relations = tuple(r if isinstance(r, Relation) else Relation(*r) for r in self.relations)
        object.__setattr__(self, "objects", objects)
        object.__setattr__(self, "relations", relations)
        n = len(objects)
        if not 1 <= n <= MAX_OBJECTS:
            raise ValueError(f"`objects` must hold 1 to {MAX_OBJECTS} objects, got {n}")
        parent: dict[int, int] = {}
        on_top: set[int] = set()
        for rel in relations:
            for role in ("subject", "reference"):
                idx = getattr(rel, role)
                if not 0 <= idx < n:
                    raise ValueError(f"relation {rel} has `{role}` {idx} outside 0..{n - 1}")
            if rel.subject == rel.reference:
                raise ValueError(f"relation {rel} relates object {rel.subject} to itself")
            if rel.subject in parent:
                raise ValueError(
                    f"object {rel.subject} is the subject of two relations; each object may be placed by one "
                    "relation only (state the other one from the other object's side)"
                )
            if rel.relation == "on top of":
                if rel.reference in on_top:
                    raise ValueError(f"two objects are `on top of` object {rel.reference}; at most one may be")
                on_top.add(rel.reference)
            parent[rel.subject] = rel.reference
        for start in parent:
            seen, node = {start}, start
            while node in parent:
                node = parent[node]
                if node in seen:
                    raise ValueError(f"the relations {relations} form a cycle; they must form a forest")
                seen.add(node)

    @classmethod
    def of(cls, *parts) -> Composition:
        """Shorthand for two objects and one relation, or one object.

        ``Composition.of(("red", "cube"), "left of", ("blue", "sphere"))`` or ``Composition.of(("red", "cube"))``.
        """
        if len(parts) == 1:
            return cls((ObjectSpec(*parts[0]),))
        if len(parts) == 3:
            return cls((ObjectSpec(*parts[0]), ObjectSpec(*parts[2])), (Relation(0, parts[1], 1),))
        raise ValueError(f"`Composition.of` takes (object,) or (object, relation, object), got {parts!r}")

    def pairs(self) -> set[tuple[str, str]]:
        """All ``(colour, shape)`` pairs of the composition."""
        return {o.pair for o in self.objects}

    def triples(self) -> set[Triple]:
        """All relations as canonical ``("red cube", relation, "blue sphere")`` triples."""
        return {
            canonical_triple(self.objects[r.subject].name, r.relation, self.objects[r.reference].name)
            for r in self.relations
        }

    def key(self) -> tuple:
        """Hashable identity up to paraphrase: sorted object names, canonical triples; sizes/materials ignored."""
        return (tuple(sorted(o.name for o in self.objects)), tuple(sorted(self.triples())))

    def placement_order(self) -> list[int]:
        """Object indices with every reference placed before its subjects (roots first, by index)."""
        parent = {r.subject: r.reference for r in self.relations}
        order: list[int] = []
        placed: set[int] = set()
        while len(order) < len(self.objects):
            for i in range(len(self.objects)):
                if i not in placed and (i not in parent or parent[i] in placed):
                    order.append(i)
                    placed.add(i)
        return order

    def to_dict(self) -> dict:
        """JSON-ready dict (see :meth:`from_dict`)."""
        return {
            "objects": [
                {"colour": o.colour, "shape": o.shape, "size": o.size, "material": o.material} for o in self.objects
            ],
            "relations": [[r.subject, r.relation, r.reference] for r in self.relations],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Composition:
        """Inverse of :meth:`to_dict`."""
        return cls(
            tuple(ObjectSpec(**o) for o in data["objects"]),
            tuple(Relation(*r) for r in data.get("relations", ())),
        )


def inverse_relation(relation: str) -> str | None:
    """The relation seen from the other object ("left of" -> "right of"); None for "on top of"."""
    return INVERSE_RELATION[_check(relation, RELATIONS, "relation")]
