"""Configuration dataclasses of the recon models (plain data, JSON-serialisable via ``asdict``).

The defaults are the released sizes: VGGT-1B (``facebook/VGGT-1B``) and the AnySplat release
(``lhjiang/anysplat``, which reuses the VGGT-1B backbone). Everything else in the models is
*derived* from these numbers: the token prefix is ``1 + num_register_tokens``, the positional-embedding
grid is ``img_size // patch_size``, head input widths are ``2 * embed_dim``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

ATTENTION_KINDS = ("frame", "global")


@dataclass(frozen=True)
class PatchEmbedConfig:
    """The per-frame patch embedder of the aggregator.

    ``kind="dinov2"``: a DINOv2 ViT with register tokens (the official ``dinov2_vit*14_reg``);
    ``kind="conv"``: a single strided convolution. The width is the aggregator's ``embed_dim``.
    """

    kind: str = "dinov2"
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 1.0
    interpolate_antialias: bool = True
    interpolate_offset: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("dinov2", "conv"):
            raise ValueError(f"patch_embed `kind` must be 'dinov2' or 'conv', got {self.kind!r}")


@dataclass(frozen=True)
class AggregatorConfig:
    """Alternating frame/global attention trunk (VGGT's ``Aggregator``)."""

    img_size: int = 518
    patch_size: int = 14
    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    mlp_ratio: float = 4.0
    num_register_tokens: int = 4
    qkv_bias: bool = True
    proj_bias: bool = True
    ffn_bias: bool = True
    qk_norm: bool = True
    rope_freq: float = 100.0
    init_values: float = 0.01
    aa_order: tuple[str, ...] = ATTENTION_KINDS
    aa_block_size: int = 1
    patch_embed: PatchEmbedConfig = field(default_factory=PatchEmbedConfig)

    def __post_init__(self) -> None:
        if isinstance(self.patch_embed, dict):
            object.__setattr__(self, "patch_embed", PatchEmbedConfig(**self.patch_embed))
        object.__setattr__(self, "aa_order", tuple(self.aa_order))
        if sorted(self.aa_order) != sorted(ATTENTION_KINDS):
            raise ValueError(f"aggregator `aa_order` must be a permutation of {ATTENTION_KINDS}, got {self.aa_order}")
        if self.depth % self.aa_block_size != 0:
            raise ValueError(
                f"aggregator `depth` ({self.depth}) must be divisible by `aa_block_size` ({self.aa_block_size})"
            )
        if self.embed_dim % self.num_heads != 0:
            raise ValueError(
                f"aggregator `embed_dim` ({self.embed_dim}) must be divisible by `num_heads` ({self.num_heads})"
            )

    @property
    def num_prefix_tokens(self) -> int:
        """Camera token + register tokens in front of the patch tokens of every frame."""
        return 1 + self.num_register_tokens

    @property
    def pos_grid(self) -> int:
        """Side of the square grid the DINO positional embedding is stored at."""
        return self.img_size // self.patch_size


@dataclass(frozen=True)
class CameraHeadConfig:
    """VGGT's iterative camera head (trunk of self-attention blocks over the per-frame camera tokens).

    ``patch_pool_dim > 0`` (vist3a's option, off in VGGT/AnySplat): each frame's camera token also gets a
    spatial summary of its ``patch_pool_tokens`` patch tokens (each projected to ``patch_pool_dim`` channels,
    flattened in grid order, projected back; zero-initialised, so a fresh option starts as VGGT). A small
    aggregator's camera token can carry too little per-view information to learn poses from (the nano
    AnySplat's varied by 1 % across views); the patch tokens vary by ~40 %.
    """

    trunk_depth: int = 4
    num_heads: int = 16
    mlp_ratio: float = 4.0
    init_values: float = 0.01
    num_iterations: int = 4
    patch_pool_dim: int = 0
    patch_pool_tokens: int = 0


@dataclass(frozen=True)
class DPTConfig:
    """A DPT dense head: 4 token layers -> projected, resized, fused feature maps.

    ``intermediate_layer_idx`` names aggregator layers; see :func:`vist3a.recon.heads.dpt_head.select_layers`
    for how the official code resolves them against the list of returned layers.
    """

    features: int = 256
    out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    intermediate_layer_idx: tuple[int, ...] = (4, 11, 17, 23)
    pos_embed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_channels", tuple(int(c) for c in self.out_channels))
        object.__setattr__(self, "intermediate_layer_idx", tuple(int(i) for i in self.intermediate_layer_idx))
        if len(self.out_channels) != 4 or len(self.intermediate_layer_idx) != 4:
            raise ValueError(
                "DPT heads fuse exactly 4 layers: `out_channels` and `intermediate_layer_idx` need 4 entries, got "
                f"{list(self.out_channels)} and {list(self.intermediate_layer_idx)}"
            )
        if self.features % 2 != 0:
            raise ValueError(f"DPT `features` must be even, got {self.features}")


@dataclass(frozen=True)
class TrackHeadConfig:
    """VGGT's point-track head: a feature-only DPT extractor (``features`` channels, half resolution, no
    positional embedding) and an iterative tracker."""

    features: int = 128
    iters: int = 4
    stride: int = 2
    corr_levels: int = 7
    corr_radius: int = 4
    hidden_size: int = 384
    depth: int = 6
    num_heads: int = 8
    num_virtual_tracks: int = 64
    mlp_ratio: float = 4.0
    max_scale: float = 518.0
    predict_conf: bool = True
    extractor_out_channels: tuple[int, ...] = (256, 512, 1024, 1024)
    extractor_layer_idx: tuple[int, ...] = (4, 11, 17, 23)

    def __post_init__(self) -> None:
        object.__setattr__(self, "extractor_out_channels", tuple(int(c) for c in self.extractor_out_channels))
        object.__setattr__(self, "extractor_layer_idx", tuple(int(i) for i in self.extractor_layer_idx))

    @property
    def extractor(self) -> DPTConfig:
        """The DPT configuration of the feature extractor (derived)."""
        return DPTConfig(self.features, self.extractor_out_channels, self.extractor_layer_idx, pos_embed=False)


def to_dict(cfg: Any) -> dict:
    """Dataclass -> JSON-friendly dict (tuples become lists)."""

    def convert(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(asdict(cfg))


def from_dict(cls: type, value: Any) -> Any:
    """Build dataclass ``cls`` from a dict (``None`` -> defaults); unknown keys raise ``ValueError``."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{cls.__name__} config must be a dict, got {type(value).__name__}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(value) - names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} config keys {unknown}; known keys: {sorted(names)}")
    return cls(**value)
