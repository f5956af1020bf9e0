"""Transformer building blocks shared by the recon models (attention, RoPE, MLP, blocks, DINOv2)."""

from vist3a.recon.layers.attention import Attention
from vist3a.recon.layers.block import Block, LayerScale
from vist3a.recon.layers.dino import ConvPatchEmbed, DinoVisionTransformer
from vist3a.recon.layers.mlp import Mlp
from vist3a.recon.layers.rope import RotaryEmbedding2D, grid_positions

__all__ = [
    "Attention",
    "Block",
    "ConvPatchEmbed",
    "DinoVisionTransformer",
    "LayerScale",
    "Mlp",
    "RotaryEmbedding2D",
    "grid_positions",
]
