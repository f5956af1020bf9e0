"""The nano image-text model: a small CLIP between rendered frames and captions of the nano world.

VIST3A's alignment stage rewards generations with image-text models (DFN-CLIP, HPSv2.1, PickScore), and its
evaluation measures prompt fidelity with yet another one (CLIP-R-precision). None of them knows the nano world,
so nano trains its own pair (``vist3a nano train clip`` / ``clip-eval``, :mod:`vist3a.nano.train_imagetext`):

- an *image tower* picked by name (:data:`IMAGE_TOWERS`): ``"conv"`` (a small residual conv net) or ``"vit"``
  (a small patch transformer). Both end in attention pooling with a learned query over position-embedded tokens,
  because relations ("left of", "on top of") live in *where* things are, which global average pooling discards;
- a *text head* on the frozen all-MiniLM-L6-v2 (the nano generator's text encoder): the masked mean of its
  token states (the sentence embedding the encoder was trained for), then LayerNorm + a two-layer MLP;
- a learnable temperature (CLIP's ``logit_scale``).

The reward model and the evaluation model must not share blind spots, or alignment could "pass" the evaluation
by exploiting the reward; hence two architectures and seeds, and ``role`` in the config ("reward" /
"evaluation") so that one is never installed as the other.

Images are ``[N, 3, H, W]`` RGB in ``[0, 1]`` of any size (resized to ``image_size``); text enters as MiniLM
token states ``[N, L, text_dim]`` with a token mask ``[N, L]``. Scoring prompts end to end (tokenising and
encoding included) is :class:`vist3a.alignment.scorers.NanoClipScorer`.
"""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.modeling_utils import ModelMixin
from torch import nn

ROLES = ("reward", "evaluation")
#: CLIP caps the learned temperature at 100 so the logits cannot blow up.
MAX_LOGIT_SCALE = 100.0


class Attention(nn.Module):
    """Multi-head attention of queries ``[N, Q, C]`` over keys/values ``[N, K, C]`` (scaled dot product)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"`dim` ({dim}) must be divisible by `num_heads` ({num_heads})")
        self.num_heads = num_heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, queries: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        N, Q, C = queries.shape
        K = tokens.shape[1]
        h = self.num_heads
        q = self.q(queries).view(N, Q, h, C // h).transpose(1, 2)  # [N, h, Q, C/h]
        k, v = self.kv(tokens).view(N, K, 2, h, C // h).permute(2, 0, 3, 1, 4)  # 2 x [N, h, K, C/h]
        x = F.scaled_dot_product_attention(q, k, v)  # [N, h, Q, C/h]
        return self.out(x.transpose(1, 2).reshape(N, Q, C))


class AttentionPool(nn.Module):
    """One learned query attends over ``[N, T, C]`` tokens plus a learned position embedding -> ``[N, C]``."""

    def __init__(self, dim: int, num_tokens: int, num_heads: int) -> None:
        super().__init__()
        self.query = nn.Parameter(torch.randn(1, 1, dim) * dim**-0.5)
        self.pos = nn.Parameter(torch.randn(1, num_tokens, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tokens = self.norm(tokens + self.pos)
        return self.attn(self.query.expand(tokens.shape[0], -1, -1), tokens)[:, 0]


class ResBlock(nn.Module):
    """Two 3x3 convs with GroupNorm + GELU and a skip connection (same width and resolution)."""

    def __init__(self, channels: int, groups: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GroupNorm(groups, channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.body(x))


class ConvTower(nn.Module):
    """Residual conv net: a stem at full resolution, then per extra width a stride-2 conv and a ResBlock.

    ``[N, 3, S, S]`` -> tokens ``[N, (S / 2^(len(widths) - 1))^2, widths[-1]]``.
    """

    def __init__(self, image_size: int, widths: tuple[int, ...] = (32, 48, 64, 96), groups: int = 8) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2 or any(w % groups for w in widths):
            raise ValueError(f"`widths` must hold >= 2 widths divisible by {groups} (GroupNorm), got {widths}")
        factor = 2 ** (len(widths) - 1)
        if image_size % factor:
            raise ValueError(f"`image_size` ({image_size}) must be divisible by {factor} for {len(widths)} widths")
        layers: list[nn.Module] = [nn.Conv2d(3, widths[0], 3, padding=1), nn.GroupNorm(groups, widths[0]), nn.GELU()]
        for c_in, c_out in itertools.pairwise(widths):
            layers += [nn.Conv2d(c_in, c_out, 3, stride=2, padding=1), nn.GroupNorm(groups, c_out), nn.GELU(),
                       ResBlock(c_out, groups)]
        self.net = nn.Sequential(*layers)
        self.out_dim = widths[-1]
        self.num_tokens = (image_size // factor) ** 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(2).transpose(1, 2)  # [N, C, h, w] -> [N, h*w, C]


class Block(nn.Module):
    """Pre-norm transformer block: self-attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm1(x)
        x = x + self.attn(y, y)
        return x + self.mlp(self.norm2(x))


class PatchTransformerTower(nn.Module):
    """ViT-style tower: non-overlapping ``patch_size`` patches, ``depth`` blocks, final LayerNorm.

    ``[N, 3, S, S]`` -> tokens ``[N, (S / patch_size)^2, dim]``.
    """

    def __init__(self, image_size: int, dim: int = 96, depth: int = 4, num_heads: int = 4, patch_size: int = 8,
                 mlp_ratio: float = 2.0) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"`image_size` ({image_size}) must be divisible by `patch_size` ({patch_size})")
        self.num_tokens = (image_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, dim, patch_size, stride=patch_size)
        self.pos = nn.Parameter(torch.randn(1, self.num_tokens, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.out_dim = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(x).flatten(2).transpose(1, 2) + self.pos  # [N, T, dim]
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


#: ``image_tower`` name -> tower class (its kwargs come from the config's ``tower_config``).
IMAGE_TOWERS: dict[str, type[nn.Module]] = {"conv": ConvTower, "vit": PatchTransformerTower}


class NanoImageTextModel(ModelMixin, ConfigMixin):
    """A tiny CLIP: image tower + attention pooling, and a head on frozen MiniLM sentence embeddings.

    Args:
        image_tower: a key of :data:`IMAGE_TOWERS` ("conv" or "vit").
        tower_config: kwargs of that tower class (``{"widths": [32, 48, 64, 96]}``, ``{"dim": 96, "depth": 4}``).
        image_size: side the images are resized to (bilinear, antialiased) before the tower.
        embed_dim: width of the joint embedding space.
        pool_heads: heads of the attention pooling.
        text_dim: width of the text encoder's token states (MiniLM: 384).
        text_hidden: hidden width of the text MLP.
        logit_scale_init: initial ``log`` of the inverse temperature (CLIP: ``log(1 / 0.07)``).
        role: "reward" (the alignment reward) or "evaluation" (CLIP-R-precision only); checked when installing.

    Example::

        model = NanoImageTextModel(**nano_clip_config())
        states, mask = text_encoder.encode(["a red cube to the left of a blue sphere"])
        text = model.embed_text(model.text_features(states, mask))   # [1, E], unit norm
        image = model.embed_images(frames)                            # [N, E], frames [N, 3, H, W] in [0, 1]
        cosine = image @ text.T
    """

    @register_to_config
    def __init__(
        self,
        image_tower: str = "conv",
        tower_config: dict | None = None,
        image_size: int = 64,
        embed_dim: int = 128,
        pool_heads: int = 4,
        text_dim: int = 384,
        text_hidden: int = 256,
        logit_scale_init: float = math.log(1 / 0.07),
        role: str = "reward",
    ) -> None:
        super().__init__()
        if image_tower not in IMAGE_TOWERS:
            raise ValueError(f"`image_tower` must be one of {sorted(IMAGE_TOWERS)}, got {image_tower!r}")
        if role not in ROLES:
            raise ValueError(f"`role` must be one of {ROLES}, got {role!r}")
        self.tower = IMAGE_TOWERS[image_tower](image_size, **(tower_config or {}))
        width = self.tower.out_dim
        self.pool = AttentionPool(width, self.tower.num_tokens, pool_heads)
        self.image_proj = nn.Linear(width, embed_dim)
        self.text_norm = nn.LayerNorm(text_dim)
        self.text_mlp = nn.Sequential(nn.Linear(text_dim, text_hidden), nn.GELU(), nn.Linear(text_hidden, embed_dim))
        self.logit_scale = nn.Parameter(torch.tensor(float(logit_scale_init)))

    @staticmethod
    def text_features(states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Masked mean of token states ``[N, L, D]`` over the tokens of ``mask [N, L]`` -> ``[N, D]`` (float32)."""
        if states.ndim != 3 or tuple(mask.shape) != tuple(states.shape[:2]):
            raise ValueError(f"need states [N, L, D] and mask [N, L], got {tuple(states.shape)} and "
                             f"{tuple(mask.shape)}")
        weights = mask.to(torch.float32).unsqueeze(-1)
        return (states.float() * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def embed_text(self, features: torch.Tensor) -> torch.Tensor:
        """Sentence features ``[N, text_dim]`` (:meth:`text_features`) -> unit embeddings ``[N, embed_dim]``."""
        dtype = self.image_proj.weight.dtype
        return F.normalize(self.text_mlp(self.text_norm(features.to(dtype))), dim=-1)

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images ``[N, 3, H, W]`` in ``[0, 1]`` -> unit embeddings ``[N, embed_dim]`` (differentiable)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"`images` must be [N, 3, H, W] RGB in [0, 1], got {tuple(images.shape)}")
        size = self.config.image_size
        x = images.to(self.image_proj.weight.dtype)
        if tuple(x.shape[-2:]) != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        tokens = self.tower(x * 2.0 - 1.0)
        return F.normalize(self.image_proj(self.pool(tokens)), dim=-1)

    def scale(self) -> torch.Tensor:
        """The inverse temperature ``exp(logit_scale)``, capped at :data:`MAX_LOGIT_SCALE`."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def forward(self, images: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """Contrastive logits ``[N_images, N_texts]`` = ``scale * cosine`` (what the InfoNCE loss takes)."""
        return self.scale() * self.embed_images(images) @ self.embed_text(text_features).T
