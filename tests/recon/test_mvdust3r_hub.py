"""MV-DUSt3R weight loading: release-style checkpoints, vist3a folders, strict errors, tiny random models."""

from __future__ import annotations

import argparse

import pytest
import torch

from vist3a.errors import UserInputError
from vist3a.recon.mvdust3r_hub import mvdust3r_from_pretrained, random_tiny_mvdust3r


@pytest.fixture(scope="module")
def tiny_plus():
    model = random_tiny_mvdust3r("mvdust3r-plus", seed=3, enc_num_heads=4, n_ref=3)
    for p in model.parameters():  # every tensor distinct from a fresh init
        p.data.add_(0.01 * torch.randn_like(p))
    return model


def _release_checkpoint(path, model, constructor: str) -> None:
    args = argparse.Namespace(model=constructor, lr=1e-4)
    torch.save({"model": model.state_dict(), "args": args, "epoch": 3}, path)


def test_release_checkpoint_round_trip(tmp_path, tiny_plus):
    ckpt = tmp_path / "MVDp_s2.pth"
    _release_checkpoint(ckpt, tiny_plus, "AsymmetricCroCo3DStereoMultiView(enc_num_heads=4, dec_num_heads=2, "
                                         "m_ref_flag=True, n_ref=3)")
    loaded = mvdust3r_from_pretrained(ckpt, "mvdust3r-plus")
    assert loaded.config.enc_num_heads == 4 and loaded.config.n_ref == 3 and loaded.config.multi_path
    images = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded(images).points, tiny_plus(images).points)
    # the folder form finds the release file name
    assert mvdust3r_from_pretrained(tmp_path, "mvdust3r-plus").config.n_ref == 3


def test_vist3a_folder_round_trip(tmp_path, tiny_plus):
    tiny_plus.save_pretrained(tmp_path / "m")
    loaded = mvdust3r_from_pretrained(tmp_path / "m")
    for key, value in tiny_plus.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key


def test_strict_errors_name_keys_and_variant(tmp_path, tiny_plus):
    state = tiny_plus.state_dict()
    state.pop("dec_norm.weight")
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(UserInputError, match=r"missing keys: dec_norm.weight; 1 unexpected keys: extra.weight"):
        mvdust3r_from_pretrained(tmp_path / "broken.pth")
    _release_checkpoint(tmp_path / "plus.pth", tiny_plus, "")
    with pytest.raises(UserInputError, match="--model mvdust3r-plus"):
        mvdust3r_from_pretrained(tmp_path / "plus.pth", "mvdust3r")
    with pytest.raises(UserInputError, match="not a Hugging Face repo id"):
        mvdust3r_from_pretrained(tmp_path / "nope" / "x.pth")


def test_random_tiny_points_lie_in_front():
    model = random_tiny_mvdust3r("mvdust3r")
    with torch.no_grad():
        out = model(torch.rand(1, 2, 3, 32, 32) * 2 - 1)
    assert float(out.points[..., 2].min()) > 0
