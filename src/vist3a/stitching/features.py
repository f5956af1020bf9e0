"""Feature extraction for the layer search: VAE latents and candidate-block tokens of the same clips, on disk.

For every clip (frames ``[T, 3, H, W]`` in ``[0, 1]``):

- the **raw sampled VAE latent** ``[C, T_lat, h, w]``: the clip resized to the VAE resolution and encoded by the
  VAE's :class:`~vist3a.video.vae_adapters.VideoVAEAdapter`, one sample of the posterior (as the release fits on);
  any video VAE family works (``C``, ``T_lat`` and ``h, w`` follow its config),
- the **candidate features** ``[T, P, D]`` of the reconstruction model: the clip resized to the model's input
  size, the outputs of DINO blocks ``enc_blocks_k`` with the ``1 + R`` prefix tokens dropped.

Both are stored in float16 (as the release keeps them) in safetensors shards of ``shard_size`` clips:
``features/shard-00000.safetensors`` with ``latents [n, C, T_lat, h, w]``, one ``[n, T, P, D]`` tensor per layer
and ``clip_index [n]``. Extraction is resumable: shards that exist are skipped, and ``features/meta.json``
records the settings so that a resumed run cannot mix shards made with different ones.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.stitching.adapters import ReconAdapter

logger = logging.getLogger(__name__)

FEATURES_DIR = "features"
META_FILE = "meta.json"
LATENT_KEY = "latents"
INDEX_KEY = "clip_index"
STORE_DTYPE = torch.float16


@dataclass(frozen=True)
class ExtractionSettings:
    """What a feature folder holds (written to ``features/meta.json``).

    Attributes:
        num_clips: clips ``0 .. num_clips - 1`` of the dataset.
        num_frames: frames per clip (valid for the VAE's frame rule).
        vae_size: square VAE input resolution (pixels).
        vae: the VAE family (``wan2.1``, ``cogvideox``, ...), so that features of two VAEs never mix; folders
            written before it was recorded are Wan 2.1's.
        recon_size: square input size of the reconstruction model (pixels).
        layers: candidate layers stored (``enc_blocks_k``).
        shard_size: clips per shard file.
        seed: seeds the posterior samples (shard ``s`` uses ``seed + s``) and nothing else.
    """

    num_clips: int
    num_frames: int
    vae_size: int
    recon_size: int
    layers: tuple[str, ...]
    shard_size: int = 4
    seed: int = 0
    vae: str = "wan2.1"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        for name in ("num_clips", "num_frames", "vae_size", "recon_size", "shard_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"ExtractionSettings.{name} must be >= 1, got {getattr(self, name)}")
        if not self.layers:
            raise ValueError("ExtractionSettings.layers must name at least one candidate layer")

    @property
    def num_shards(self) -> int:
        return -(-self.num_clips // self.shard_size)

    def shard_range(self, shard: int) -> range:
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, self.num_clips))

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out


def shard_path(root: str | Path, shard: int) -> Path:
    return Path(root) / FEATURES_DIR / f"shard-{shard:05d}.safetensors"


def encode_latents(
    vae: torch.nn.Module, frames: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
) -> torch.Tensor:
    """Frames ``[B, T, 3, H, W]`` in ``[0, 1]`` -> the raw latent ``[B, C, T_lat, h, w]``: one posterior sample
    (``sample``, what the release fits and trains on) or the posterior mode.

    ``vae`` is any video VAE :func:`~vist3a.video.vae_adapters.vae_adapter` knows (or its adapter).
    """
    from vist3a.video.vae_adapters import vae_adapter

    return vae_adapter(vae).encode(frames, sample=sample, generator=generator)


def clip_frames(clip: Any, size: int) -> torch.Tensor:
    """A :class:`vist3a.data.MultiViewClip` centre-cropped and resized to ``size`` x ``size``: ``[T, 3, S, S]``."""
    from vist3a.data import resize_and_crop

    return resize_and_crop(clip, size).frames


def _check_meta(root: Path, settings: ExtractionSettings) -> None:
    meta_path = root / FEATURES_DIR / META_FILE
    wanted = settings.to_json()
    if meta_path.is_file():
        found = {"vae": "wan2.1", **json.loads(meta_path.read_text())}
        if found != wanted:
            changed = sorted(k for k in set(found) | set(wanted) if found.get(k) != wanted.get(k))
            raise UserInputError(
                f"{meta_path.parent} holds features made with other settings ({', '.join(changed)} differ: "
                f"{ {k: found.get(k) for k in changed} } vs { {k: wanted.get(k) for k in changed} }); use another "
                "output folder or delete it"
            )
        return
    with atomic_path(meta_path) as tmp:
        tmp.write_text(json.dumps(wanted, indent=2))


@torch.no_grad()
def extract_features(
    clips: Sequence[Any],
    vae: torch.nn.Module,
    recon: torch.nn.Module,
    adapter: ReconAdapter,
    out_dir: str | Path,
    settings: ExtractionSettings,
    batch_size: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Write (or complete) the feature shards of ``settings`` under ``out_dir/features``; returns their paths.

    ``clips[i]`` must be a :class:`~vist3a.data.MultiViewClip` with at least ``num_frames`` frames (the first
    ``num_frames`` are used). Datasets with a ``num_frames`` attribute (the :mod:`vist3a.data` loaders) are asked
    for ``clips[(i, num_frames)]`` instead, their way of drawing a clip of a given length. Models run where their
    parameters are; ``batch_size`` clips go through them at once.
    """
    from safetensors.torch import save_file

    root = Path(out_dir)
    if len(clips) < settings.num_clips:
        raise UserInputError(f"the dataset has {len(clips)} clips, fewer than num_clips={settings.num_clips}")
    _check_meta(root, settings)
    device = next(recon.parameters()).device
    recon_dtype = next(recon.parameters()).dtype
    vae_device = next(vae.parameters()).device
    paths, todo = [], []
    for shard in range(settings.num_shards):
        path = shard_path(root, shard)
        paths.append(path)
        if not path.is_file():
            todo.append(shard)
    if len(todo) < settings.num_shards:
        logger.info("features: %d of %d shards already exist, extracting %d", settings.num_shards - len(todo),
                    settings.num_shards, len(todo))
    bar = tqdm(total=sum(len(settings.shard_range(s)) for s in todo), desc="extract features", unit="clip",
               disable=not progress)
    for shard in todo:
        generator = torch.Generator(device=vae_device).manual_seed(settings.seed + shard)
        latents, features, indices = [], {name: [] for name in settings.layers}, []
        shard_clips = list(settings.shard_range(shard))
        for start in range(0, len(shard_clips), batch_size):
            batch = [_get_clip(clips, i, settings.num_frames) for i in shard_clips[start : start + batch_size]]
            vae_frames = torch.stack([clip_frames(c, settings.vae_size) for c in batch]).to(vae_device)
            latents.append(encode_latents(vae, vae_frames, generator).to("cpu", STORE_DTYPE))
            recon_frames = torch.stack([clip_frames(c, settings.recon_size) for c in batch]).to(device, recon_dtype)
            for name, value in adapter.candidate_features(recon, recon_frames, settings.layers).items():
                features[name].append(value.to("cpu", STORE_DTYPE))
            indices.extend(shard_clips[start : start + batch_size])
            bar.update(len(batch))
        tensors = {LATENT_KEY: torch.cat(latents), INDEX_KEY: torch.tensor(indices, dtype=torch.int64)}
        tensors.update({name: torch.cat(values).contiguous() for name, values in features.items()})
        with atomic_path(paths[shard]) as tmp:
            save_file(tensors, str(tmp))
    bar.close()
    return paths


def _get_clip(clips: Sequence[Any], index: int, num_frames: int) -> Any:
    clip = clips[(index, num_frames)] if _accepts_length_key(clips) else clips[index]
    if clip.num_frames < num_frames:
        raise UserInputError(f"clip {index} has {clip.num_frames} frames, fewer than num_frames={num_frames}")
    return clip.select(range(num_frames)) if clip.num_frames > num_frames else clip


def _accepts_length_key(clips: Any) -> bool:
    """The :mod:`vist3a.data` loaders (they have ``num_frames``) take ``(index, T)`` keys; lists and other
    sequences take plain indices."""
    return hasattr(clips, "num_frames") and not isinstance(clips, list | tuple)


class FeatureStore:
    """Read access to a feature folder written by :func:`extract_features`."""

    def __init__(self, out_dir: str | Path) -> None:
        self.root = Path(out_dir)
        meta_path = self.root / FEATURES_DIR / META_FILE
        if not meta_path.is_file():
            raise UserInputError(f"{self.root} has no extracted features ({meta_path} is missing)")
        meta = json.loads(meta_path.read_text())
        self.settings = ExtractionSettings(**meta)
        missing = [s for s in range(self.settings.num_shards) if not shard_path(self.root, s).is_file()]
        if missing:
            raise UserInputError(f"{self.root}: feature shards {missing} are missing; re-run the extraction to resume")

    def clips(
        self, indices: set[int] | None = None, layers: Sequence[str] | None = None
    ) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
        """One clip at a time: ``(latent [1, C, T_lat, h, w], {layer: tokens [1, T, P, D]})`` (float16), in index
        order, restricted to ``indices`` and ``layers`` when given."""
        from safetensors import safe_open

        layers = list(self.settings.layers if layers is None else layers)
        unknown = sorted(set(layers) - set(self.settings.layers))
        if unknown:
            raise ValueError(f"layers {unknown} were not extracted; available: {list(self.settings.layers)}")
        for shard in range(self.settings.num_shards):
            with safe_open(str(shard_path(self.root, shard)), framework="pt") as f:
                index = f.get_tensor(INDEX_KEY)
                rows = [r for r, i in enumerate(index.tolist()) if indices is None or i in indices]
                if not rows:
                    continue
                latents = f.get_tensor(LATENT_KEY)
                tokens = {name: f.get_tensor(name) for name in layers}
            for r in rows:
                yield latents[r : r + 1], {name: t[r : r + 1] for name, t in tokens.items()}
