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

from .base import SIZES, SPLIT_MODES, SizeSpec, Task
from .char_gpt import GPT_WIDTHS, CharGPTTask, CharGPTV7Task, char_gpt_width_task
from .cifar_projection_mlp import CifarProjectionTask
from .cifar_resnet9 import CifarTask
from .saddle import SaddleTask
from .toys import (
    NoisyQuadraticTask,
    NoisyRotatedQuadraticTask,
    QuadraticTask,
    RosenbrockTask,
    RotatedQuadraticTask,
)

__all__ = ["SIZES", "SPLIT_MODES", "TASKS", "SizeSpec", "Task", "get_task"]

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
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; available: {', '.join(TASKS)}") from None
    return cls(size, data_root, split_mode=split_mode, **options)
