"""The nano synthetic 3D world: procedural scenes, a vectorised ray-caster, camera paths, captions, splits.

Nano models learn text-to-3D from clips of this world. One clip::

    rng = make_rng(seed, index)
    scene = sample_scene(rng, split="train")                      # composition -> placed objects, ground, light
    w2c, K = sample_camera_path("orbit", 13, rng, height=64, width=64,
                                target=scene.centre, scene_radius=scene.radius)
    frames, depth = render_clip(scene, w2c, K, 64, 64)            # [T, 3, H, W] in [0, 1], [T, H, W] z-depth
    caption = caption_for_scene(scene, rng, camera_kind="orbit")

World frame and conventions: :mod:`~vist3a.world.vocab` (``y`` up, ground ``y = 0``, canonical viewer
on ``+z``); cameras are OpenCV world-to-camera as everywhere in vist3a. :class:`vist3a.data.SyntheticClips`
wraps all of this as a dataset of :class:`vist3a.data.MultiViewClip`. On a GPU, render many scenes per call
with :func:`render_clips` (a single clip there is bound by kernel launches).
"""

from vist3a.world.camera_paths import CAMERA_PATH_KINDS, intrinsics, sample_camera_path
from vist3a.world.captions import CAMERA_PHRASES, caption_for_scene, describe_composition, mirror_caption
from vist3a.world.composition import Composition, ObjectSpec, Relation, canonical_triple
from vist3a.world.render import MarchSettings, RenderOutput, render_clip, render_clips
from vist3a.world.scene import Background, Ground, Light, Scene, SceneObject, sample_scene, scene_from_composition
from vist3a.world.sdf import ShapeExtent, shape_extent, shape_sdf
from vist3a.world.splits import (
    attribute_variant_compositions,
    attribute_variants,
    heldout_pairs,
    is_heldout,
    is_heldout_pair,
    is_heldout_triple,
    sample_composition,
)
from vist3a.world.vocab import COLOURS, MATERIALS, MAX_OBJECTS, RELATIONS, SHAPES, SIZES, make_rng

__all__ = [
    "CAMERA_PATH_KINDS",
    "CAMERA_PHRASES",
    "COLOURS",
    "MATERIALS",
    "MAX_OBJECTS",
    "RELATIONS",
    "SHAPES",
    "SIZES",
    "Background",
    "Composition",
    "Ground",
    "Light",
    "MarchSettings",
    "ObjectSpec",
    "Relation",
    "RenderOutput",
    "Scene",
    "SceneObject",
    "ShapeExtent",
    "attribute_variant_compositions",
    "attribute_variants",
    "canonical_triple",
    "caption_for_scene",
    "describe_composition",
    "heldout_pairs",
    "intrinsics",
    "is_heldout",
    "is_heldout_pair",
    "is_heldout_triple",
    "make_rng",
    "mirror_caption",
    "render_clip",
    "render_clips",
    "sample_camera_path",
    "sample_composition",
    "sample_scene",
    "scene_from_composition",
    "shape_extent",
    "shape_sdf",
]
