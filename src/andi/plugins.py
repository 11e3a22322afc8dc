"""Loading a user's code by name: ``path/to/file.py:NAME``, ``package.module:NAME`` and installed packages' entry
points, with the SHA-256 of the source file that defined it.

User optimizers (:mod:`andi.optim.user`) and user tasks (:mod:`andi.bench.tasks.external`) are both found this way.
A file is imported once per process under a name derived from its resolved path, and registered in ``sys.modules``
so that what it defines can be pickled (a sweep's worker processes import it again by the same spec).

>>> is_spec("my_task.py:MyTask"), is_spec("adamw")
(True, False)
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["SpecError", "entry_points", "file_sha256", "is_spec", "load_spec", "module_sha256"]


class SpecError(ValueError):
    """A spec that cannot be loaded; the message is one line naming the spec and why."""


def is_spec(name: str) -> bool:
    """Whether ``name`` is ``path/to/file.py:NAME`` or ``package.module:NAME`` (rather than a registered name)."""
    return isinstance(name, str) and ":" in name


def _is_file(where: str) -> bool:
    return where.endswith(".py") or "/" in where or "\\" in where


@functools.cache
def _module(where: str, what: str) -> ModuleType:
    if _is_file(where):
        path = Path(where).resolve()
        if not path.is_file():
            raise SpecError(f"{what} file {where}: no such file")
        name = f"andi_user_{what}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise SpecError(f"{what} file {where}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # pickling and dataclasses look the module up by name
        try:
            spec.loader.exec_module(module)
        except Exception as e:
            del sys.modules[name]
            raise SpecError(f"{what} file {where}: importing it raised {type(e).__name__}: {e}") from e
        return module
    try:
        return importlib.import_module(where)
    except ImportError as e:
        raise SpecError(f"{what} module {where}: cannot import it ({e})") from e


def load_spec(spec: str, what: str) -> tuple[Any, ModuleType]:
    """The object ``spec`` names and the module that holds it; ``what`` ("task", "optimizer") words the errors.

    Raises:
        SpecError: a malformed spec, a missing file or module, an import that raised, or a missing name.
    """
    where, _, attr = spec.rpartition(":")
    if not where or not attr.isidentifier():
        raise SpecError(f"{what} {spec!r}: expected path/to/file.py:NAME or package.module:NAME")
    module = _module(where, what)
    if not hasattr(module, attr):
        raise SpecError(f"{what} {spec!r}: {where} defines no {attr!r}")
    return getattr(module, attr), module


def file_sha256(path: str | None) -> str | None:
    """SHA-256 of a file's bytes (``None`` without a readable file)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None
    except OSError:
        return None


def module_sha256(module: ModuleType | None) -> str | None:
    """SHA-256 of the source file of ``module`` (``None`` when it has none)."""
    return file_sha256(getattr(module, "__file__", None))


def entry_points(group: str) -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points installed packages declare in ``group``, by name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=group)}
