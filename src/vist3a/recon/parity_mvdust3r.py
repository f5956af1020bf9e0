"""Parity runner for the MV-DUSt3R oracle cases (``class: AsymmetricCroCo3DStereoMultiView``).

Registered in :data:`vist3a.parity.CASE_HANDLERS`; verification only, product code must not import it.
Outputs use the release's layout: batch entry ``b * P + r`` (path ``r`` of batch element ``b``), *slot* order
(slot 0 = ``pred1`` = the path's reference view, slot ``s >= 1`` = ``pred2s.<s-1>``; views 0 and ``r`` swapped in
path ``r``), opacity with a trailing channel.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from vist3a.recon.convert import check_state_dict
from vist3a.recon.mvdust3r import MVDust3r, MVDust3rOutput, official_kwargs, slot_permutations

Results = dict[str, dict[str, torch.Tensor]]
SINGLE_PATH_SECTION = "outputs_mvd model"
GAUSSIAN_KEYS = ("rgb", "opacity", "scale", "rotation")


def _build(constructor: dict, state_dict: dict[str, torch.Tensor], multi_path: bool) -> MVDust3r:
    kwargs = official_kwargs(constructor)
    if not multi_path:
        single = next((v for k, v in constructor.items() if k.startswith(SINGLE_PATH_SECTION)), None)
        if single is not None:  # the single-path model's own constructor, plus the shared head sections
            heads = {k: v for k, v in constructor.items() if k.startswith(("GSHead", "LinearPts3d"))}
            kwargs = official_kwargs({"AsymmetricCroCo3DStereoMultiView": single, **heads})
        kwargs["multi_path"] = False
        state_dict = {k: v for k, v in state_dict.items() if not k.startswith("dec_same_view_blocks.")}
    model = MVDust3r(**kwargs).eval()
    check_state_dict(model, state_dict, "official MV-DUSt3R state_dict")
    model.load_state_dict(state_dict, strict=True)
    return model


def official_layout(out: MVDust3rOutput, with_gaussians: bool = True) -> dict[str, torch.Tensor]:
    """View-ordered :class:`MVDust3rOutput` -> the release's ``pred1.*`` / ``pred2s.<i>.*`` tensors."""
    batch, paths, views = out.points.shape[:3]
    perm = slot_permutations(views, paths, out.points.device)

    def slots(t: torch.Tensor) -> torch.Tensor:  # [B, P, V, ...] -> [B*P, V(slot), ...]
        return torch.stack([t[:, r, perm[r]] for r in range(paths)], 1).flatten(0, 1)

    fields = {"pts3d": out.points, "conf": out.conf}
    if with_gaussians and out.rgb is not None:
        fields.update(rgb=out.rgb, opacity=out.opacity[..., None], scale=out.scale, rotation=out.rotation)
    result = {}
    for name, value in fields.items():
        slotted = slots(value)
        result[f"pred1.{name}"] = slotted[:, 0]
        for s in range(1, views):
            key = "pts3d_in_other_view" if name == "pts3d" else name
            result[f"pred2s.{s - 1}.{key}"] = slotted[:, s]
    result["slot_view_index"] = perm.repeat(batch, 1)
    return result


@torch.no_grad()
def _single_path_intermediates(model: MVDust3r, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """``dec.embed``, ``dec.layer<l>.out`` (before ``dec_norm``) and ``head_in.tokens`` in view order."""
    enc = model.encode(images)
    batch, views = images.shape[:2]
    perm = slot_permutations(views, 1, images.device)
    pos = model.grid_positions(enc.grid_hw, images.device)
    x = model.decoder_embed(enc.tokens)
    out = {"intermediates.dec.embed": x}
    for layer in range(model.config.dec_depth):
        x = model.decoder_layer(layer, x, pos, perm, batch)
        out[f"intermediates.dec.layer{layer}.out"] = x
    out["intermediates.head_in.tokens"] = model.dec_norm(x)
    return out


def _read_case(case_dir: Path) -> tuple[dict, dict[str, torch.Tensor], dict[str, torch.Tensor], list[str]]:
    """A case folder's ``config.json``, state dict, inputs and output stems (read here: ``recon/`` sits below
    :mod:`vist3a.parity`, which only dispatches to this runner)."""
    from safetensors.torch import load_file

    config = json.loads((case_dir / "config.json").read_text())
    state_dict = load_file(case_dir / "state_dict.safetensors")
    inputs = load_file(case_dir / "inputs.safetensors")
    stems = sorted(p.stem for p in case_dir.glob("outputs*.safetensors"))
    return config, state_dict, inputs, stems


@torch.no_grad()
def run_mvdust3r_case(case_dir: Path) -> Results:
    """``model(view1, view2s)`` of MV-DUSt3R+ -> ``outputs``; the same weights as MV-DUSt3R -> ``outputs_mvd``."""
    config, state_dict, inputs, stems = _read_case(case_dir)
    unknown = sorted(set(stems) - {"outputs", "outputs_mvd"})
    if unknown:
        raise ValueError(f"case {case_dir} has output files {unknown} this handler does not produce")
    images = inputs["images"]
    constructor = config["constructor"]
    results: Results = {}
    if "outputs" in stems:
        multi = bool(official_kwargs(constructor)["multi_path"])
        model = _build(constructor, state_dict, multi_path=multi)
        results["outputs"] = official_layout(model(images))
    if "outputs_mvd" in stems:
        model = _build(constructor, state_dict, multi_path=False)
        result = official_layout(model(images))
        result.update(_single_path_intermediates(model, images))
        results["outputs_mvd"] = result
    # every tensor this runner can produce, restricted to those the case's files hold (e.g. ``outputs_mvd`` leaves
    # out the Gaussians and the slot index); a requested name it cannot produce stays missing, and fails the check
    return {stem: _select(values, case_dir / f"{stem}.safetensors") for stem, values in results.items()}


def _select(values: dict[str, torch.Tensor], reference: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(reference), framework="pt") as f:
        names = set(f.keys())
    return {k: v for k, v in values.items() if k in names}
