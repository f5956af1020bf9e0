"""Atomic writes leave nothing behind when Ctrl-C / SIGTERM lands right after the temporary is created."""

import os

import pytest

from vist3a import io_utils


def _interrupt_after(real):
    """``real`` (os.open / os.mkdir) that does its work and then raises, as a signal handler landing right after
    the call returns would."""
    def call(*args, **kwargs):
        result = real(*args, **kwargs)
        if isinstance(result, int):
            os.close(result)
        raise KeyboardInterrupt

    return call


def test_atomic_path_removes_a_temporary_interrupted_at_birth(tmp_path, monkeypatch):
    target = tmp_path / "losses.csv"
    target.write_text("old\n")
    monkeypatch.setattr(io_utils.os, "open", _interrupt_after(os.open))
    with pytest.raises(KeyboardInterrupt), io_utils.atomic_path(target) as tmp:
        tmp.write_text("new\n")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["losses.csv"] and target.read_text() == "old\n"


def test_atomic_dir_removes_a_temporary_interrupted_at_birth(tmp_path, monkeypatch):
    target = tmp_path / "scene"
    monkeypatch.setattr(io_utils.os, "mkdir", _interrupt_after(os.mkdir))
    with pytest.raises(KeyboardInterrupt), io_utils.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("x")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_usual_permissions(tmp_path):
    target = tmp_path / "out.json"
    with io_utils.atomic_path(target) as tmp:
        tmp.write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
