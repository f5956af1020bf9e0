"""Reward terms for alignment, composable with weights, and the paper's and the release's mixes.

Every term maps a rollout's images to a reward per rollout ``[B]`` (higher is better); a :class:`RewardMix`
turns them into the loss ``-sum_k weight_k * mean_b reward_k``. Two image sources exist for a rollout of ``T``
frames (both ``[B, T or R, 3, H, W]`` in ``[0, 1]``, at the same size):

- ``"decoded"``: the VAE-decoded video frames (resized to the render size),
- ``"rendered"``: the stitched decoder's Gaussians rendered at its *predicted* camera of the same frame.

Terms (registry :data:`REWARD_TERMS`, name -> class; unknown names raise ``ValueError``):

- ``"image_text"`` (:class:`ImageTextReward`): an :class:`~vist3a.alignment.scorers.ImageTextScorer` value ``s``
  mapped to ``v = scale * s + offset``, or to ``-|target - v|`` when ``target`` is set;
- ``"consistency"`` (:class:`ConsistencyReward`): ``-L1(decoded, rendered) - lpips_weight * LPIPS``.

Each step draws one random order of the ``T`` frames; a term with ``num_views = k`` uses the first ``k`` of it
(``None``: all frames), so terms with equal ``k`` see the same views. Mixes as data (:data:`REWARD_MIXES`):

- ``"paper"``: DFN-CLIP + HPSv2.1 - 2 on decoded frames (weight 1/16) and on renders (1/16), consistency
  (0.05) with LPIPS weight 0.25; every term on 2 sampled views (the paper gives the view count only for
  consistency);
- ``"release"``: ``0.25 |1 - PickScore / 100| + 0.25 (1 - DFN-CLIP cosine)`` on 13 renders and on 1 decoded
  frame, no consistency term.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch

from vist3a.alignment.scorers import ImageTextScorer
from vist3a.errors import UserInputError

logger = logging.getLogger(__name__)

SOURCES = ("decoded", "rendered")
#: ``lpips(a, b) -> [N]`` on ``[N, 3, H, W]`` images in ``[-1, 1]`` (the ``lpips`` package's convention).
LpipsFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class RewardInputs:
    """What the terms see for ``B`` rollouts.

    Attributes:
        prompts: ``B`` bare prompts (without camera template), one per rollout.
        frames: ``[B, T, 3, H, W]`` decoded frames in ``[0, 1]``.
        renders: ``[B, R, 3, H, W]`` renders in ``[0, 1]`` at the predicted cameras of ``render_views``.
        render_views: frame index of each of the ``R`` renders.
    """

    prompts: list[str]
    frames: torch.Tensor
    renders: torch.Tensor | None = None
    render_views: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.frames.ndim != 5 or self.frames.shape[2] != 3:
            raise ValueError(f"`frames` must be [B, T, 3, H, W], got {tuple(self.frames.shape)}")
        if len(self.prompts) != self.frames.shape[0]:
            raise ValueError(f"`prompts` must hold B={self.frames.shape[0]} prompts, got {len(self.prompts)}")
        if self.renders is not None:
            expected = (*self.frames.shape[:1], len(self.render_views), *self.frames.shape[2:])
            if tuple(self.renders.shape) != expected:
                raise ValueError(
                    f"`renders` must be [B, R={len(self.render_views)}, 3, H, W] = {expected} like `frames`, "
                    f"got {tuple(self.renders.shape)}"
                )

    def images(self, source: str, views: Sequence[int]) -> torch.Tensor:
        """``[B, k, 3, H, W]``: the decoded frames or renders of frame indices ``views``."""
        if source == "decoded":
            return self.frames[:, list(views)]
        if source != "rendered":
            raise ValueError(f"`source` must be one of {SOURCES}, got {source!r}")
        position = {v: i for i, v in enumerate(self.render_views)}
        missing = [v for v in views if v not in position]
        if self.renders is None or missing:
            raise ValueError(f"views {missing or list(views)} were not rendered (rendered: {list(self.render_views)})")
        return self.renders[:, [position[v] for v in views]]


def _number(term: str, key: str, value: Any) -> float:
    """``value`` as a finite float, else ``ValueError`` naming the term and the key."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ValueError(f"`{key}` of reward {term!r} must be a finite number, got {value!r}")
    return float(value)


class RewardTerm:
    """Base of the reward terms: a ``name``, a ``weight``, how many views it uses, and which sources."""

    kind: ClassVar[str] = ""

    def __init__(self, name: str, weight: float, num_views: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"`name` must be a non-empty string, got {name!r}")
        _number(name, "weight", weight)
        if num_views is not None and (isinstance(num_views, bool) or not isinstance(num_views, int) or num_views < 1):
            raise ValueError(
                f"`num_views` of reward {name!r} must be None (all frames) or an int >= 1, got {num_views!r}"
            )
        self.name, self.weight, self.num_views = name, float(weight), num_views

    @property
    def sources(self) -> tuple[str, ...]:
        raise NotImplementedError

    def __call__(self, inputs: RewardInputs, views: Sequence[int]) -> torch.Tensor:
        """Reward per rollout ``[B]`` (float32, differentiable) on frame indices ``views``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, weight={self.weight}, num_views={self.num_views})"


class ImageTextReward(RewardTerm):
    """Prompt fidelity / quality from an image-text scorer, averaged over the term's views.

    Per image ``v = scale * score + offset``, replaced by ``-|target - v|`` when ``target`` is set (the release's
    PickScore term: ``scale = 0.01``, ``target = 1``). ``source``: ``"decoded"`` or ``"rendered"``.
    """

    kind = "image_text"

    def __init__(
        self,
        name: str,
        weight: float,
        scorer: ImageTextScorer,
        source: str = "rendered",
        scale: float = 1.0,
        offset: float = 0.0,
        target: float | None = None,
        num_views: int | None = None,
    ) -> None:
        super().__init__(name, weight, num_views)
        if source not in SOURCES:
            raise ValueError(f"`source` of reward {name!r} must be one of {SOURCES}, got {source!r}")
        if not callable(getattr(scorer, "score", None)):
            raise ValueError(f"`scorer` of reward {name!r} must have a score(images, prompts) method, got {scorer!r}")
        self.scorer, self.source = scorer, source
        self.scale, self.offset = _number(name, "scale", scale), _number(name, "offset", offset)
        self.target = None if target is None else _number(name, "target", target)

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,)

    def __call__(self, inputs: RewardInputs, views: Sequence[int]) -> torch.Tensor:
        images = inputs.images(self.source, views)  # [B, k, 3, H, W]
        batch, k = images.shape[:2]
        prompts = [p for p in inputs.prompts for _ in range(k)]
        value = self.scale * self.scorer.score(images.flatten(0, 1), prompts).float() + self.offset
        if self.target is not None:
            value = -(self.target - value).abs()
        return value.view(batch, k).mean(1)


class ConsistencyReward(RewardTerm):
    """3D consistency: ``-L1(decoded, rendered) - lpips_weight * LPIPS(decoded, rendered)`` per view, averaged.

    L1 is the mean absolute difference over pixels and channels of images in ``[0, 1]``. ``lpips``: a
    function ``(a, b) -> [N]`` on images in ``[-1, 1]`` (see :func:`load_lpips`); ``None`` drops the LPIPS
    part (logged once).
    """

    kind = "consistency"

    def __init__(
        self,
        name: str,
        weight: float,
        num_views: int | None = 2,
        lpips_weight: float = 0.25,
        lpips: LpipsFn | None = None,
    ) -> None:
        super().__init__(name, weight, num_views)
        if _number(name, "lpips_weight", lpips_weight) < 0:
            raise ValueError(f"`lpips_weight` of reward {name!r} must be >= 0, got {lpips_weight}")
        self.lpips_weight, self.lpips = float(lpips_weight), lpips
        if self.lpips_weight > 0 and lpips is None:
            logger.warning("reward %r: LPIPS is unavailable, using the L1 part only (pip install lpips)", name)

    @property
    def sources(self) -> tuple[str, ...]:
        return ("decoded", "rendered")

    def __call__(self, inputs: RewardInputs, views: Sequence[int]) -> torch.Tensor:
        decoded = inputs.images("decoded", views).float()
        rendered = inputs.images("rendered", views).float()
        batch, k = decoded.shape[:2]
        reward = -(decoded - rendered).abs().flatten(2).mean(-1)  # [B, k]
        if self.lpips is not None and self.lpips_weight > 0:
            distance = self.lpips(decoded.flatten(0, 1) * 2 - 1, rendered.flatten(0, 1) * 2 - 1)
            reward = reward - self.lpips_weight * distance.float().reshape(batch, k)
        return reward.mean(1)


#: term kind -> class.
REWARD_TERMS: dict[str, type[RewardTerm]] = {cls.kind: cls for cls in (ImageTextReward, ConsistencyReward)}


@dataclass
class RewardOutput:
    """``loss`` (scalar, ``-sum w_k mean_b r_k``) and each term's batch-mean reward (detached scalars)."""

    loss: torch.Tensor
    rewards: dict[str, torch.Tensor] = field(default_factory=dict)


class RewardMix:
    """Weighted terms sharing one random view order per step.

    Example::

        mix = build_reward_mix("release", scorer_for=lambda name: load_scorer(name))
        views = mix.draw_views(num_frames=13, generator=g)
        renders = render(scene, mix.rendered_views(views))
        out = mix(RewardInputs(prompts, frames, renders, mix.rendered_views(views)), views)
    """

    def __init__(self, terms: Sequence[RewardTerm]) -> None:
        names = [t.name for t in terms]
        if len(set(names)) != len(names):
            raise ValueError(f"reward term names must be unique, got {names}")
        self.terms = list(terms)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.terms]

    def draw_views(self, num_frames: int, generator: torch.Generator | None = None) -> dict[str, tuple[int, ...]]:
        """Frame indices per term: the first ``num_views`` of one random permutation of ``range(num_frames)``."""
        if num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {num_frames}")
        order = torch.randperm(num_frames, generator=generator).tolist()
        return {t.name: tuple(order[: min(t.num_views or num_frames, num_frames)]) for t in self.terms}

    def rendered_views(self, views: Mapping[str, Sequence[int]]) -> tuple[int, ...]:
        """Sorted union of the views of every term that needs renders (what has to be rendered)."""
        needed = {v for t in self.terms if "rendered" in t.sources for v in views[t.name]}
        return tuple(sorted(needed))

    @property
    def needs_renders(self) -> bool:
        return any("rendered" in t.sources for t in self.terms)

    def __call__(self, inputs: RewardInputs, views: Mapping[str, Sequence[int]]) -> RewardOutput:
        loss = inputs.frames.new_zeros((), dtype=torch.float32)
        rewards = {}
        for term in self.terms:
            value = term(inputs, views[term.name])
            loss = loss - term.weight * value.mean()
            rewards[term.name] = value.detach().mean()
        return RewardOutput(loss, rewards)


# ----------------------------------------------------------------------------- mixes as data
def _release_mix() -> list[dict[str, Any]]:
    pick = {"type": "image_text", "scorer": "pickscore", "weight": 0.25, "scale": 0.01, "target": 1.0}
    dfn = {"type": "image_text", "scorer": "dfn-clip", "weight": 0.25, "offset": -1.0}
    return [
        {**pick, "name": "pickscore_rendered", "source": "rendered", "num_views": 13},
        {**dfn, "name": "dfn_clip_rendered", "source": "rendered", "num_views": 13},
        {**pick, "name": "pickscore_decoded", "source": "decoded", "num_views": 1},
        {**dfn, "name": "dfn_clip_decoded", "source": "decoded", "num_views": 1},
    ]


def _paper_mix() -> list[dict[str, Any]]:
    terms = []
    for source in SOURCES:
        for scorer, label in (("dfn-clip", "dfn_clip"), ("hpsv2.1", "hpsv2")):
            terms.append({"type": "image_text", "name": f"{label}_{source}", "scorer": scorer, "source": source,
                          "weight": 1 / 16, "offset": -1.0, "num_views": 2})
    terms.append({"type": "consistency", "name": "consistency", "weight": 0.05, "lpips_weight": 0.25, "num_views": 2})
    return terms


def _nano_mix() -> list[dict[str, Any]]:
    """The paper's mix with the one nano image-text model (a cosine in [-1, 1], like DFN-CLIP): the release mix's
    PickScore terms expect logits ~20 and would be nearly flat with it."""
    terms = [{"type": "image_text", "name": f"clip_{source}", "scorer": "nano-clip", "source": source,
              "weight": 1 / 8, "offset": -1.0, "num_views": 2} for source in SOURCES]
    terms.append({"type": "consistency", "name": "consistency", "weight": 0.05, "lpips_weight": 0.25, "num_views": 2})
    return terms


#: Named mixes: name -> function returning fresh term specs (JSON-friendly dicts).
REWARD_MIXES: dict[str, Callable[[], list[dict[str, Any]]]] = {
    "release": _release_mix, "paper": _paper_mix, "nano": _nano_mix,
}


def default_reward_mix(preset: str, on_cuda: bool) -> str:
    """``--reward-mix auto``: ``nano`` for the nano preset; else ``release`` on CUDA and ``paper`` on CPU (the
    release mix back-propagates through 13 renders, more memory than a small CPU box has)."""
    if preset == "nano":
        return "nano"
    return "release" if on_cuda else "paper"


def parse_reward_mix(spec: str | Sequence[Mapping[str, Any]] | Mapping[str, Any]) -> list[dict[str, Any]]:
    """Term specs from a mix name (:data:`REWARD_MIXES`), a JSON string, a JSON file path, or Python data.

    JSON is a list of term objects or ``{"terms": [...]}``; each object has ``type`` (a :data:`REWARD_TERMS`
    key), ``weight``, and that term's options (``name``, ``num_views``; ``scorer``, ``source``, ``scale``,
    ``offset``, ``target`` for ``image_text``; ``lpips_weight`` for ``consistency``).
    """
    data: Any = spec
    if isinstance(spec, str):
        text = spec.strip()
        if text in REWARD_MIXES:
            return REWARD_MIXES[text]()
        if not text.startswith(("[", "{")):
            path = Path(text).expanduser()
            if not path.is_file():
                raise UserInputError(
                    f"--reward-mix must be one of {sorted(REWARD_MIXES)}, a JSON list of terms, or a JSON file; "
                    f"got {spec!r}"
                )
            text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserInputError(f"--reward-mix is not valid JSON: {exc}") from None
    if isinstance(data, Mapping):
        data = data.get("terms")
    if not isinstance(data, Sequence) or isinstance(data, str) or not data:
        raise UserInputError(f"a reward mix must be a non-empty list of term objects, got {spec!r:.200}")
    if not all(isinstance(t, Mapping) for t in data):
        raise UserInputError(f"every reward term must be a JSON object, got {data!r:.200}")
    return [dict(t) for t in data]


def load_lpips(net: str = "vgg", device: torch.device | str = "cpu") -> LpipsFn | None:
    """LPIPS from the ``lpips`` package (frozen), or ``None`` with a logged warning when it cannot be loaded."""
    try:
        import lpips
    except ImportError:
        logger.info("the `lpips` package is not installed")  # the consistency term warns, naming itself
        return None
    try:
        model = lpips.LPIPS(net=net, verbose=False).to(device).eval().requires_grad_(False)
    except Exception as exc:  # weights unavailable offline, etc.
        logger.warning("LPIPS (%s) could not be loaded (%s): the consistency reward uses L1 only", net, exc)
        return None
    return lambda a, b: model(a, b).flatten()


def build_reward_term(
    spec: Mapping[str, Any], scorer_for: Callable[[str], ImageTextScorer], lpips: LpipsFn | None = None
) -> RewardTerm:
    """One term from its spec; ``scorer_for(name)`` resolves scorer names of ``image_text`` terms."""
    options = dict(spec)
    kind = options.pop("type", None)
    if kind not in REWARD_TERMS:
        raise ValueError(f"reward term `type` must be one of {sorted(REWARD_TERMS)}, got {kind!r} in {dict(spec)}")
    allowed = {
        "image_text": {"name", "weight", "scorer", "source", "scale", "offset", "target", "num_views"},
        "consistency": {"name", "weight", "num_views", "lpips_weight"},
    }[kind]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"reward term {kind!r} does not take {unknown}; allowed keys: {sorted(allowed)}")
    if "weight" not in options:
        raise ValueError(f"reward term {dict(spec)} needs a `weight`")
    if kind == "image_text":
        scorer_name = options.pop("scorer", None)
        if not isinstance(scorer_name, str):
            raise ValueError(f"reward term {dict(spec)} needs a `scorer` name")
        options.setdefault("name", f"{scorer_name}_{options.get('source', 'rendered')}")
        return ImageTextReward(scorer=scorer_for(scorer_name), **options)
    options.setdefault("name", "consistency")
    return ConsistencyReward(lpips=lpips if options.get("lpips_weight", 0.25) != 0 else None, **options)


def build_reward_mix(
    spec: str | Sequence[Mapping[str, Any]] | Mapping[str, Any],
    scorer_for: Callable[[str], ImageTextScorer],
    lpips: LpipsFn | str | None = "auto",
    device: torch.device | str = "cpu",
) -> RewardMix:
    """A :class:`RewardMix` from a spec (see :func:`parse_reward_mix`).

    ``scorer_for(name)`` returns the scorer for a name (called once per distinct name). ``lpips="auto"`` loads
    LPIPS only when a consistency term wants it (:func:`load_lpips`); pass a function or ``None`` to choose.
    """
    specs = parse_reward_mix(spec)
    cache: dict[str, ImageTextScorer] = {}

    def cached(name: str) -> ImageTextScorer:
        if name not in cache:
            cache[name] = scorer_for(name)
        return cache[name]

    wants_lpips = any(s.get("type") == "consistency" and s.get("lpips_weight", 0.25) != 0 for s in specs)
    if isinstance(lpips, str):
        if lpips != "auto":
            raise ValueError(f"`lpips` must be 'auto', None or a function, got {lpips!r}")
        lpips = load_lpips(device=device) if wants_lpips else None
    return RewardMix([build_reward_term(s, cached, lpips) for s in specs])
