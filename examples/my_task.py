"""A task of your own for ``andi-bench compare``: a tabular MLP classifier on data this file generates.

Run the fair protocol (ANDI, ANDI-hybrid, AdamW and Muon, each with its lr tuned) on it and get a verdict::

    andi-bench compare examples/my_task.py:TabularTask --size smoke   # seconds: checks the wiring
    andi-bench compare examples/my_task.py:TabularTask                # cpu size: a few minutes on 2 cores

The data: 24 standard-normal features, 5 classes given by a fixed random two-layer "teacher" network (so the
classes are not linearly separable), 10 % of the labels flipped at random. The dataset is the same for every run
(its own fixed seed); a run's seed drives the model's init and the order of the batches, as for the package's
tasks. What a task must provide is documented in the cookbook page "Is ANDI better on my model?" and in
``andi.bench.tasks.base.Task``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from andi.bench.tasks import Batch, MetricSums, SizeSpec, Task, classification_sums

FEATURES, CLASSES, HIDDEN = 24, 5, 128
#: Examples of each split; the sizes' ``subset`` caps them.
SPLIT_SIZES = {"train": 40_000, "val": 5_000, "test": 5_000}


def make_dataset(seed: int = 20261206) -> dict[str, tuple[Tensor, Tensor]]:
    """Features and labels of the three splits, from a generator seeded with ``seed`` (not the run's seed)."""
    g = torch.Generator().manual_seed(seed)
    teacher_in = torch.randn(FEATURES, 64, generator=g) / FEATURES**0.5
    teacher_out = torch.randn(64, CLASSES, generator=g) / 8.0
    n = sum(SPLIT_SIZES.values())
    x = torch.randn(n, FEATURES, generator=g)
    y = (torch.tanh(x @ teacher_in) @ teacher_out).argmax(dim=1)
    flip = torch.rand(n, generator=g) < 0.10
    y[flip] = torch.randint(CLASSES, (int(flip.sum()),), generator=g)
    out, start = {}, 0
    for split, size in SPLIT_SIZES.items():
        out[split] = (x[start : start + size], y[start : start + size])
        start += size
    return out


class TabularTask(Task):
    """A 3-hidden-layer MLP with LayerNorm on 24 tabular features, 5 classes; metric: test accuracy."""

    name = "tabular-mlp"
    primary_metric = "accuracy"
    higher_is_better = True
    divergence_penalty = 1.0 / CLASSES  # a diverged run counts as chance accuracy
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=3000, batch_size=256, eval_every=100),
        "cpu": SizeSpec(steps=300, batch_size=128, eval_every=50, subset={"train": 20_000}),
        "smoke": SizeSpec(steps=20, batch_size=32, eval_every=10, subset={"train": 512, "val": 256, "test": 256}),
    }

    def _build_model(self, seed: int) -> nn.Module:
        layers: list[nn.Module] = []
        width = FEATURES
        for _ in range(3):
            layers += [nn.Linear(width, HIDDEN), nn.LayerNorm(HIDDEN), nn.GELU()]
            width = HIDDEN
        layers.append(nn.Linear(width, CLASSES))
        return nn.Sequential(*layers)

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        return make_dataset()[split]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return nn.functional.cross_entropy(model(x), y)

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        x, y = chunk
        return classification_sums(model(x.to(dtype)), y)
