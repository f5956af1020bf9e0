"""Camera-pose metrics of Table 5: pairwise RRA / RTA / AUC (RealEstate10K, CO3D protocol) and ATE / RPE (ScanNet).

Conventions: poses are OpenCV **world-to-camera** ``w2c [N, 4, 4]`` (or ``[N, 3, 4]``) unless a name says
``c2w``; angles are in degrees.

- Pairwise errors (the protocol of PoseDiffusion / VGGT): for every ordered pair ``i < j`` the relative pose
  ``T_ij = w2c_j @ w2c_i^-1``; the rotation error is the angle of ``R_ij,pred^T R_ij,gt`` and the translation error
  the angle between the two relative translations (direction only: scale-free; with ``ambiguity`` the sign of
  the direction is ignored, ``min(e, 180 - e)``).
- ``RRA@t`` / ``RTA@t``: fraction of pairs with rotation / translation error below ``t``.
- ``AUC@T``: mean over integer thresholds ``1 .. T`` of the fraction of pairs whose worse error,
  ``max(rot, trans)``, is below the threshold (mean accuracy over thresholds, "mAA").
- ``ATE``: RMSE of camera centres after the Sim(3) alignment of the predicted centres onto the true ones.
- ``RPE-T`` / ``RPE-R``: RMSE of the translation (scene units, after the same alignment's scale) and of the
  rotation angle of the error between consecutive relative motions ``(P_i^-1 P_{i+1})^-1 (Q_i^-1 Q_{i+1})``
  (camera-to-world ``P`` true, ``Q`` predicted).
"""

from __future__ import annotations

import math

import torch

from vist3a.cameras import invert_rigid, to_homogeneous
from vist3a.evaluation.alignment3d import umeyama


def rotation_angle_deg(rot: torch.Tensor) -> torch.Tensor:
    """Angle in degrees of rotation matrices ``[..., 3, 3]``: ``atan2(|axis|, cos)`` from the skew part and the
    trace, accurate near 0 and 180 degrees (``acos`` of the trace loses half the digits near 0)."""
    trace = rot.diagonal(dim1=-2, dim2=-1).sum(-1)
    skew = torch.stack([rot[..., 2, 1] - rot[..., 1, 2], rot[..., 0, 2] - rot[..., 2, 0],
                        rot[..., 1, 0] - rot[..., 0, 1]], -1)
    return torch.rad2deg(torch.atan2(skew.norm(dim=-1) / 2.0, (trace - 1.0) / 2.0))


def _homogeneous(poses: torch.Tensor, name: str) -> torch.Tensor:
    if poses.ndim != 3 or poses.shape[-2:] not in ((4, 4), (3, 4)):
        raise ValueError(f"`{name}` must be [N, 4, 4] or [N, 3, 4] poses, got {tuple(poses.shape)}")
    return to_homogeneous(poses.double())


def pairwise_pose_errors(pred_w2c: torch.Tensor, gt_w2c: torch.Tensor, ambiguity: bool = True
                         ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation and translation angle errors (degrees) of every pair ``i < j``: two ``[N (N - 1) / 2]`` tensors."""
    pred, gt = _homogeneous(pred_w2c, "pred_w2c"), _homogeneous(gt_w2c, "gt_w2c")
    if pred.shape != gt.shape or pred.shape[0] < 2:
        raise ValueError(f"need as many predicted as true poses, at least 2, got {pred.shape[0]} and {gt.shape[0]}")
    i, j = torch.triu_indices(pred.shape[0], pred.shape[0], offset=1)
    rel_pred = pred[j] @ invert_rigid(pred[i])
    rel_gt = gt[j] @ invert_rigid(gt[i])
    rot_err = rotation_angle_deg(rel_pred[:, :3, :3].transpose(-1, -2) @ rel_gt[:, :3, :3])
    t_pred, t_gt = rel_pred[:, :3, 3], rel_gt[:, :3, 3]
    trans_err = torch.rad2deg(torch.atan2(torch.linalg.cross(t_pred, t_gt).norm(dim=-1), (t_pred * t_gt).sum(-1)))
    if ambiguity:
        trans_err = torch.minimum(trans_err, 180.0 - trans_err)
    return rot_err.float(), trans_err.float()


def accuracy_below(errors: torch.Tensor, threshold: float) -> float:
    """Fraction of ``errors`` strictly below ``threshold`` (RRA@t / RTA@t)."""
    return float((errors < threshold).float().mean())


def pose_auc(rot_err: torch.Tensor, trans_err: torch.Tensor, max_threshold: int = 30) -> float:
    """AUC@``max_threshold``: mean over thresholds ``1 .. max_threshold`` of the fraction of pairs with
    ``max(rot_err, trans_err)`` below it (see the module docstring)."""
    worst = torch.maximum(rot_err, trans_err).double().cpu()
    thresholds = torch.arange(1, max_threshold + 1, dtype=torch.float64)
    return float((worst[:, None] < thresholds[None]).double().mean(0).mean())


def relative_pose_metrics(pred_w2c: torch.Tensor, gt_w2c: torch.Tensor, threshold: float = 5.0,
                          max_auc_threshold: int = 30) -> dict[str, float]:
    """``{"rra@5", "rta@5", "auc@30"}`` (names follow the thresholds) of one sequence."""
    rot_err, trans_err = pairwise_pose_errors(pred_w2c, gt_w2c)
    t = f"{threshold:g}"
    return {f"rra@{t}": accuracy_below(rot_err, threshold), f"rta@{t}": accuracy_below(trans_err, threshold),
            f"auc@{max_auc_threshold}": pose_auc(rot_err, trans_err, max_auc_threshold)}


def trajectory_metrics(pred_w2c: torch.Tensor, gt_w2c: torch.Tensor) -> dict[str, float]:
    """``{"ate", "rpe_t", "rpe_r"}`` of one trajectory (module docstring), after Sim(3) alignment of the
    predicted camera centres onto the true ones (at least 3 poses with non-collinear centres)."""
    pred_c2w = invert_rigid(_homogeneous(pred_w2c, "pred_w2c"))
    gt_c2w = invert_rigid(_homogeneous(gt_w2c, "gt_w2c"))
    if pred_c2w.shape != gt_c2w.shape or pred_c2w.shape[0] < 3:
        raise ValueError("trajectory metrics need as many predicted as true poses, at least 3")
    sim = umeyama(pred_c2w[:, :3, 3], gt_c2w[:, :3, 3])
    aligned = sim.apply_c2w(pred_c2w)
    ate = (aligned[:, :3, 3] - gt_c2w[:, :3, 3]).square().sum(-1).mean().sqrt()
    motion_gt = invert_rigid(gt_c2w[:-1]) @ gt_c2w[1:]
    motion_pred = invert_rigid(aligned[:-1]) @ aligned[1:]
    error = invert_rigid(motion_gt) @ motion_pred
    rpe_t = error[:, :3, 3].square().sum(-1).mean().sqrt()
    rpe_r = rotation_angle_deg(error[:, :3, :3]).square().mean().sqrt()
    return {"ate": float(ate), "rpe_t": float(rpe_t), "rpe_r": float(rpe_r)}


def mean_finite(values: list[float]) -> float:
    """Mean of the finite entries (NaN if none)."""
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan
