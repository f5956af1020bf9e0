"""Native loaders of the pointmap / pose benchmarks (Table 5), in each dataset's release layout, for
``vist3a eval geometry|nvs --data 7scenes:DIR | eth3d:DIR | scannet:DIR``.

Each returns a list of :class:`~vist3a.data.clip.MultiViewClip` (frames, OpenCV ``w2c``, integer-centre ``K``,
z-``depth`` with 0 = none), what :func:`~vist3a.benchmark.geometry.evaluate_geometry` scores:

- :func:`seven_scenes_clips` (:mod:`.seven_scenes`): 7-Scenes test sequences, depth registered to the colour frames;
- :func:`eth3d_clips` (:mod:`.eth3d`): ETH3D high-res multi-view scenes, undistorted frames, laser-scan depth;
- :func:`scannet_clips` (:mod:`.scannet`): ScanNet scenes as the SensReader exports them.

Frame selection shared by all three: :mod:`.common` (keyframes every ``stride`` frames, ``num_frames`` of them
evenly spread, since vist3a's decoders need ``4k + 1`` views). Each module's docstring states its dataset's layout,
conventions and the public protocol it follows, and where vist3a's choice differs.
"""

from __future__ import annotations

from pathlib import Path

from vist3a.benchmark.datasets import eth3d, scannet, seven_scenes
from vist3a.benchmark.datasets.common import no_sequences
from vist3a.benchmark.datasets.eth3d import eth3d_clips
from vist3a.benchmark.datasets.scannet import scannet_clips
from vist3a.benchmark.datasets.seven_scenes import seven_scenes_clips

LOADERS = {"7scenes": seven_scenes_clips, "eth3d": eth3d_clips, "scannet": scannet_clips}
_FINDERS = {"7scenes": (seven_scenes.find_sequences, seven_scenes.LAYOUT),
            "eth3d": (eth3d.find_scenes, eth3d.LAYOUT), "scannet": (scannet.find_scenes, scannet.LAYOUT)}


def check_folder(kind: str, root: Path) -> None:
    """Fail fast (before any model loads) when ``root`` holds no ``kind`` sequence: one line naming the layout."""
    find, layout = _FINDERS[kind]
    if not root.is_dir():
        raise no_sequences(kind, root, layout, "not a folder")
    if not find(root):
        raise no_sequences(kind, root, layout)


__all__ = ["LOADERS", "check_folder", "eth3d_clips", "scannet_clips", "seven_scenes_clips"]
