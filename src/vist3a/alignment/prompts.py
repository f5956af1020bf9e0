"""Training prompts of reward alignment: a text file, a per-epoch shuffle, and camera-motion augmentation.

The release aligns on the HPSv2 training prompts, each wrapped in a randomly chosen camera-motion template
("The camera orbits around ...: `prompt`") so that the generator keeps producing 3D-consistent camera moves.
The rewards score the *bare* prompt; the generator sees the augmented one.

Every choice is a pure function of ``(seed, step, rank)`` (see :func:`vist3a.data.derive_rng`), so a resumed run
draws exactly the prompts an uninterrupted one would.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from vist3a.data.sampling import derive_rng
from vist3a.errors import UserInputError
from vist3a.video.templates import CAMERA_MOTION_TEMPLATES, augment_prompt

COMMENT_PREFIX = "#"


def read_prompts(path: str | os.PathLike) -> list[str]:
    """Prompts of a UTF-8 text file, one per line; blank lines and lines starting with ``#`` are skipped.

    Raises :class:`UserInputError` when the file is missing, unreadable, or holds no prompt.
    """
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserInputError(f"--prompts: file '{file}' does not exist (one prompt per line expected)")
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserInputError(f"--prompts: cannot read '{file}' as UTF-8 text: {exc}") from None
    prompts = [line.strip() for line in text.splitlines()]
    prompts = [p for p in prompts if p and not p.startswith(COMMENT_PREFIX)]
    if not prompts:
        raise UserInputError(
            f"--prompts: '{file}' holds no prompt (only blank lines or '{COMMENT_PREFIX}' comments); "
            "write one prompt per line"
        )
    return prompts


@dataclass(frozen=True)
class PromptDraw:
    """One training prompt: ``prompt`` as written (what rewards score) and ``text`` (what the generator sees)."""

    prompt: str
    text: str


class PromptSampler:
    """Deterministic prompt batches: epoch-wise shuffles of the list, optionally camera-augmented.

    Args:
        prompts: the training prompts (non-empty).
        seed: base seed; the shuffle of epoch ``e`` and the templates of step ``s`` derive from it.
        augment: wrap prompts in a random camera-motion template (:func:`vist3a.video.augment_prompt`).
        templates: template names to draw from.
        plain_probability: probability of keeping a prompt bare (the release keeps it as 1 of ~80 choices).
    """

    def __init__(
        self,
        prompts: Sequence[str],
        seed: int = 0,
        *,
        augment: bool = True,
        templates: Sequence[str] = CAMERA_MOTION_TEMPLATES,
        plain_probability: float = 0.0125,
    ) -> None:
        prompts = [str(p) for p in prompts]
        if not prompts:
            raise ValueError("`prompts` must contain at least one prompt, got an empty list")
        if not 0.0 <= plain_probability <= 1.0:
            raise ValueError(f"`plain_probability` must be in [0, 1], got {plain_probability}")
        self.prompts = prompts
        self.seed = seed
        self.augment = augment
        self.templates = tuple(templates)
        self.plain_probability = plain_probability
        self._order_cache: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        if epoch not in self._order_cache:
            order = list(range(len(self.prompts)))
            derive_rng(self.seed, "prompt-order", epoch).shuffle(order)
            self._order_cache = {epoch: order}
        return self._order_cache[epoch]

    def index(self, position: int) -> int:
        """Prompt index at global ``position`` of the stream (epoch = position // len)."""
        epoch, offset = divmod(position, len(self.prompts))
        return self._order(epoch)[offset]

    def draw(self, step: int, batch_size: int = 1, rank: int = 0, world_size: int = 1) -> list[PromptDraw]:
        """The ``batch_size`` prompts of process ``rank`` at training ``step`` (ranks get disjoint positions)."""
        start = (step * world_size + rank) * batch_size
        draws = []
        for j in range(batch_size):
            prompt = self.prompts[self.index(start + j)]
            text = prompt
            if self.augment:
                rng = derive_rng(self.seed, "prompt-template", step, rank, j)
                text = augment_prompt(prompt, rng, self.templates, self.plain_probability)
            draws.append(PromptDraw(prompt=prompt, text=text))
        return draws
