"""Prompt templates: the release's orbit wording, named / literal templates, random camera-motion augmentation."""

from __future__ import annotations

import random

import pytest

from vist3a.video.templates import (
    CAMERA_MOTION_TEMPLATES,
    NEGATIVE_PROMPT,
    TEMPLATES,
    apply_template,
    augment_prompt,
)


def test_orbit_template_is_the_release_wording():
    expected = (
        "The camera rotates around the scene, maintaining constant distance: `a red chair`. "
        "The orbiting trajectory captures 3D structure and consistency."
    )
    assert apply_template("a red chair", "orbit") == expected


def test_negative_prompt_targets_blur_and_artifacts():
    assert NEGATIVE_PROMPT.startswith("Background blur") and "Artifacts" in NEGATIVE_PROMPT
    assert len(NEGATIVE_PROMPT.split(",")) > 20


@pytest.mark.parametrize("off", [None, "none", "off", "None"])
def test_templates_can_be_turned_off(off):
    assert apply_template("a cat", off) == "a cat"


def test_literal_template_and_braces_in_prompt():
    assert apply_template("a {weird} prompt", "Look: {prompt}!") == "Look: a {weird} prompt!"
    assert "{prompt}" not in apply_template(" a cat ", "dolly_in") and "`a cat`" in apply_template("a cat", "dolly_in")


def test_unknown_template_is_a_clear_error():
    with pytest.raises(ValueError, match=r"`template` must be one of .*'orbit'.*got 'orbt'"):
        apply_template("a cat", "orbt")


def test_every_named_template_has_one_placeholder():
    assert {"orbit", "pan_left", "dolly_in", "dolly_out", "aerial", "arc"} <= set(TEMPLATES)
    for name, text in TEMPLATES.items():
        assert text.count("{prompt}") == 1, name


def test_augment_is_seeded_and_varied():
    seeded = [augment_prompt("a cat", random.Random(seed)) for seed in range(5)]
    assert seeded == [augment_prompt("a cat", random.Random(seed)) for seed in range(5)]
    rng = random.Random(0)
    drawn = {augment_prompt("a cat", rng) for _ in range(200)}
    assert len(drawn) == len(CAMERA_MOTION_TEMPLATES)
    assert all("a cat" in text for text in drawn)


def test_augment_plain_probability_and_subset():
    rng = random.Random(1)
    outs = [augment_prompt("a cat", rng, templates=("orbit", "aerial"), plain_probability=0.5) for _ in range(400)]
    plain = sum(o == "a cat" for o in outs)
    assert 150 < plain < 250
    assert {o for o in outs if o != "a cat"} == {apply_template("a cat", "orbit"), apply_template("a cat", "aerial")}
    with pytest.raises(ValueError, match="plain_probability"):
        augment_prompt("a cat", rng, plain_probability=1.5)
