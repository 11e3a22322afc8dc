"""Tasks from outside the package: ``--task path/to/file.py:Name``, ``--task package.module:Name`` and installed
packages' entry points (group :data:`ENTRY_POINT_GROUP`).

``Name`` is a :class:`~andi.bench.tasks.base.Task` subclass, or a function of no arguments that returns one (as
:func:`~andi.bench.tasks.char_gpt.char_gpt_width_task` does for the width variants). A task is known by its *spec*
— the string given to ``--task``, which records keep — and its *source hash*: the SHA-256 of the file that defines
it, written into every record's config (:func:`source_sha256`), so runs of a changed task file are never mixed
with the old ones. :func:`check_task` tries the contract on a fresh instance before any sweep starts and names what
is wrong in one line.

Example (``examples/my_task.py`` in the source tree)::

    andi-bench compare examples/my_task.py:TabularTask --size smoke
"""

from __future__ import annotations

import importlib.metadata
import inspect
import math
from collections.abc import Mapping
from functools import cache
from typing import Any

import torch
from torch import nn

from andi.plugins import SpecError, entry_points, file_sha256, is_spec, load_spec

from .base import SizeSpec, Task

__all__ = [
    "ENTRY_POINT_GROUP",
    "TaskContractError",
    "check_task",
    "entry_point_tasks",
    "is_spec",
    "load",
    "source_file",
    "source_sha256",
]

#: Entry-point group under which installed packages register tasks (``name = "module:Name"``).
ENTRY_POINT_GROUP = "andi.bench.tasks"


class TaskContractError(ValueError):
    """A task from outside cannot be loaded or breaks the :class:`Task` contract; the message is one line."""


def _as_task_class(obj: Any, spec: str) -> type[Task]:
    if inspect.isclass(obj):
        if not issubclass(obj, Task):
            raise TaskContractError(f"task {spec!r}: {obj.__name__} is not a subclass of andi.bench.tasks.Task")
        return obj
    if callable(obj):
        try:
            made = obj()
        except Exception as e:
            raise TaskContractError(f"task {spec!r}: the factory raised {type(e).__name__}: {e}") from e
        if inspect.isclass(made) and issubclass(made, Task):
            return made
        raise TaskContractError(f"task {spec!r}: the factory returned {type(made).__name__}, not a Task subclass")
    raise TaskContractError(f"task {spec!r}: {type(obj).__name__} is neither a Task subclass nor a factory of one")


@cache
def load(spec: str) -> type[Task]:
    """The task class of ``spec`` (``file.py:Name``, ``module:Name`` or an entry-point name); raises
    :class:`TaskContractError` with a one-line reason."""
    if not is_spec(spec):
        points = entry_point_tasks()
        if spec not in points:
            raise TaskContractError(f"unknown task {spec!r}")
        try:
            obj = points[spec].load()
        except Exception as e:  # the plugin's own import
            what = f"task {spec!r} ({points[spec].value})"
            raise TaskContractError(f"{what}: loading it raised {type(e).__name__}: {e}") from e
        return _as_task_class(obj, spec)
    try:
        obj, _ = load_spec(spec, "task")
    except SpecError as e:
        raise TaskContractError(str(e)) from e
    return _as_task_class(obj, spec)


def entry_point_tasks() -> dict[str, importlib.metadata.EntryPoint]:
    """Tasks that installed packages register under :data:`ENTRY_POINT_GROUP`, by name."""
    return entry_points(ENTRY_POINT_GROUP)


def source_file(cls: type) -> str | None:
    """The source file that defines ``cls`` (``None`` when it has none, e.g. defined interactively)."""
    try:
        return inspect.getsourcefile(cls)
    except TypeError:
        return None


def source_sha256(cls: type[Task]) -> str | None:
    """SHA-256 of :func:`source_file` (``None`` without one)."""
    return file_sha256(source_file(cls))


def _batch_size(task: Task) -> int:
    return max(1, min(task.default_batch_size, 8))


def _attempt(where: str, what: str, call: Any) -> Any:
    """``call()``, with any exception of the user's code turned into one :class:`TaskContractError` line."""
    try:
        return call()
    except TaskContractError:
        raise
    except Exception as e:
        raise TaskContractError(f"{where}: {what} raised {type(e).__name__}: {e}") from e


def check_task(spec: str, cls: type[Task], size: str, data_root: Any = None) -> None:
    """Try the :class:`Task` contract on ``cls`` at ``size`` before a sweep: raises :class:`TaskContractError`
    naming the task and the first thing that is wrong.

    Checked: the size exists; the class instantiates (no abstract method left); ``build_model(0)`` returns an
    ``nn.Module`` with trainable parameters; ``train_batches(0)`` yields a batch; ``loss`` is a finite scalar tensor
    with a gradient; ``evaluate`` on every split returns a dict holding the primary metric, finite for the
    untrained model.
    """
    where = f"task {spec!r}"
    sizes = getattr(cls, "sizes", None)
    if not isinstance(sizes, Mapping) or size not in sizes:
        known = ", ".join(sizes) if isinstance(sizes, Mapping) and sizes else "none"
        raise TaskContractError(f"{where}: no size {size!r} (its sizes: {known}); set Task.sizes[{size!r}]")
    if not isinstance(sizes[size], SizeSpec):
        raise TaskContractError(f"{where}: sizes[{size!r}] must be a SizeSpec, got {type(sizes[size]).__name__}")
    if not isinstance(getattr(cls, "name", None), str):
        raise TaskContractError(f"{where}: set the class attribute name (a string naming the task in reports)")
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        raise TaskContractError(f"{where}: missing method(s) {', '.join(missing)}")
    task = _attempt(where, "creating it", lambda: cls(size, data_root))
    model = _attempt(where, "build_model(0)", lambda: task.build_model(0))
    if not isinstance(model, nn.Module) or not any(p.requires_grad for p in model.parameters()):
        got = type(model).__name__
        raise TaskContractError(f"{where}: build_model must return an nn.Module with trainable parameters, got {got}")
    batch = _attempt(where, "train_batches(0)", lambda: next(iter(task.train_batches(0, batch_size=_batch_size(task)))))
    loss = _attempt(where, "loss(model, batch)", lambda: task.loss(model, batch))
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        shape = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, torch.Tensor) else type(loss).__name__
        raise TaskContractError(f"{where}: loss must return a scalar tensor, got {shape}")
    if not bool(torch.isfinite(loss.detach()).all()):
        raise TaskContractError(f"{where}: the loss of the untrained model is {loss.item()}, not finite")
    if not loss.requires_grad:
        raise TaskContractError(f"{where}: the loss has no gradient (computed under no_grad, or detached)")
    for split in task.splits:
        metrics = _attempt(where, f"evaluate(model, {split!r})", lambda split=split: task.evaluate(model, split))
        value = metrics.get(cls.primary_metric) if isinstance(metrics, Mapping) else None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise TaskContractError(
                f"{where}: evaluate(model, {split!r}) must return a dict with a finite {cls.primary_metric!r} "
                f"(the primary metric) for the untrained model, got {metrics!r}"
            )
