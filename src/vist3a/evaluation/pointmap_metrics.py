"""Pointmap metrics of Table 5 (7-Scenes / ETH3D protocol of DUSt3R, Spann3R, VGGT): Acc, Comp, NC.

- Accuracy: distance of each **predicted** point to its nearest true point; completeness: distance of each
  **true** point to its nearest predicted point (both in scene units, lower is better; mean and median).
- Normal consistency: ``|n_pred . n_gt|`` over the same nearest-neighbour pairs, both directions, the two
  directions averaged (higher is better; mean and median). A pixel's normal comes from its pointmap neighbours, so it
  is undefined (NaN) next to pixels without geometry (give those NaN points); such pairs are left out of NC only.

Predictions are first aligned onto the ground truth (:func:`align_pointmaps`: Sim(3) on corresponding pixels),
because feed-forward models predict up to a similarity. Nearest neighbours are exact (chunked ``torch.cdist``:
``O(N M)`` work, fine on a GPU for the ~100k points per scene of these benchmarks).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vist3a.evaluation.alignment3d import Sim3, umeyama


def nearest_neighbors(query: torch.Tensor, ref: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """For each ``query [N, 3]`` point: distance to and index of its nearest ``ref [M, 3]`` point (``[N]`` each)."""
    if query.ndim != 2 or ref.ndim != 2 or query.shape[-1] != 3 or ref.shape[-1] != 3 or not len(ref):
        raise ValueError(f"need query [N, 3] and a non-empty ref [M, 3], got {tuple(query.shape)}, {tuple(ref.shape)}")
    dists, idx = [], []
    for start in range(0, query.shape[0], chunk):
        d = torch.cdist(query[start : start + chunk].float(), ref.float(), compute_mode="donot_use_mm_for_euclid_dist")
        value, index = d.min(dim=1)
        dists.append(value)
        idx.append(index)
    empty = query.new_zeros(0)
    return (torch.cat(dists) if dists else empty.float()), (torch.cat(idx) if idx else empty.long())


def pointmap_normals(points: torch.Tensor) -> torch.Tensor:
    """Unit normals ``[..., H, W, 3]`` of a pointmap ``[..., H, W, 3]`` from the cross product of its central
    differences (one-sided at the border); the sign is irrelevant to NC."""
    dx = torch.gradient(points, dim=-2)[0]  # along W
    dy = torch.gradient(points, dim=-3)[0]  # along H
    return F.normalize(torch.cross(dx, dy, dim=-1), dim=-1)


def acc_comp_nc(pred: torch.Tensor, gt: torch.Tensor, pred_normals: torch.Tensor | None = None,
                gt_normals: torch.Tensor | None = None) -> dict[str, float]:
    """Acc / Comp (mean, median) and, with normals, NC (mean, median) of two point sets ``[N, 3]``, ``[M, 3]``;
    pairs with an undefined (non-finite) normal are left out of NC."""
    acc, idx_pred = nearest_neighbors(pred, gt)
    comp, idx_gt = nearest_neighbors(gt, pred)
    out = {"acc": float(acc.mean()), "acc_med": float(acc.median()),
           "comp": float(comp.mean()), "comp_med": float(comp.median())}
    if pred_normals is not None and gt_normals is not None:
        nc_pred = (pred_normals * gt_normals[idx_pred]).sum(-1).abs()
        nc_gt = (gt_normals * pred_normals[idx_gt]).sum(-1).abs()
        nc_pred, nc_gt = nc_pred[torch.isfinite(nc_pred)], nc_gt[torch.isfinite(nc_gt)]
        out["nc"] = float((nc_pred.mean() + nc_gt.mean()) / 2)
        out["nc_med"] = float((nc_pred.median() + nc_gt.median()) / 2)
    return out


def align_pointmaps(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> Sim3:
    """Sim(3) taking predicted pointmaps onto true ones, fitted on the pixels of ``mask``.

    ``pred``, ``gt``: ``[..., H, W, 3]`` in pixel correspondence; ``mask``: ``[..., H, W]`` valid true pixels.
    """
    if pred.shape != gt.shape or mask.shape != gt.shape[:-1]:
        raise ValueError(f"pred/gt pointmaps [..., H, W, 3] and mask [..., H, W] must match, got "
                         f"{tuple(pred.shape)}, {tuple(gt.shape)}, {tuple(mask.shape)}")
    ok = mask & torch.isfinite(pred).all(-1) & torch.isfinite(gt).all(-1)
    return umeyama(pred[ok], gt[ok])


def pointmap_metrics(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, align: bool = True,
                     max_points: int | None = 20_000, seed: int = 0) -> dict[str, float]:
    """Table 5's Acc / Comp / NC of one scene's pointmaps (see the module docstring).

    Args:
        pred, gt: ``[V, H, W, 3]`` world pointmaps in pixel correspondence (predicted, true); NaN where there is
            no geometry, so that the neighbours' normals are undefined rather than wrong.
        mask: ``[V, H, W]`` pixels with true geometry.
        align: fit :func:`align_pointmaps` first (else the prediction is taken to be in the true frame).
        max_points: evaluate a seeded random subset of at most this many pixels (None: all).
    """
    normals_pred, normals_gt = pointmap_normals(pred.float()), pointmap_normals(gt.float())
    if align:
        sim = align_pointmaps(pred, gt, mask)
        pred = sim.apply(pred.float())
        normals_pred = normals_pred @ sim.rotation.T.float()
    ok = mask & torch.isfinite(pred).all(-1) & torch.isfinite(gt).all(-1)
    index = ok.reshape(-1).nonzero().squeeze(1)
    if max_points is not None and index.numel() > max_points:
        gen = torch.Generator().manual_seed(seed)
        index = index[torch.randperm(index.numel(), generator=gen)[:max_points]]
    flat = lambda t: t.reshape(-1, 3)[index].float()
    return acc_comp_nc(flat(pred), flat(gt), flat(normals_pred), flat(normals_gt))
