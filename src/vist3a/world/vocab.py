"""The words of the synthetic world: colours (with their sRGB values), shapes, sizes, materials, relations.

Everything a caption can say is listed here, so that captions, held-out splits and the scene sampler agree
on one vocabulary. World frame (used by every module of :mod:`vist3a.world`): ``y`` up, the ground is
the plane ``y = 0``, and the *canonical viewer* stands on the ``+z`` side looking towards ``-z``; so "left"
is ``-x``, "right" is ``+x``, "behind" is ``-z`` (away from the viewer) and "in front of" is ``+z``.
Spatial relations in captions are stated for that canonical view; every camera path starts near it.
"""

from __future__ import annotations

import random

# sRGB colours in [0, 1]; saturated enough to be named unambiguously after shading.
COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.86, 0.10, 0.10),
    "green": (0.15, 0.66, 0.20),
    "blue": (0.12, 0.30, 0.88),
    "yellow": (0.96, 0.86, 0.14),
    "purple": (0.55, 0.20, 0.76),
    "orange": (0.98, 0.50, 0.06),
    "white": (0.94, 0.94, 0.94),
    "black": (0.07, 0.07, 0.07),
    "pink": (0.98, 0.55, 0.74),
    "cyan": (0.12, 0.80, 0.86),
    "brown": (0.48, 0.29, 0.14),
    "gray": (0.50, 0.50, 0.50),
}

SHAPES: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus", "pyramid")

# Half-extent ``s`` of an object (world units) per size word: sampled uniformly in the range.
SIZES: dict[str, tuple[float, float]] = {"small": (0.28, 0.36), "large": (0.50, 0.62)}

# Blinn-Phong specular strength and exponent per material.
MATERIALS: dict[str, tuple[float, float]] = {"matte": (0.0, 1.0), "shiny": (0.6, 60.0)}

RELATIONS: tuple[str, ...] = ("left of", "right of", "behind", "in front of", "on top of", "next to")

# ``A rel B`` <=> ``B inverse[rel] A``; "on top of" has no inverse word in the vocabulary.
INVERSE_RELATION: dict[str, str | None] = {
    "left of": "right of",
    "right of": "left of",
    "behind": "in front of",
    "in front of": "behind",
    "next to": "next to",
    "on top of": None,
}

# Shapes with a flat top that something can stand on (the sampler only stacks on these).
FLAT_TOPPED: tuple[str, ...] = ("cube", "cylinder")

MAX_OBJECTS = 4


def article(word: str) -> str:
    """English indefinite article for the word that follows it."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def check_word(value: str, vocabulary, name: str) -> str:
    """Return ``value`` if it is in ``vocabulary``; ValueError naming ``name`` and the allowed words otherwise."""
    if value not in vocabulary:
        raise ValueError(f"`{name}` must be one of {sorted(vocabulary)}, got {value!r}")
    return value


def make_rng(seed: int | str | random.Random | None, *keys: object) -> random.Random:
    """A ``random.Random`` for ``seed`` (and optional sub-keys), reproducible across runs and machines.

    A ``Random`` passed with no keys is returned as is (its state is shared); otherwise a fresh generator is
    seeded from the string ``"seed|key1|key2..."`` (Python seeds ``str`` through SHA-512, so this does not
    depend on ``PYTHONHASHSEED``). ``None`` means seed 0.
    """
    if isinstance(seed, random.Random):
        if not keys:
            return seed
        seed = seed.getrandbits(64)
    parts = ["0" if seed is None else str(seed), *(str(k) for k in keys)]
    return random.Random("|".join(parts))
