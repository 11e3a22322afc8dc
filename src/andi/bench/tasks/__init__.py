"""Benchmark tasks: the paper's three (``saddle``, ``cifar``, ``gpt``), a CPU-sized CIFAR variant
(``cifar-proj``), toy landscapes (``rosenbrock``, ``quadratic``, ``rotated-quadratic`` and their
``-noisy`` variants), char-GPT width variants for lr transfer (``gpt-w64``, ``gpt-w128``, ``gpt-w256``) and the
author's v7 GPT setting for its replay (``gpt-v7``). See
:class:`andi.bench.tasks.base.Task` for the interface.

Example::

    task = get_task("gpt", size="cpu")
    model = task.build_model(seed=0)
    x, y = next(task.train_batches(seed=0))
    task.loss(model, (x, y)).backward()
    task.evaluate(model, "val")     # {"loss": ...}
"""

from __future__ import annotations

import os
from typing import Any

from . import external
from .base import SIZES, SPLIT_MODES, Batch, MetricSums, SizeSpec, Task, classification_sums
from .char_gpt import GPT_WIDTHS, CharGPTTask, CharGPTV7Task, char_gpt_width_task
from .cifar_projection_mlp import CifarProjectionTask
from .cifar_resnet9 import CifarTask
from .external import TaskContractError, check_task
from .saddle import SaddleTask
from .toys import (
    NoisyQuadraticTask,
    NoisyRotatedQuadraticTask,
    QuadraticTask,
    RosenbrockTask,
    RotatedQuadraticTask,
)

__all__ = [
    "SIZES",
    "SPLIT_MODES",
    "TASKS",
    "Batch",
    "MetricSums",
    "SizeSpec",
    "Task",
    "TaskContractError",
    "check_task",
    "classification_sums",
    "external_task_source",
    "find_task_class",
    "get_task",
    "task_class",
]

#: Task name -> class. The first three are the paper's tasks.
TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        SaddleTask,
        CifarTask,
        CharGPTTask,
        CharGPTV7Task,
        CifarProjectionTask,
        RosenbrockTask,
        QuadraticTask,
        RotatedQuadraticTask,
        NoisyQuadraticTask,
        NoisyRotatedQuadraticTask,
        *(char_gpt_width_task(width) for width in GPT_WIDTHS),
    )
}


def get_task(
    name: str,
    size: str = "cpu",
    data_root: str | os.PathLike[str] | None = None,
    *,
    split_mode: str = "fair",
    **options: Any,
) -> Task:
    """Instantiate the task ``name`` at ``size`` (``"full"``, ``"cpu"`` or ``"smoke"``).

    ``split_mode="paper"`` gives the replay's data semantics (no validation split); ``options`` are passed
    to the task class (e.g. ``projection_seed`` for ``cifar-proj``, ``noise`` for the quadratics).
    """
    return task_class(name)(size, data_root, split_mode=split_mode, **options)


def task_class(name: str) -> type[Task]:
    """The class of task ``name``: one of :data:`TASKS`, a task from outside (``path/to/file.py:Name`` or
    ``package.module:Name``) or one an installed package registers (:mod:`andi.bench.tasks.external`).

    Raises ``ValueError`` (a :class:`TaskContractError` for tasks from outside) naming what is wrong.
    """
    if name in TASKS:
        return TASKS[name]
    if not external.is_spec(name) and name not in external.entry_point_tasks():
        raise ValueError(
            f"unknown task {name!r}; available: {', '.join(TASKS)}, or path/to/file.py:Name for a task of your own"
        )
    return external.load(name)


def find_task_class(name: str) -> type[Task] | None:
    """:func:`task_class`, or ``None`` where it cannot be found here (e.g. a report on another machine)."""
    try:
        return task_class(name)
    except ValueError:
        return None


def external_task_source(name: str) -> str | None:
    """SHA-256 of the file defining task ``name`` when it comes from outside the package (``None`` for a built-in
    task, or when its file cannot be read)."""
    if name in TASKS:
        return None
    cls = find_task_class(name)
    return external.source_sha256(cls) if cls is not None else None
