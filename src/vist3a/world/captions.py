"""Captions for scenes: template paraphrases of the composition, an optional setting and camera-motion phrase.

Captions are a pure function of (scene, rng): the same scene and the same seed give the same caption. Every
object is named by its colour and shape; relations are stated for the canonical view (see
:mod:`vist3a.world.vocab`). :func:`describe_composition` gives the one canonical wording (no
randomness), used for evaluation prompts and CLIP-R-precision variants.
"""

from __future__ import annotations

import random
import re

from vist3a.world.composition import Composition, ObjectSpec
from vist3a.world.scene import Scene
from vist3a.world.vocab import article, make_rng

# Paraphrases of "A <relation> B". "{A}" is the subject, "{B}" the reference; the first template of each
# list is the canonical wording.
_RELATION_TEMPLATES: dict[str, tuple[str, ...]] = {
    "left of": (
        "{A} to the left of {B}", "{A} left of {B}", "{A} on the left side of {B}",
        "{B} with {A} on its left", "{B} to the right of {A}", "{B} and, to its left, {A}",
    ),
    "right of": (
        "{A} to the right of {B}", "{A} right of {B}", "{A} on the right side of {B}",
        "{B} with {A} on its right", "{B} to the left of {A}", "{B} and, to its right, {A}",
    ),
    "behind": (
        "{A} behind {B}", "{A} placed behind {B}", "{A} standing behind {B}",
        "{B} in front of {A}", "{B} with {A} behind it",
    ),
    "in front of": (
        "{A} in front of {B}", "{A} placed in front of {B}", "{B} behind {A}",
        "{B} with {A} in front of it",
    ),
    "on top of": (
        "{A} on top of {B}", "{A} resting on {B}", "{A} sitting on top of {B}",
        "{B} with {A} on top", "{B} with {A} on top of it",
    ),
    "next to": (
        "{A} next to {B}", "{A} beside {B}", "{B} next to {A}", "{A} and {B} side by side", "{B} beside {A}",
    ),
}

CAMERA_PHRASES: dict[str, tuple[str, ...]] = {
    "orbit": ("The camera orbits around {c}.", "A full orbit around {c}.",
              "The camera circles all the way around {c}."),
    "partial_orbit": ("The camera orbits around {c}.", "The camera rotates around the scene: {c}.",
                      "A partial orbit around {c}."),
    "arc": ("The camera moves in an arc around {c}.", "The camera arcs around {c}."),
    "dolly_in": ("The camera slowly moves towards {c}.", "The camera dollies in on {c}.",
                 "A slow push-in towards {c}."),
    "dolly_out": ("The camera slowly pulls back from {c}.", "The camera dollies out from {c}."),
    "pan": ("The camera pans across {c}.", "A slow pan over {c}."),
    "aerial_descend": ("An aerial shot descending towards {c}.", "The camera descends while circling {c}."),
    "aerial_rise": ("An aerial shot rising above {c}.", "The camera rises while circling {c}."),
}

_GROUND_PHRASES = {"checker": ("on a checkered floor",), "noise": ("on a textured floor", "on a mottled floor")}
_BACKGROUND_PHRASES = {"sky": ("under a clear sky",), "wall": ("in front of a plain wall", "against a plain backdrop")}
_PREFIXES = ("", "", "a scene with ", "a 3D scene of ", "a photo of ")


def _noun_phrase(obj: ObjectSpec, definite: bool, rng: random.Random | None) -> str:
    words = [obj.colour, obj.shape]
    if rng is not None and not definite:
        if obj.material is not None and rng.random() < 0.2:
            words.insert(0, obj.material)
        if obj.size is not None and rng.random() < 0.3:
            words.insert(0, obj.size)
    head = "the" if definite else article(words[0])
    return " ".join([head, *words])


def _wording(composition: Composition, rng: random.Random | None) -> str:
    """Clauses for all relations and unrelated objects; canonical (fixed order and templates) if rng is None."""
    clauses: list[tuple[str, dict[str, int]]] = []
    for rel in composition.relations:
        templates = _RELATION_TEMPLATES[rel.relation]
        template = templates[0] if rng is None else rng.choice(templates)
        clauses.append((template, {"A": rel.subject, "B": rel.reference}))
    related = {i for r in composition.relations for i in (r.subject, r.reference)}
    clauses += [("{A}", {"A": i}) for i in range(len(composition.objects)) if i not in related]
    if rng is not None:
        rng.shuffle(clauses)
    mentioned: set[int] = set()
    texts = []
    for template, slots in clauses:
        # fill the placeholders in reading order so that first mentions get "a", later ones "the"
        order = sorted(slots, key=lambda k: template.index("{" + k + "}"))
        filled = {}
        for k in order:
            idx = slots[k]
            filled[k] = _noun_phrase(composition.objects[idx], idx in mentioned, rng)
            mentioned.add(idx)
        texts.append(template.format(**filled))
    if len(texts) == 1:
        return texts[0]
    if len(texts) == 2:
        return f"{texts[0]} and {texts[1]}"
    return ", ".join(texts[:-1]) + ", and " + texts[-1]


def describe_composition(composition: Composition) -> str:
    """The canonical caption of ``composition`` ("a red cube to the left of a blue sphere"); no randomness."""
    return _wording(composition, None)


def caption_for_scene(
    scene: Scene,
    rng: int | str | random.Random | None = None,
    camera_kind: str | None = None,
    camera_phrase_prob: float = 0.5,
    setting_prob: float = 0.3,
) -> str:
    """A paraphrased caption of ``scene`` drawn with ``rng``.

    Names every object by colour and shape (sometimes with size/material), words each relation with one of
    several templates, sometimes adds the setting ("on a checkered floor", "under a clear sky") and, when
    ``camera_kind`` (a :data:`CAMERA_PHRASES` key) is given, with probability ``camera_phrase_prob`` wraps the
    caption in a camera-motion phrase ("The camera orbits around ...").
    """
    if camera_kind is not None and camera_kind not in CAMERA_PHRASES:
        raise ValueError(f"`camera_kind` must be one of {sorted(CAMERA_PHRASES)}, got {camera_kind!r}")
    rng = make_rng(rng)
    text = _wording(scene.composition, rng)
    if rng.random() < setting_prob:
        phrases = (*_GROUND_PHRASES[scene.ground.pattern], *_BACKGROUND_PHRASES[scene.background.kind])
        text = f"{text} {rng.choice(phrases)}"
    if camera_kind is not None and rng.random() < camera_phrase_prob:
        return rng.choice(CAMERA_PHRASES[camera_kind]).format(c=text)
    return rng.choice(_PREFIXES) + text


_LEFT_RIGHT = re.compile(r"\b(left|right)\b")


def mirror_caption(text: str) -> str:
    """The caption of the left-right mirror image of a clip: "left" and "right" swapped, nothing else.

    Exact for the nano world: every shape is mirror-symmetric, camera phrases name no direction, and no other
    word has a handedness, so a mirrored clip with this caption is another valid training example.
    """
    return _LEFT_RIGHT.sub(lambda m: "right" if m.group(1) == "left" else "left", text)

