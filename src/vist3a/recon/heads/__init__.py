"""Prediction heads of the recon models (camera, DPT dense, AnySplat Gaussian, VGGT track)."""

from vist3a.recon.heads.camera_head import POSE_ENCODING_DIM, CameraHead
from vist3a.recon.heads.dpt_head import DPTHead, select_layers
from vist3a.recon.heads.gaussian_head import GaussianHead

__all__ = ["POSE_ENCODING_DIM", "CameraHead", "DPTHead", "GaussianHead", "select_layers"]
