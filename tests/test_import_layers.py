"""Imports flow one way: bench → optim/routing → functional, distributed → functional; the math imports nothing above.

Checked two ways: statically, every ``import`` in the package (lazy ones inside functions too) against the layer
table, and for private names (``from x import _y`` across packages); and dynamically, each layer imported alone in a
fresh interpreter (the package ``__init__`` bypassed) must not pull in a layer above it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "andi"

#: layer -> the layers its modules may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "functional": set(),
    "distributed": {"functional"},
    "routing": set(),
    "optim": {"functional", "routing"},
    "bench": {"functional", "optim", "routing", "distributed", "top"},
    "top": {"functional", "optim", "routing", "distributed", "bench"},
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "andi":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] == "__init__":
        return "top"
    return parts[1]


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """``(line, absolute module, imported names)`` of every import statement in ``path`` within the package."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, []) for a in node.names if a.name.split(".")[0] == "andi"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "andi":
                found.append((node.lineno, target, [a.name for a in node.names]))
    return found


def _sources() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def test_every_import_flows_down_the_layers() -> None:
    violations = []
    for path in _sources():
        here = _layer(_module_name(path))
        for line, target, names in _imports(path):
            targets = [target] + [
                f"{target}.{n}"
                for n in names
                if (SRC.parent / target.replace(".", "/") / n).exists()
                or (SRC.parent / (target.replace(".", "/") + f"/{n}.py")).exists()
            ]
            for t in targets:
                there = _layer(t)
                if there != here and there not in ALLOWED[here]:
                    violations.append(f"{path.relative_to(SRC)}:{line}: {here} imports {t} ({there})")
    assert not violations, "upward imports:\n" + "\n".join(violations)


def test_no_private_name_is_imported_from_another_package() -> None:
    violations = []
    for path in _sources():
        here = _module_name(path).split(".")[:2]
        for line, target, names in _imports(path):
            other_package = target.split(".")[:2] != here
            private = [n for n in names if n.startswith("_")] + [p for p in target.split(".") if p.startswith("_")]
            if other_package and private:
                violations.append(f"{path.relative_to(SRC)}:{line}: {target} {private}")
    assert not violations, "private names imported across packages:\n" + "\n".join(violations)


_ALONE = """
import importlib.util, sys, types
root = {root!r}
pkg = types.ModuleType("andi"); pkg.__path__ = [root]; sys.modules["andi"] = pkg  # skip andi/__init__.py
importlib.import_module({module!r})
loaded = sorted({{m.split(".")[1] for m in sys.modules if m.startswith("andi.")}})
print(",".join(loaded))
"""


@pytest.mark.parametrize(
    ("module", "may_load"),
    [
        ("andi.functional", {"functional"}),
        ("andi.functional.dtensor", {"functional"}),
        ("andi.distributed", {"distributed", "functional"}),
        ("andi.routing", {"routing"}),
        ("andi.optim", {"optim", "functional", "routing"}),
    ],
)
def test_each_layer_imports_alone(module: str, may_load: set[str]) -> None:
    code = _ALONE.format(root=str(SRC), module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(out.stdout.strip().split(",")) - {""}
    assert loaded <= may_load, f"importing {module} alone loaded {sorted(loaded - may_load)}"
