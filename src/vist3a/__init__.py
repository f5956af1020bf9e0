"""vist3a: text-to-3D by stitching a 3D reconstruction network onto a video diffusion latent space."""

__version__ = "0.1.0"
