"""Layer search: which DINO block of the reconstruction model is best predicted by a linear map of the latent?

For every candidate ``enc_blocks_k`` a stitching layer is fitted in closed form (streamed ridge regression,
:mod:`vist3a.stitching.ridge`, one pass over the latents shared by all candidates) on the *fit* clips, and
scored by ``MSE = Σ (S(Z) − Y)² / numel`` on the fit clips (what the release ranks by) and on held-out clips.
The best layer is the one with the lowest fit MSE (or hold-out MSE when asked).

Output folder (``out_dir``)::

    features/               extracted shards (see vist3a.stitching.features), reusable and resumable
    layers/<layer>.safetensors   fitted stitching layer: weight [D, C, kT, kH, kW], bias [D] (+ metadata)
    report.json             {"layers": {name: {"mse_fit", "mse_holdout"}}, "best_layer", "spec", ...}
    report.md               the same as a table
    mse.png                 MSE per layer
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from vist3a.errors import UserInputError
from vist3a.io_utils import atomic_path
from vist3a.stitching.adapters import ReconAdapter, layer_index
from vist3a.stitching.features import ExtractionSettings, FeatureStore, extract_features
from vist3a.stitching.ridge import RidgeAccumulator, tokens_to_grid
from vist3a.stitching.spec import StitchingLayer, build_stitching_layer, parse_spec

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
LAYERS_DIR = "layers"


@dataclass(frozen=True)
class SearchConfig:
    """Knobs of the layer search.

    Attributes:
        spec: stitching-layer spec (its output channels must equal the model's token width).
        num_clips: clips used (fit + hold-out).
        num_frames: frames per clip (valid for the VAE's frame rule).
        vae_size, recon_size: square input sizes of the VAE and the reconstruction model (pixels).
        layers: candidates to fit (default: all ``enc_blocks_1..N``).
        holdout_fraction: share of the clips held out for ``mse_holdout`` (the last clips); 0 disables it.
        ridge: λ of the ridge fit (release: 1e-4).
        rank_by: ``"fit"`` (release) or ``"holdout"``.
        shard_size: clips per feature shard.
        batch_size: clips per forward during extraction.
        seed: posterior-sampling seed.
        temporal_factor: the VAE's temporal compression; ``None``: the VAE's (a value that differs is an error).
        resample_hw: spatial size the stitching layer resamples the latent to before its convolution (``None``:
            the latent's size); needed where the latent side is no multiple of the token side
            (:func:`~vist3a.stitching.models.stitch_geometry`).
    """

    spec: str
    num_clips: int
    num_frames: int
    vae_size: int
    recon_size: int
    layers: tuple[str, ...] | None = None
    holdout_fraction: float = 0.2
    ridge: float = 1e-4
    rank_by: str = "fit"
    shard_size: int = 4
    batch_size: int = 1
    seed: int = 0
    temporal_factor: int | None = None
    resample_hw: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        parse_spec(self.spec)
        if self.resample_hw is not None:
            object.__setattr__(self, "resample_hw", (int(self.resample_hw[0]), int(self.resample_hw[1])))
            if min(self.resample_hw) < 1:
                raise ValueError(f"resample_hw must be positive, got {self.resample_hw}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.rank_by not in ("fit", "holdout"):
            raise ValueError(f"rank_by must be 'fit' or 'holdout', got {self.rank_by!r}")
        if self.rank_by == "holdout" and self.num_holdout == 0:
            raise ValueError("rank_by='holdout' needs held-out clips (holdout_fraction * num_clips >= 1)")
        if self.num_clips - self.num_holdout < 1:
            raise ValueError(f"num_clips={self.num_clips} leaves no clip to fit on with holdout_fraction "
                             f"{self.holdout_fraction}")

    @property
    def num_holdout(self) -> int:
        return round(self.num_clips * self.holdout_fraction)

    @property
    def fit_indices(self) -> set[int]:
        return set(range(self.num_clips - self.num_holdout))

    @property
    def holdout_indices(self) -> set[int]:
        return set(range(self.num_clips - self.num_holdout, self.num_clips))


@dataclass
class SearchReport:
    """Result of :func:`run_layer_search` (``report.json``)."""

    layers: dict[str, dict[str, float | None]]
    best_layer: str
    spec: str
    rank_by: str
    num_fit_clips: int
    num_holdout_clips: int
    config: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    vae: dict[str, Any] = field(default_factory=dict)
    """The VAE's facts (:meth:`~vist3a.video.vae_adapters.VideoVAEAdapter.describe`): family, class, factors."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def load_fitted_layer(search_dir: str | Path, layer: str) -> StitchingLayer:
    """The fitted stitching layer ``layer`` of a search folder (float32, CPU)."""
    from safetensors import safe_open

    path = Path(search_dir) / LAYERS_DIR / f"{layer}.safetensors"
    if not path.is_file():
        available = sorted(p.stem for p in (Path(search_dir) / LAYERS_DIR).glob("*.safetensors"))
        raise UserInputError(f"{path} does not exist; fitted layers in {search_dir}: {available or 'none'}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        weight, bias = f.get_tensor("weight"), f.get_tensor("bias")
    target_hw = json.loads(meta.get("target_hw", "null"))
    layer_module = build_stitching_layer(
        meta["spec"], int(weight.shape[1]), int(meta.get("temporal_factor", 4)),
        None if target_hw is None else tuple(target_hw),
    )
    with torch.no_grad():
        layer_module.weight.copy_(weight)
        layer_module.bias.copy_(bias)
    return layer_module


def read_report(search_dir: str | Path) -> dict[str, Any]:
    path = Path(search_dir) / REPORT_FILE
    if not path.is_file():
        raise UserInputError(f"{search_dir} is not a layer-search folder ({REPORT_FILE} is missing)")
    return json.loads(path.read_text())


def fit_candidates(
    store: FeatureStore, config: SearchConfig, layers: Sequence[str], device: torch.device | str = "cpu",
    progress: bool = True,
) -> dict[str, StitchingLayer]:
    """Ridge-fit one stitching layer per candidate on the fit clips (two streamed passes, shared ``XᵀX``)."""
    if config.temporal_factor is None:
        raise ValueError("fit_candidates needs config.temporal_factor (run_layer_search fills it in from the VAE)")
    acc = RidgeAccumulator(config.spec, in_channels=_latent_channels(store), ridge=config.ridge,
                           temporal_factor=config.temporal_factor, target_hw=config.resample_hw, device=device)
    fit = config.fit_indices
    for latent, tokens in tqdm(store.clips(fit, layers), total=len(fit), desc="ridge fit: XᵀX, XᵀY", unit="clip",
                               disable=not progress):
        acc.update(latent, tokens)
    for latent, tokens in tqdm(store.clips(fit, layers), total=len(fit), desc="ridge fit: bias", unit="clip",
                               disable=not progress):
        acc.update_bias(latent, tokens)
    return {name: acc.build_layer(name, dtype=torch.float32) for name in layers}


def _latent_channels(store: FeatureStore) -> int:
    latent, _ = next(store.clips(layers=[]))
    return int(latent.shape[1])


@torch.no_grad()
def score_layers(
    store: FeatureStore, config: SearchConfig, fitted: Mapping[str, StitchingLayer], progress: bool = True
) -> dict[str, dict[str, float | None]]:
    """``{layer: {"mse_fit", "mse_holdout"}}`` (hold-out ``None`` without held-out clips).

    One pass over the features for all layers: each layer predicts with its own (replicate) padding in float32
    (the latent is cast before the upsampling, as :func:`~vist3a.stitching.ridge.evaluate_mse` does); squared
    errors are summed in float64.
    """
    names = list(fitted)
    sums = {(name, split): 0.0 for name in names for split in ("fit", "holdout")}
    counts = dict.fromkeys(sums, 0)
    holdout = config.holdout_indices
    clip_ids = sorted(config.fit_indices | holdout)
    bar = tqdm(total=len(clip_ids), desc="stitching MSE", unit="clip", disable=not progress)
    for clip, (latent, tokens) in zip(clip_ids, store.clips(set(clip_ids), names), strict=True):
        split = "holdout" if clip in holdout else "fit"
        for name, layer in fitted.items():
            weight = layer.weight
            pred = layer(latent.to(weight.device, weight.dtype))  # [1, D, T, H, W]
            target = tokens_to_grid(tokens[name].to(weight.device, weight.dtype), tuple(pred.shape[-2:]))
            sums[name, split] += float((pred - target).double().square().sum())
            counts[name, split] += pred.numel()
        bar.update(1)
    bar.close()
    return {
        name: {
            "mse_fit": sums[name, "fit"] / counts[name, "fit"],
            "mse_holdout": sums[name, "holdout"] / counts[name, "holdout"] if counts[name, "holdout"] else None,
        }
        for name in names
    }


def run_layer_search(
    clips: Sequence[Any],
    vae: torch.nn.Module,
    recon: torch.nn.Module,
    adapter: ReconAdapter,
    out_dir: str | Path,
    config: SearchConfig,
    models: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> SearchReport:
    """Extract features (resumable), fit and score every candidate, write the report, plot and fitted layers.

    ``vae`` is any video VAE of :mod:`vist3a.video.vae_adapters`; its temporal factor sets the layer's temporal
    resampling and its facts go into the report. ``models`` is recorded in the report (where the weights came from).
    """
    from vist3a.video.vae_adapters import vae_adapter

    video = vae_adapter(vae)
    if config.temporal_factor not in (None, video.temporal_factor):
        raise UserInputError(f"temporal_factor {config.temporal_factor} differs from the {video.name} VAE's "
                             f"({video.temporal_factor}); leave it unset")
    config = replace(config, temporal_factor=video.temporal_factor)
    try:
        video.check_num_frames(config.num_frames)
        video.check_resolution(config.vae_size, config.vae_size)
    except ValueError as exc:
        raise UserInputError(f"{video.name} VAE: {exc}") from None
    out_dir = Path(out_dir)
    width = adapter.token_width(recon)
    spec = parse_spec(config.spec)
    if spec.out_channels != width:
        raise UserInputError(f"spec {config.spec} outputs {spec.out_channels} channels, but the model's tokens have "
                             f"{width}; use ..._o{width}_...")
    layers = list(config.layers or adapter.candidate_layers(recon))
    for name in layers:
        try:
            adapter.check_layer(recon, name)
        except ValueError as exc:
            raise UserInputError(f"layers: {exc}") from None
    layers = sorted(set(layers), key=layer_index)
    settings = ExtractionSettings(
        num_clips=config.num_clips, num_frames=config.num_frames, vae_size=config.vae_size,
        recon_size=config.recon_size, layers=tuple(layers), shard_size=config.shard_size, seed=config.seed,
        vae=video.name,
    )
    extract_features(clips, vae, recon, adapter, out_dir, settings, config.batch_size, progress)
    store = FeatureStore(out_dir)
    _check_grid(store, spec, config)
    device = next(recon.parameters()).device
    fitted = fit_candidates(store, config, layers, device, progress)
    scores = score_layers(store, config, fitted, progress)
    key = "mse_fit" if config.rank_by == "fit" else "mse_holdout"
    best = min(layers, key=lambda n: scores[n][key])
    report = SearchReport(
        layers=scores, best_layer=best, spec=str(spec), rank_by=config.rank_by,
        num_fit_clips=len(config.fit_indices), num_holdout_clips=config.num_holdout,
        config={**asdict(config), "layers": layers, "recon_type": adapter.name},
        models=dict(models or {}), vae=video.describe(),
    )
    write_outputs(out_dir, report, fitted, config)
    logger.info("layer search: best %s (%s MSE %.4g)", best, config.rank_by, scores[best][key])
    return report


def _check_grid(store: FeatureStore, spec: Any, config: SearchConfig) -> None:
    latent, tokens = next(store.clips(layers=list(store.settings.layers[:1])))
    t_lat, h, w = latent.shape[2:]
    if config.resample_hw is not None:
        h, w = config.resample_hw
    grid = spec.output_thw((t_lat - 1) * config.temporal_factor + 1, h, w)
    y = next(iter(tokens.values()))
    if y.shape[1] != grid[0] or y.shape[2] != grid[1] * grid[2]:
        raise UserInputError(
            f"spec {spec} maps the {h}x{w} (resampled) latent to a {grid[1]}x{grid[2]} token grid, but the model's "
            f"features have {y.shape[2]} tokens per frame at recon size {config.recon_size}; choose the stride (s) or "
            "sizes so that they match"
        )


def write_outputs(
    out_dir: Path, report: SearchReport, fitted: Mapping[str, StitchingLayer], config: SearchConfig
) -> None:
    """``layers/*.safetensors``, ``report.json``, ``report.md``, ``mse.png`` (each written atomically)."""
    from safetensors.torch import save_file

    for name, layer in fitted.items():
        meta = {"spec": str(layer.spec), "layer": name, "temporal_factor": str(layer.temporal_factor),
                "target_hw": json.dumps(None if layer.target_hw is None else list(layer.target_hw))}
        with atomic_path(out_dir / LAYERS_DIR / f"{name}.safetensors") as tmp:
            save_file({"weight": layer.weight.detach().cpu().contiguous(), "bias": layer.bias.detach().cpu()},
                      str(tmp), metadata=meta)
    with atomic_path(out_dir / REPORT_FILE) as tmp:
        tmp.write_text(json.dumps(report.to_json(), indent=2))
    with atomic_path(out_dir / "report.md") as tmp:
        tmp.write_text(report_markdown(report))
    plot_mse(report, out_dir / "mse.png")


def report_markdown(report: SearchReport) -> str:
    vae = report.vae
    vae_line = (f"VAE **{vae['family']}** (`{vae['class']}`: {vae['latent_channels']} latent channels, "
                f"{vae['spatial_factor']}x spatial / {vae['temporal_factor']}x temporal, frames {vae['frame_rule']}); "
                if vae else "")
    lines = [
        "# Stitching layer search",
        "",
        f"{vae_line}Spec `{report.spec}`; {report.num_fit_clips} fit clips, {report.num_holdout_clips} held-out clips; "
        f"ranked by {report.rank_by} MSE. **Best layer: `{report.best_layer}`**.",
        "",
        "| layer | MSE (fit) | MSE (hold-out) |",
        "|---|---|---|",
    ]
    for name, scores in report.layers.items():
        hold = scores["mse_holdout"]
        mark = " **(best)**" if name == report.best_layer else ""
        lines.append(f"| `{name}`{mark} | {scores['mse_fit']:.6g} | {'—' if hold is None else f'{hold:.6g}'} |")
    return "\n".join(lines) + "\n"


def plot_mse(report: SearchReport, path: Path) -> None:
    """MSE per candidate layer (log scale), fit and hold-out, best layer marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report.layers)
    xs = [layer_index(n) for n in names]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.35 * len(xs) + 2), 3.2))
    ax.plot(xs, [report.layers[n]["mse_fit"] for n in names], "o-", label="fit")
    hold = [report.layers[n]["mse_holdout"] for n in names]
    if all(h is not None for h in hold):
        ax.plot(xs, hold, "s--", label="hold-out")
    ax.axvline(layer_index(report.best_layer), color="gray", lw=0.8, ls=":")
    ax.set_xlabel("DINO block k (enc_blocks_k)")
    ax.set_ylabel("stitching MSE")
    if min(report.layers[n]["mse_fit"] for n in names) > 0:
        ax.set_yscale("log")
    ax.set_title(f"best: {report.best_layer}")
    ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120)
    plt.close(fig)
