"""Prompt templates: the camera-motion wording that makes Wan produce 3D-consistent, orbit-like clips.

At generation the release wraps every prompt in one fixed orbit template (``"orbit"`` below) and uses a long
negative prompt against blur and artifacts; during reward alignment it wraps training prompts in randomly
chosen camera-motion templates (:func:`augment_prompt`). Like the release, templates put the user prompt in
backticks. Templates are plain strings with one ``{prompt}`` placeholder; substitution is literal (no
``str.format``), so braces inside prompts are safe.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

PLACEHOLDER = "{prompt}"

#: The release's generation template (the released LoRA was aligned with it); the default of ``vist3a generate``.
ORBIT_TEMPLATE = (
    "The camera rotates around the scene, maintaining constant distance: `{prompt}`. "
    "The orbiting trajectory captures 3D structure and consistency."
)

#: The release's negative prompt at generation (a keyword list against blur, artifacts and deformations).
#: Source: gohyojun15/VIST3A ``inference_t23d.py`` (data, kept verbatim so results match the release).
NEGATIVE_PROMPT = (
    "Background blur, Blurred background, Blurred scene, Artifacts, not aesthetic, not realistic, rendered noise, "
    "low quality movement, low quality video, low quality image, deformed, disfigured, distorted, extra limbs, "
    "cloned face, skinny, glitchy, double torso, extra arms, extra hands, mangled fingers, missing lips, ugly face, "
    "distorted legs, fused fingers, too many fingers, long neck"
)

#: Named templates. ``orbit`` is the release's; the others are vist3a's own wording of common camera moves,
#: used to diversify prompts in training (:func:`augment_prompt`).
TEMPLATES: dict[str, str] = {
    "orbit": ORBIT_TEMPLATE,
    "orbit_subject": "The camera circles the central subject at a steady radius: `{prompt}`. Every side shows.",
    "orbit_half": "The camera travels a half circle around `{prompt}`, from a front view to a side view.",
    "pan_left": "The camera pans slowly from right to left across `{prompt}`, revealing the scene bit by bit.",
    "pan_right": "A smooth left-to-right pan sweeps over `{prompt}`.",
    "dolly_in": "The camera dollies forward toward `{prompt}`. Depth and parallax grow as it approaches.",
    "dolly_out": "The camera pulls back from `{prompt}` and gradually shows the wider surroundings.",
    "truck": "The camera slides sideways, parallel to `{prompt}`, so near and far parts shift against each other.",
    "arc": "Moving along a gentle arc, the camera keeps `{prompt}` centred while the background parallax changes.",
    "aerial": "A drone shot glides above `{prompt}`, showing its layout from a high vantage point.",
    "crane_up": "The camera rises like a crane over `{prompt}`, turning a ground view into an overview.",
    "crane_down": "The camera descends smoothly toward `{prompt}` and settles on its details.",
    "tilt_up": "The camera tilts upward across `{prompt}`, emphasising height and scale.",
    "spiral": "The camera spirals around `{prompt}` while slowly gaining height.",
    "fly_through": "The camera flies steadily through `{prompt}`, exploring it from the inside.",
    "walkthrough": "A handheld walk-through moves gently around `{prompt}` at eye level.",
}

#: Templates that :func:`augment_prompt` draws from by default (every named one).
CAMERA_MOTION_TEMPLATES: tuple[str, ...] = tuple(TEMPLATES)

_OFF = ("none", "off", "")


def resolve_template(template: str | None) -> str | None:
    """Turn a template name or literal into the literal template string; ``None``/"none"/"off" mean no template."""
    if template is None or template.strip().lower() in _OFF:
        return None
    if template in TEMPLATES:
        return TEMPLATES[template]
    if PLACEHOLDER in template:
        return template
    raise ValueError(
        f"`template` must be one of {sorted(TEMPLATES)}, 'none', or a string containing '{PLACEHOLDER}', "
        f"got {template!r}"
    )


def apply_template(prompt: str, template: str | None = None) -> str:
    """Wrap ``prompt`` in ``template`` (a name from :data:`TEMPLATES` or a literal with ``{prompt}``).

    ``template=None`` (or "none"/"off") returns the prompt unchanged.
    """
    if not isinstance(prompt, str):
        raise ValueError(f"`prompt` must be a str, got {type(prompt).__name__}")
    literal = resolve_template(template)
    return prompt if literal is None else literal.replace(PLACEHOLDER, prompt.strip())


def augment_prompt(
    prompt: str,
    rng: random.Random,
    templates: Sequence[str] = CAMERA_MOTION_TEMPLATES,
    plain_probability: float = 0.0,
) -> str:
    """Wrap ``prompt`` in a camera-motion template drawn uniformly from ``templates`` with ``rng``.

    With probability ``plain_probability`` the prompt is returned unwrapped (the release keeps the bare
    prompt as one of its ~80 choices, i.e. about 0.0125). ``rng`` is a ``random.Random`` so that callers
    control reproducibility.
    """
    if not templates:
        raise ValueError("`templates` must name at least one template, got an empty sequence")
    if not 0.0 <= plain_probability <= 1.0:
        raise ValueError(f"`plain_probability` must be in [0, 1], got {plain_probability}")
    if plain_probability > 0.0 and rng.random() < plain_probability:
        return prompt
    return apply_template(prompt, rng.choice(list(templates)))
