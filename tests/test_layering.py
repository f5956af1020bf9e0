"""The import rule, checked on the source: a module imports only its own package and packages of lower layers.

The rule is written once, here, as ``LAYERS`` (lowest first). Every ``import`` / ``from ... import`` in every
module of ``src/vist3a`` counts, at module level or inside a function, relative imports resolved. ``nano`` sits
on top of the model layers (a leaf that plugs into the registry): nothing below it may import it, and the
benchmarks (``benchmark``, which reach the nano models through the registry) never do either.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "vist3a"

#: Lowest first; a module may import its own package and anything of a strictly lower layer. A module listed
#: with a dotted name (``alignment.scorers``) overrides its package's layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("__init__", "errors"),
    ("io_utils", "lazy", "threads"),  # io_utils raises errors' UserInputError / Interrupted
    ("cameras", "media", "hub", "presets", "checkpoints"),
    ("splats", "world"),
    ("exports",),  # files for other tools; save_scene(formats=) writes them
    ("data", "scene", "viewer"),
    ("recon", "video", "evaluation"),
    ("stitching", "alignment.scorers"),
    ("components",),
    ("alignment", "pipeline", "stitching.models"),  # stitching.models: the stitch command's model resolver
    ("benchmark", "app"),  # vist3a eval: generates scenes (pipeline) and loads models (components)
    ("nano",),
    ("cli", "parity", "__main__"),
)
#: The packages that must never import vist3a.nano (the issue's list), checked on top of the layers.
NANO_FREE = ("data", "evaluation", "stitching", "alignment", "recon", "video", "splats", "world", "components",
             "benchmark")


def _rank(module: str) -> int:
    """Layer of a dotted module name below ``vist3a`` (the longest listed prefix wins)."""
    parts = module.split(".")
    for length in range(len(parts), 0, -1):
        name = ".".join(parts[:length])
        for rank, layer in enumerate(LAYERS):
            if name in layer:
                return rank
    raise AssertionError(f"vist3a.{module} is in no layer of LAYERS: add it there")


def _imports(path: Path, root: Path) -> list[tuple[int, str]]:
    """``(line, module below vist3a)`` of every vist3a import in ``path`` (a file under the package ``root``)."""
    module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            names = [target]
            if target == "vist3a":  # `from vist3a import x`: a submodule x, or a name of vist3a/__init__.py
                names = [f"vist3a.{a.name}" if (root / a.name).is_dir() or (root / f"{a.name}.py").is_file()
                         else "vist3a.__init__" for a in node.names]
        else:
            continue
        found += [(node.lineno, n.removeprefix("vist3a.")) for n in names if n.startswith("vist3a.")]
    return found


def _owner(path: Path, root: Path) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")


def upward_imports(root: Path = SRC) -> list[str]:
    """Every import that breaks the rule, as ``file:line: a -> b`` lines."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        owner = _owner(path, root)
        mine = _rank(owner)
        own_package = owner.split(".")[0]
        for line, target in _imports(path, root):
            if target.split(".")[0] == own_package and _rank(target) <= mine:
                continue
            nano_ban = target.split(".")[0] == "nano" and own_package in NANO_FREE
            if _rank(target) >= mine or nano_ban:
                bad.append(f"{path.relative_to(root.parent)}:{line}: vist3a.{owner} -> vist3a.{target}")
    return bad


def test_no_module_imports_upwards():
    bad = upward_imports()
    assert not bad, "upward imports (see LAYERS in this test):\n" + "\n".join(bad)


@pytest.mark.parametrize("statement", ["import vist3a.nano", "from vist3a.nano.weights import nano_available",
                                       "from vist3a import nano"])
def test_a_deliberate_nano_import_in_data_is_caught(tmp_path, statement):
    """Copy the tree, add the import inside a function of data/, and the rule must fail on exactly that line."""
    import shutil

    copy = tmp_path / "vist3a"
    shutil.copytree(SRC, copy, ignore=shutil.ignore_patterns("__pycache__", "weights"))
    target = copy / "data" / "folder.py"
    target.write_text(target.read_text() + f"\n\ndef _sneaky():\n    {statement}\n")
    bad = upward_imports(copy)
    assert len(bad) == 1 and "vist3a/data/folder.py" in bad[0] and "-> vist3a.nano" in bad[0]
