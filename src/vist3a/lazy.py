"""Lazy package attributes: names resolved from their submodule on first access.

Importing ``vist3a.alignment`` or ``vist3a.evaluation`` must stay cheap (the CLI imports them for ``--help``),
so their ``__init__`` maps each public name to the submodule that defines it and imports that only when the
name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(package: str, table: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level ``__getattr__`` for ``package`` that returns ``name`` from ``package.<table[name]>``."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(importlib.import_module(f"{package}.{table[name]}"), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
