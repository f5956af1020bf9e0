"""The stitched decoder against the official ``anysplat_stitched_tiny`` golden vectors (StitchVAE3D)."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from safetensors.torch import load_file
from stitch_helpers import assert_close_to_oracle

CASE = "anysplat_stitched_tiny"
FILES = ("outputs", "outputs_extra", "outputs_novoxel", "intermediates")


@functools.cache
def _run_case(folder: Path) -> dict:
    from vist3a.stitching.parity_stitched import run_stitched_case

    return run_stitched_case(folder)


@pytest.fixture
def stitched_case(oracle_dir):
    folder = oracle_dir / CASE
    return folder, _run_case(folder)


@pytest.mark.parametrize("stem", FILES)
def test_every_oracle_tensor_within_readme_tolerance(stitched_case, stem):
    folder, result = stitched_case
    reference = load_file(str(folder / f"{stem}.safetensors"))
    missing = sorted(set(reference) - set(result[stem]))
    assert not missing, f"{stem}: run_stitched_case does not produce {missing}"
    for key, ref in reference.items():
        assert_close_to_oracle(result[stem][key], ref, f"{stem}/{key}")


def test_voxel_count_is_exact(stitched_case):
    folder, result = stitched_case
    reference = load_file(str(folder / "outputs.safetensors"))
    assert result["outputs"]["gaussians.means"].shape[1] == reference["gaussians.means"].shape[1]
    novoxel = load_file(str(folder / "outputs_novoxel.safetensors"))
    views, height, width = reference["depth_dict.depth"].shape[1:4]
    assert result["outputs_novoxel"]["gaussians.means"].shape[1] == novoxel["gaussians.means"].shape[1] == (
        views * height * width
    )
