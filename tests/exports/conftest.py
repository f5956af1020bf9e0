"""Fixtures of the export tests (helpers in export_helpers.py)."""

from __future__ import annotations

import pytest
from export_helpers import scene_data

from vist3a.exports import SceneData


@pytest.fixture
def data() -> SceneData:
    return scene_data()
