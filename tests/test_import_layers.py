"""Imports flow one way: bench → optim/routing → functional, distributed → functional, and ``andi.plugins`` (loading
user code by spec) below optim and bench; the math imports nothing above.
Inside the benchmark: CLI → report → execution → protocols → tasks → base (util, errors), and the step benchmark
beside them on the base alone. No module imports itself back through any chain (no import cycle).

Checked two ways: statically, every ``import`` in the package (lazy ones inside functions and ``TYPE_CHECKING``
blocks too) against the layer table, for private names (``from x import _y`` across packages) and for cycles; and
dynamically, each layer imported alone in a fresh interpreter (the package ``__init__`` bypassed) must not pull in a
layer above it.
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
    "plugins": set(),
    "optim": {"functional", "routing", "plugins"},
    "top": {"functional", "optim", "routing", "distributed", "plugins", *(f"bench.{b}" for b in ("cli",))},
}
_LIBRARY = {"functional", "optim", "routing", "distributed", "plugins", "top"}
#: The benchmark's subpackages, top to bottom; each may import the library and the layers listed.
ALLOWED.update(
    {
        "bench.base": _LIBRARY,
        "bench.tasks": _LIBRARY | {"bench.base"},
        "bench.protocols": _LIBRARY | {"bench.base", "bench.tasks"},
        "bench.execution": _LIBRARY | {"bench.base", "bench.tasks", "bench.protocols"},
        "bench.report": _LIBRARY | {"bench.base", "bench.tasks", "bench.protocols", "bench.execution"},
        "bench.stepbench": _LIBRARY | {"bench.base"},
        "bench.cli": _LIBRARY
        | {"bench.base", "bench.tasks", "bench.protocols", "bench.execution", "bench.report", "bench.stepbench"},
    }
)
_BENCH_SUBPACKAGES = ("tasks", "protocols", "execution", "report", "stepbench")
#: Top-level modules of ``andi.bench`` and their layer (the subpackages are layers of their own).
_BENCH_MODULES = {
    "util": "base",
    "errors": "base",
    "paper_claims": "base",
    "cli": "cli",
    "arguments": "cli",
    "launcher": "cli",
    "preflight": "cli",
    "__main__": "cli",
}


def _layer(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "andi":
        raise ValueError(module)
    if len(parts) == 1 or parts[1] == "__init__":
        return "top"
    if parts[1] == "bench":
        if len(parts) == 2:
            return "bench.cli"
        sub = parts[2]
        if sub in _BENCH_SUBPACKAGES:
            return f"bench.{sub}"
        if sub not in _BENCH_MODULES:
            raise AssertionError(f"andi.bench.{sub} has no layer: add it to _BENCH_MODULES or to a subpackage")
        return f"bench.{_BENCH_MODULES[sub]}"
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


def _package(module: str) -> list[str]:
    """The package a module belongs to for the private-name rule: ``andi.<pkg>``, or ``andi.bench.<sub>``."""
    parts = module.split(".")
    subpackage = parts[:2] == ["andi", "bench"] and len(parts) >= 3 and parts[2] in _BENCH_SUBPACKAGES
    return parts[:3] if subpackage else parts[:2]


def _edges() -> dict[str, set[str]]:
    """module -> the modules it imports (a ``from pkg import name`` names ``pkg.name`` when that is a module)."""
    modules = {_module_name(p) for p in _sources()}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in _sources():
        here = _module_name(path)
        for _, target, names in _imports(path):
            subs = {f"{target}.{n}" for n in names if f"{target}.{n}" in modules}
            if subs and len(subs) == len(names):
                graph[here] |= subs
            else:
                graph[here] |= subs | ({target} if target in modules else set())
        graph[here].discard(here)
    return graph


def test_no_import_cycle_anywhere() -> None:
    graph = _edges()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append([*stack[stack.index(n) :], n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch) -> None:
    """The check above is not vacuous: two modules importing each other lazily are reported."""
    pkg = tmp_path / "andi"
    (pkg / "bench").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "bench" / "__init__.py").write_text("")
    (pkg / "bench" / "util.py").write_text("def f():\n    from andi.bench import errors\n")
    (pkg / "bench" / "errors.py").write_text("from andi.bench.util import f\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", pkg)
    with pytest.raises(AssertionError, match=r"import cycles"):
        test_no_import_cycle_anywhere()


def test_no_private_name_is_imported_from_another_package() -> None:
    violations = []
    for path in _sources():
        here = _package(_module_name(path))
        for line, target, names in _imports(path):
            other_package = _package(target) != here
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
        ("andi.plugins", {"plugins"}),
        ("andi.optim", {"optim", "functional", "routing", "plugins"}),
        ("andi.bench.tasks", {"bench", "functional", "optim", "routing", "plugins"}),
        ("andi.bench.protocols", {"bench", "functional", "optim", "routing", "plugins"}),
    ],
)
def test_each_layer_imports_alone(module: str, may_load: set[str]) -> None:
    code = _ALONE.format(root=str(SRC), module=module)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    loaded = set(out.stdout.strip().split(",")) - {""}
    assert loaded <= may_load, f"importing {module} alone loaded {sorted(loaded - may_load)}"
