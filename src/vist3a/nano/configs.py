"""The nano models' sizes as plain data: the real vist3a/diffusers classes at tiny configs.

Everything here is a JSON-friendly value or a function returning a *fresh* dict of constructor kwargs, so a
training run can record exactly what it built. Sizes are derived from a few knobs rather than restated:

- video: :data:`NANO_VIDEO` (13 frames of 64x64) through the Wan VAE's 4x temporal / 8x spatial compression
  gives latents ``[16, 4, 8, 8]``;
- 3D model: AnySplat at ``recon_size`` 112 px with patch 14 -> an 8x8 token grid, so the stitching layer
  maps the 8x8 latent onto the 8x8 token grid with stride 1 (:func:`nano_stitch_spec`); the pointmap model
  (:func:`nano_vggt_config`) is VGGT on the same trunk, the second pointmap model (:func:`nano_mvdust3r_config`)
  MV-DUSt3R at the same input size and token grid;
- text: all-MiniLM-L6-v2 token states (D = 384), ``text_max_length`` tokens;
- generator: a tiny ``WanTransformer3DModel`` whose ``text_dim`` is the text encoder's width;
- image-text models (reward ``clip``, evaluation ``clip_eval``): :class:`vist3a.nano.imagetext.NanoImageTextModel`
  with a conv and a patch-transformer image tower on MiniLM sentence embeddings.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

#: Width of the all-MiniLM-L6-v2 token states (its ``hidden_size``).
MINILM_HIDDEN_SIZE = 384


@dataclass(frozen=True)
class NanoVideo:
    """Clip geometry of the nano stage.

    Attributes:
        num_frames: frames per clip (``4k + 1`` for the causal Wan VAE).
        height, width: video resolution in pixels (multiples of VAE factor 8 x transformer patch 2).
        recon_size: square input size of the nano AnySplat (a multiple of its patch size).
        text_max_length: tokens of the MiniLM text encoder; captions with several relations and a camera
            phrase exceed 32 tokens, so 64.
    """

    num_frames: int = 13
    height: int = 64
    width: int = 64
    recon_size: int = 112
    text_max_length: int = 64

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


NANO_VIDEO = NanoVideo()


@dataclass(frozen=True)
class NanoSampling:
    """Default generation settings for the nano generator (recorded in the weights manifest).

    ``guidance_scale`` 5 was checked against 3, 7.5 and 10 on held-out prompts (docs/nano.md): R-precision did not
    change beyond its noise, while 3D consistency falls as guidance grows.
    """

    num_steps: int = 20
    guidance_scale: float = 5.0
    flow_shift: float = 3.0
    scheduler: str = "unipc"
    negative_prompt: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


NANO_SAMPLING = NanoSampling()


def nano_vae_config(base_dim: int = 32) -> dict[str, Any]:
    """``AutoencoderKLWan`` kwargs: 3 spatial 2x stages (8x), the last two also temporal (4x), 16 latent channels.

    ``latents_mean`` / ``latents_std`` are placeholders (0 / 1) until the VAE stage measures them on its
    trained latents (:func:`vist3a.nano.train_vae.train_vae` writes them into the saved config).
    """
    z_dim = 16
    return {
        "base_dim": base_dim,
        "z_dim": z_dim,
        "dim_mult": [1, 2, 2, 2],
        "num_res_blocks": 1,
        "attn_scales": [],
        "temperal_downsample": [False, True, True],
        "latents_mean": [0.0] * z_dim,
        "latents_std": [1.0] * z_dim,
    }


def nano_hunyuan_vae_config(base_channels: int = 32) -> dict[str, Any]:
    """``AutoencoderKLHunyuanVideo`` kwargs of a second nano VAE family (issue 18, Fig. 10 at nano scale; not shipped).

    Sized like :func:`nano_vae_config` (channels 32-64-64-64, one res block per level, 16 latent channels,
    8x spatial / 4x temporal: 13 frames of 64 px -> ``[16, 4, 8, 8]``, the Wan latent's shape), but HunyuanVideo's
    architecture: causal Conv3d with GroupNorm (16 groups) instead of Wan's RMS-normed cached convs, and
    HunyuanVideo's own down/up blocks and attention mid-block. ``scaling_factor`` is a placeholder until the VAE
    stage measures it (``1 / std`` of its training latents, HunyuanVideo's convention). 3.73 M parameters (Wan: 3.22 M).
    """
    return {
        "block_out_channels": [base_channels, 2 * base_channels, 2 * base_channels, 2 * base_channels],
        "down_block_types": ["HunyuanVideoDownBlock3D"] * 4,
        "up_block_types": ["HunyuanVideoUpBlock3D"] * 4,
        "layers_per_block": 1,
        "latent_channels": 16,
        "norm_num_groups": 16,
        "spatial_compression_ratio": 8,
        "temporal_compression_ratio": 4,
        "mid_block_add_attention": True,
        "scaling_factor": 1.0,
    }


#: The nano VAE stage's default model config per VAE family (:mod:`vist3a.video.vae_adapters` names); any other
#: family trains with an explicit ``model``.
NANO_VAE_CONFIGS = {"wan2.1": nano_vae_config, "hunyuanvideo": nano_hunyuan_vae_config}


def evenly_spread_layers(depth: int, count: int = 4) -> tuple[int, ...]:
    """``count`` aggregator layers spread evenly over ``depth`` layers, ending at the last one.

    ``(1, 3, 5, 7)`` for depth 8; the released AnySplat's ``(4, 11, 17, 23)`` plays the same role for 24.
    """
    if depth < count:
        raise ValueError(f"`depth` must be >= `count` ({count}) to pick distinct layers, got {depth}")
    return tuple(round((i + 1) * depth / count) - 1 for i in range(count))


def nano_anysplat_config(
    embed_dim: int = 96,
    depth: int = 8,
    num_heads: int = 4,
    dino_depth: int = 4,
    dpt_features: int = 64,
    sh_degree: int = 1,
    img_size: int = NANO_VIDEO.recon_size,
    patch_size: int = 14,
    voxel_size: float = 0.01,
) -> dict[str, Any]:
    """``vist3a.recon.AnySplat`` kwargs of the nano 3D model.

    The DINO patch embedder has ``dino_depth`` blocks, so the stitching candidates are
    ``enc_blocks_1..dino_depth``. The DPT heads read the :func:`evenly_spread_layers` of the trunk (their
    ``intermediate_layer_idx`` must equal the model's, see ``vist3a.recon.heads.dpt_head.select_layers``);
    their per-layer widths scale with ``embed_dim``. ``voxel_size`` is in units of the normalised scene
    (mean point distance 1, see :mod:`vist3a.nano.train_recon`).
    """
    trunk, dpt = _nano_trunk(embed_dim, depth, num_heads, dino_depth, dpt_features, img_size, patch_size)
    return {**trunk, "depth_config": dict(dpt), "gaussian_config": dict(dpt),
            "intermediate_layer_idx": list(dpt["intermediate_layer_idx"]), "sh_degree": sh_degree,
            "voxel_size": voxel_size}


def _nano_trunk(embed_dim: int, depth: int, num_heads: int, dino_depth: int, dpt_features: int, img_size: int,
                patch_size: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The nano 3D models' shared trunk (aggregator + camera head kwargs) and their DPT head kwargs."""
    if img_size % patch_size:
        raise ValueError(f"`img_size` ({img_size}) must be a multiple of `patch_size` ({patch_size})")
    dpt = {
        "features": dpt_features,
        "out_channels": [embed_dim // 2, embed_dim, 2 * embed_dim, 2 * embed_dim],
        "intermediate_layer_idx": list(evenly_spread_layers(depth)),
    }
    trunk = {
        "aggregator_config": {
            "img_size": img_size,
            "patch_size": patch_size,
            "embed_dim": embed_dim,
            "depth": depth,
            "num_heads": num_heads,
            "patch_embed": {"kind": "dinov2", "depth": dino_depth, "num_heads": num_heads},
        },
        "camera_config": {"trunk_depth": 2, "num_heads": num_heads},
    }
    return trunk, dpt


def nano_vggt_config(
    embed_dim: int = 96,
    depth: int = 8,
    num_heads: int = 4,
    dino_depth: int = 4,
    dpt_features: int = 64,
    img_size: int = NANO_VIDEO.recon_size,
    patch_size: int = 14,
) -> dict[str, Any]:
    """``vist3a.recon.VGGT`` kwargs of the nano pointmap model: the trunk of :func:`nano_anysplat_config` (112 px,
    patch 14 -> 8x8 tokens, embed 96, 8 alternating blocks, a 4-block DINO embedder whose blocks are the
    stitching candidates) with VGGT's camera, depth and point heads (no track head).

    The DPT heads read the :func:`evenly_spread_layers` of the trunk, widths scaled with ``embed_dim``.
    """
    trunk, dpt = _nano_trunk(embed_dim, depth, num_heads, dino_depth, dpt_features, img_size, patch_size)
    return {**trunk, "depth_config": dict(dpt), "point_config": dict(dpt), "heads": ["camera", "depth", "point"]}


def nano_mvdust3r_config(
    enc_embed_dim: int = 128,
    enc_depth: int = 4,
    dec_embed_dim: int = 96,
    dec_depth: int = 4,
    num_heads: int = 4,
    gs_mlp_dim: int = 64,
    skip_dim: int = 32,
    gaussian_head: bool = True,
    multi_path: bool = False,
    img_size: int = NANO_VIDEO.recon_size,
    patch_size: int = 14,
    sincos_pos_embed: bool = True,
) -> dict[str, Any]:
    """``vist3a.recon.MVDust3r`` kwargs of the nano MV-DUSt3R (issue 21's second pointmap model): 112 px input,
    patch 14 (the class takes any patch size) -> the 8x8 token grid of the nano latent, so it stitches with stride
    1 like the nano AnySplat; a CroCo encoder of ``enc_depth`` blocks (stitching candidates ``enc_blocks_0..N``),
    the multi-view decoder and the point heads with their image skip branch; the per-pixel Gaussian head when
    ``gaussian_head``; ``multi_path`` makes it MV-DUSt3R+ (4 paths); ``sincos_pos_embed`` (on) adds CroCo's sine-cosine
    position code beside RoPE (``MVDust3r``'s argument; off in the release): with RoPE alone the nano model's first
    view's pointmap ignored the pixel column after 450 CPU steps (and 1 224 GPU steps), with the code it followed it
    (docs/nano.md, Nano MV-DUSt3R, round 9).

    Widths keep the release's encoder : decoder ratio (1024 : 768 -> 128 : 96). 2.66 M parameters; a stitched
    decoder cut after encoder block 1 is 2.48 M (4.7 MiB in float16), inside the weights budget left beside the
    shipped models (:data:`vist3a.nano.weights.SIZE_BUDGET_BYTES`).
    """
    if img_size % patch_size:
        raise ValueError(f"`img_size` ({img_size}) must be a multiple of `patch_size` ({patch_size})")
    return {
        "img_size": img_size,
        "patch_size": patch_size,
        "enc_embed_dim": enc_embed_dim,
        "enc_depth": enc_depth,
        "enc_num_heads": num_heads,
        "dec_embed_dim": dec_embed_dim,
        "dec_depth": dec_depth,
        "dec_num_heads": num_heads,
        "multi_path": multi_path,
        "gaussian_head": gaussian_head,
        "gs_mlp_dim": gs_mlp_dim,
        "skip_dim": skip_dim,
        "sincos_pos_embed": sincos_pos_embed,
    }


def _input_patch_width(recon_config: dict[str, Any]) -> tuple[int, int, int]:
    """``(img_size, patch_size, token width)`` of a nano 3D-model config: AnySplat and VGGT hold them in their
    ``aggregator_config``, MV-DUSt3R at the top level (its encoder's ``enc_embed_dim``)."""
    agg = recon_config.get("aggregator_config")
    if agg is not None:
        return int(agg["img_size"]), int(agg["patch_size"]), int(agg["embed_dim"])
    return int(recon_config["img_size"]), int(recon_config["patch_size"]), int(recon_config["enc_embed_dim"])


def recon_input_size(recon_config: dict[str, Any]) -> int:
    """Square input size (px) of a nano 3D model's config (AnySplat, VGGT or MV-DUSt3R): what clips are resized to."""
    return _input_patch_width(recon_config)[0]


def recon_token_width(recon_config: dict[str, Any]) -> int:
    """Token width of a nano 3D model's config (the stitching layer's output channels)."""
    return _input_patch_width(recon_config)[2]


def recon_token_grid(recon_config: dict[str, Any]) -> int:
    """Side of the patch-token grid at the model's native input size (``img_size // patch_size``)."""
    size, patch, _ = _input_patch_width(recon_config)
    return size // patch


def stitch_candidates(recon_config: dict[str, Any]) -> list[str]:
    """Stitching candidates of a config (the adapters' ``candidate_layers``): ``enc_blocks_1..N`` for the N DINO
    blocks of AnySplat / VGGT (DESIGN.md §2); ``enc_blocks_0..N`` for MV-DUSt3R (0: its patch embedding)."""
    if "aggregator_config" not in recon_config:
        return [f"enc_blocks_{i}" for i in range(int(recon_config["enc_depth"]) + 1)]
    depth = int(recon_config["aggregator_config"]["patch_embed"]["depth"])
    return [f"enc_blocks_{i}" for i in range(1, depth + 1)]


def nano_stitch_spec(
    anysplat_config: dict[str, Any] | None = None,
    vae_config: dict[str, Any] | None = None,
    video: NanoVideo = NANO_VIDEO,
    spatial_factor: int | None = None,
) -> str:
    """The stitching-layer spec: Conv3D k5x3x3 onto the token width, stride chosen so latent grid -> token grid.

    The release's ``conv3d_k5x3x3_o1024_s1x2x2_p2x1x1`` halves a 64x64 latent onto a 32x32 grid; at nano size
    the latent (64 px / 8 = 8) already matches the token grid (112 / 14 = 8), so the stride is 1 and the
    spec is ``conv3d_k5x3x3_o96_s1x1x1_p2x1x1`` for the default embed width.

    ``anysplat_config``: the 3D model's config (AnySplat, VGGT or MV-DUSt3R; default the nano AnySplat's).
    ``spatial_factor``: the VAE's (any family: ``vae_adapter(vae).spatial_factor``); None derives it from a Wan
    ``vae_config`` (default :func:`nano_vae_config`).
    """
    anysplat_config = anysplat_config or nano_anysplat_config()  # any nano 3D model's config
    if spatial_factor is None:
        spatial = 2 ** len((vae_config or nano_vae_config())["temperal_downsample"])
    else:
        spatial = int(spatial_factor)
    latent_hw = video.height // spatial
    grid = recon_token_grid(anysplat_config)
    if latent_hw % grid:
        raise ValueError(
            f"the latent grid ({latent_hw}x{latent_hw} for {video.height} px and VAE factor {spatial}) must be a "
            f"multiple of the token grid ({grid}x{grid}) to stitch with an integer stride"
        )
    stride = latent_hw // grid
    return f"conv3d_k5x3x3_o{recon_token_width(anysplat_config)}_s1x{stride}x{stride}_p2x1x1"


def nano_transformer_config(
    num_layers: int = 6,
    num_heads: int = 4,
    head_dim: int = 48,
    text_dim: int = MINILM_HIDDEN_SIZE,
    ffn_mult: int = 4,
    video: NanoVideo = NANO_VIDEO,
) -> dict[str, Any]:
    """``WanTransformer3DModel`` kwargs: patch (1, 2, 2), ``text_dim`` = the text encoder width.

    ``rope_max_seq_len`` only has to cover the longest latent axis (4 frames, 8 rows); 64 leaves room for
    other resolutions.
    """
    hidden = num_heads * head_dim
    return {
        "patch_size": [1, 2, 2],
        "num_attention_heads": num_heads,
        "attention_head_dim": head_dim,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": text_dim,
        "freq_dim": 64,
        "ffn_dim": ffn_mult * hidden,
        "num_layers": num_layers,
        "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "rope_max_seq_len": max(64, video.num_frames, video.height),
    }


def nano_clip_config(role: str = "reward") -> dict[str, Any]:
    """``NanoImageTextModel`` kwargs of the reward model ``clip``: the residual conv tower (0.57 M parameters,
    1.1 MiB in float16) on 64 px images, 128-d joint space, text head on MiniLM (``text_dim`` = its width)."""
    return {
        "image_tower": "conv",
        "tower_config": {"widths": [32, 48, 64, 96]},
        "image_size": NANO_VIDEO.height,
        "embed_dim": 128,
        "pool_heads": 4,
        "text_dim": MINILM_HIDDEN_SIZE,
        "text_hidden": 256,
        "role": role,
    }


def nano_clip_eval_config() -> dict[str, Any]:
    """``NanoImageTextModel`` kwargs of the evaluation model ``clip_eval``: another architecture than the reward
    model (a patch transformer: 8 px patches, 4 blocks of width 96; 0.51 M parameters, 1.0 MiB in float16), so
    that alignment cannot pass the evaluation by exploiting the reward model's blind spots."""
    return {
        **nano_clip_config("evaluation"),
        "image_tower": "vit",
        "tower_config": {"dim": 96, "depth": 4, "num_heads": 4, "patch_size": 8, "mlp_ratio": 2.0},
    }


def nano_configs() -> dict[str, Any]:
    """Every nano config in one JSON-friendly dict (what ``docs/nano.md`` tabulates)."""
    anysplat = nano_anysplat_config()
    vggt = nano_vggt_config()
    mvdust3r = nano_mvdust3r_config()
    vae = nano_vae_config()
    return {
        "video": NANO_VIDEO.to_dict(),
        "sampling": NANO_SAMPLING.to_dict(),
        "vae": vae,
        "anysplat": anysplat,
        "stitch_spec": nano_stitch_spec(anysplat, vae),
        "stitch_candidates": stitch_candidates(anysplat),
        "vggt": vggt,
        "vggt_stitch_spec": nano_stitch_spec(vggt, vae),
        "mvdust3r": mvdust3r,
        "mvdust3r_stitch_spec": nano_stitch_spec(mvdust3r, vae),
        "transformer": nano_transformer_config(),
        "clip": nano_clip_config(),
        "clip_eval": nano_clip_eval_config(),
    }
