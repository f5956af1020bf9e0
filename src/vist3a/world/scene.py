"""Scene descriptions (JSON-serialisable dataclasses) and how to build one from a composition.

A :class:`Scene` is everything the renderer needs: placed objects, a textured ground plane ``y = 0``, a
background and one directional light. It also keeps its relations, so the composition (and hence the
caption) can always be read back from the scene. World frame: see :mod:`vist3a.world.vocab`
(``y`` up, canonical viewer on ``+z`` looking at ``-z``; "left" = ``-x``, "behind" = ``-z``).
"""

from __future__ import annotations

import colorsys
import json
import math
import random
from dataclasses import asdict, dataclass, field

from vist3a.world.composition import Composition, ObjectSpec, Relation
from vist3a.world.sdf import shape_extent
from vist3a.world.vocab import COLOURS, FLAT_TOPPED, MATERIALS, SIZES, make_rng

Vec3 = tuple[float, float, float]

_GAP = (0.12, 0.35)  # free space between related objects' footprints
_LATERAL_JITTER = 0.25  # sideways offset of a related object, as a fraction of the smaller footprint
_MAX_LAYOUT_ATTEMPTS = 64


@dataclass
class SceneObject:
    """A placed object. ``position`` is its centre (world); ``yaw`` (radians) turns it about the y axis;
    ``scale`` is its half-extent ``s`` (see :mod:`vist3a.world.sdf`); ``rgb`` is sRGB in [0, 1]."""

    shape: str
    colour: str
    size: str
    material: str
    scale: float
    position: Vec3
    yaw: float
    rgb: Vec3

    @property
    def spec(self) -> ObjectSpec:
        """The object as a caption sees it."""
        return ObjectSpec(self.colour, self.shape, self.size, self.material)


@dataclass
class Ground:
    """The plane ``y = 0``: ``pattern`` "checker" (squares of side ``scale``) or "noise" (value noise with
    feature size ``scale``, lattice drawn from ``seed``), blending sRGB ``colour_a`` and ``colour_b``."""

    pattern: str
    colour_a: Vec3
    colour_b: Vec3
    scale: float
    seed: int


@dataclass
class Background:
    """What rays that hit nothing see: "sky" (gradient from ``horizon`` to ``zenith`` with ray elevation)
    or "wall" (a coloured backdrop at infinity, ``horizon`` at eye level shading to ``zenith`` above)."""

    kind: str
    horizon: Vec3
    zenith: Vec3


@dataclass
class Light:
    """One directional light: ``direction`` points *towards* the light (unit, world); ``ambient`` is the
    fraction of light that reaches every surface regardless of orientation and shadow."""

    direction: Vec3
    intensity: float
    ambient: float


@dataclass
class Scene:
    """A complete scene description; ``to_json``/``from_json`` round-trip it exactly."""

    objects: list[SceneObject]
    relations: list[Relation]
    ground: Ground
    background: Background
    light: Light
    meta: dict = field(default_factory=dict)

    @property
    def composition(self) -> Composition:
        """The composition the scene realises (sizes and materials included)."""
        return Composition(tuple(o.spec for o in self.objects), tuple(self.relations))

    @property
    def centre(self) -> Vec3:
        """Centre of the objects' bounding box (cameras look at this region)."""
        lo, hi = _bbox(self.objects)
        return ((lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, (lo[2] + hi[2]) / 2)

    @property
    def radius(self) -> float:
        """Radius of a sphere around :attr:`centre` that contains every object."""
        c = self.centre
        return max(
            math.dist(o.position, c) + shape_extent(o.shape, o.scale).bound for o in self.objects
        )

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        out = asdict(self)
        out["relations"] = [[r.subject, r.relation, r.reference] for r in self.relations]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> Scene:
        """Inverse of :meth:`to_dict`."""
        return cls(
            objects=[SceneObject(**{k: tuple(v) if isinstance(v, list) else v for k, v in o.items()})
                     for o in data["objects"]],
            relations=[Relation(*r) for r in data["relations"]],
            ground=Ground(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["ground"].items()}),
            background=Background(**{k: tuple(v) if isinstance(v, list) else v
                                     for k, v in data["background"].items()}),
            light=Light(**{k: tuple(v) if isinstance(v, list) else v for k, v in data["light"].items()}),
            meta=dict(data.get("meta", {})),
        )

    def to_json(self) -> str:
        """The scene as a JSON string (stable key order)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Scene:
        """Inverse of :meth:`to_json`."""
        return cls.from_dict(json.loads(text))


def _bbox(objects: list[SceneObject]) -> tuple[Vec3, Vec3]:
    lo = [math.inf] * 3
    hi = [-math.inf] * 3
    for o in objects:
        ext = shape_extent(o.shape, o.scale)
        half = (ext.footprint, ext.half_height, ext.footprint)
        for k in range(3):
            lo[k] = min(lo[k], o.position[k] - half[k])
            hi[k] = max(hi[k], o.position[k] + half[k])
    return tuple(lo), tuple(hi)


# ----------------------------------------------------------------------------- layout
def _overlaps(a: SceneObject, b: SceneObject, margin: float = 0.04) -> bool:
    """Bounding cylinders (footprint x height) of ``a`` and ``b`` intersect."""
    ea, eb = shape_extent(a.shape, a.scale), shape_extent(b.shape, b.scale)
    horizontal = math.hypot(a.position[0] - b.position[0], a.position[2] - b.position[2])
    vertical = abs(a.position[1] - b.position[1])
    return horizontal < ea.footprint + eb.footprint + margin and vertical < ea.half_height + eb.half_height


# unit step (x, z) that moves a subject further along each relation
_DIRECTION = {"left of": (-1.0, 0.0), "right of": (1.0, 0.0), "behind": (0.0, -1.0), "in front of": (0.0, 1.0)}


def _place(
    spec: ObjectSpec, size: str, material: str, rel: Relation | None, placed: dict[int, SceneObject],
    rng: random.Random, spread: float,
) -> SceneObject:
    s = rng.uniform(*SIZES[size])
    ext = shape_extent(spec.shape, s)
    yaw = rng.uniform(0.0, 2.0 * math.pi)
    obj = SceneObject(spec.shape, spec.colour, size, material, s, (0.0, ext.half_height, 0.0), yaw,
                      COLOURS[spec.colour])
    others = list(placed.values())
    if rel is None:
        for _ in range(100):
            angle, dist = rng.uniform(0, 2 * math.pi), spread * math.sqrt(rng.random())
            obj.position = (dist * math.cos(angle), ext.half_height, dist * math.sin(angle))
            if not any(_overlaps(obj, o) for o in others):
                return obj
            spread *= 1.05
        raise _LayoutFailed
    ref = placed[rel.reference]
    ref_ext = shape_extent(ref.shape, ref.scale)
    rx, ry, rz = ref.position
    if rel.relation == "on top of":
        jitter = 0.15 * min(ext.footprint, ref_ext.footprint)
        obj.position = (rx + rng.uniform(-jitter, jitter), ry + ref_ext.half_height + ext.half_height,
                        rz + rng.uniform(-jitter, jitter))
        if any(_overlaps(obj, o) for o in others if o is not ref):
            raise _LayoutFailed
        return obj
    direction = _DIRECTION.get(rel.relation) or (rng.choice((-1.0, 1.0)), 0.0)  # "next to": either side
    gap = rng.uniform(*_GAP)
    lateral = rng.uniform(-_LATERAL_JITTER, _LATERAL_JITTER) * min(ext.footprint, ref_ext.footprint)
    dx, dz = direction
    for _ in range(50):  # push further along the relation until free: keeps the relation true
        dist = ext.footprint + ref_ext.footprint + gap
        # the subject stands on the ground even when its reference is stacked on something
        obj.position = (rx + dx * dist + dz * lateral, ext.half_height, rz + dz * dist + dx * lateral)
        if not any(_overlaps(obj, o) for o in others):
            return obj
        gap += 0.25
    raise _LayoutFailed


class _LayoutFailed(Exception):
    pass


def _random_ground(rng: random.Random) -> Ground:
    hue = rng.random()
    sat = rng.uniform(0.05, 0.35)
    v1, v2 = rng.uniform(0.35, 0.6), rng.uniform(0.6, 0.85)
    if rng.random() < 0.5:
        v1, v2 = v2, v1
    a = colorsys.hsv_to_rgb(hue, sat, v1)
    b = colorsys.hsv_to_rgb((hue + rng.uniform(-0.08, 0.08)) % 1.0, sat, v2)
    pattern = rng.choice(("checker", "noise"))
    scale = rng.uniform(0.4, 1.0) if pattern == "checker" else rng.uniform(0.3, 0.8)
    return Ground(pattern, a, b, scale, rng.getrandbits(31))


def _random_background(rng: random.Random) -> Background:
    if rng.random() < 0.65:
        horizon = colorsys.hsv_to_rgb(rng.uniform(0.52, 0.62), rng.uniform(0.05, 0.25), rng.uniform(0.85, 1.0))
        zenith = colorsys.hsv_to_rgb(rng.uniform(0.55, 0.65), rng.uniform(0.35, 0.7), rng.uniform(0.65, 0.95))
        return Background("sky", horizon, zenith)
    hue, sat, val = rng.random(), rng.uniform(0.1, 0.45), rng.uniform(0.45, 0.85)
    horizon = colorsys.hsv_to_rgb(hue, sat, val)
    zenith = colorsys.hsv_to_rgb(hue, sat, val * 0.75)
    return Background("wall", horizon, zenith)


def _random_light(rng: random.Random) -> Light:
    elevation = math.radians(rng.uniform(35.0, 70.0))
    azimuth = math.radians(rng.uniform(-100.0, 100.0))  # from the canonical viewer's side, mostly
    direction = (math.cos(elevation) * math.sin(azimuth), math.sin(elevation), math.cos(elevation) * math.cos(azimuth))
    return Light(direction, rng.uniform(0.8, 1.1), rng.uniform(0.25, 0.4))


def scene_from_composition(
    composition: Composition, rng: int | str | random.Random | None = None
) -> Scene:
    """Realise ``composition`` as a 3D scene: every stated relation holds, seen from the canonical view.

    Objects are placed in :meth:`Composition.placement_order`; a related object is put beside its reference
    along the relation's axis ("left of" = ``-x``, "behind" = ``-z``; "next to" = either side along x), with
    a random gap and a small sideways jitter, and pushed further along that axis if it would overlap
    something (so the relation stays true); "on top of" stacks it on its reference's top. Unrelated objects
    are scattered without overlap. Sizes/materials left as None are drawn (a stacked object defaults to
    "small"). The objects are then shifted so their bounding box is centred on ``x = z = 0``. Ground,
    background and light are drawn from ``rng``. Raises ValueError if no overlap-free layout is found.
    """
    rng = make_rng(rng)
    on_top_subjects = {r.subject for r in composition.relations if r.relation == "on top of"}
    relation_of = {r.subject: r for r in composition.relations}
    spread = 1.0 + 0.45 * len(composition.objects)
    for _ in range(_MAX_LAYOUT_ATTEMPTS):
        placed: dict[int, SceneObject] = {}
        try:
            for i in composition.placement_order():
                spec = composition.objects[i]
                default_size = "small" if i in on_top_subjects else rng.choice(tuple(SIZES))
                size = spec.size or default_size
                material = spec.material or rng.choice(tuple(MATERIALS))
                placed[i] = _place(spec, size, material, relation_of.get(i), placed, rng, spread)
        except _LayoutFailed:
            continue
        break
    else:
        raise ValueError(f"could not find an overlap-free layout for composition {composition.to_dict()}")
    objects = [placed[i] for i in range(len(composition.objects))]
    lo, hi = _bbox(objects)
    cx, cz = (lo[0] + hi[0]) / 2, (lo[2] + hi[2]) / 2
    for o in objects:
        o.position = (o.position[0] - cx, o.position[1], o.position[2] - cz)
    return Scene(
        objects=objects,
        relations=list(composition.relations),
        ground=_random_ground(rng),
        background=_random_background(rng),
        light=_random_light(rng),
    )


def sample_scene(
    rng: int | str | random.Random | None = None, composition: Composition | None = None, split: str = "train"
) -> Scene:
    """A random scene; its composition is ``composition`` if given, else drawn from ``split``
    ("train" never yields a held-out composition, "heldout" yields only held-out ones; see
    :mod:`vist3a.world.splits`)."""
    from vist3a.world.splits import sample_composition

    rng = make_rng(rng)
    if composition is None:
        composition = sample_composition(rng, split=split)
    return scene_from_composition(composition, rng)


def can_stack_on(shape: str) -> bool:
    """Whether the sampler puts things on top of ``shape`` (flat-topped shapes only)."""
    return shape in FLAT_TOPPED
