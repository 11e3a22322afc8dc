"""cifar-proj: CIFAR-10 under a fixed random projection to 256-d, classified by a 3-layer MLP.

``docs/design/protocol.md`` (d) 4. Each image is normalized with the CIFAR task's constants, flattened to 3,072 values
``x`` and projected once, ``z = P x`` with a fixed Gaussian :math:`P \\in \\mathbb{R}^{256\\times 3072}`,
:math:`P_{ij} \\sim \\mathcal{N}(0, 1/3072)` drawn from ``torch.Generator().manual_seed(projection_seed)``
(recorded in every run record), so ``z`` has entries of order one. The features are cached in memory.
Model: ``Linear(256,256) ReLU Linear(256,256) ReLU Linear(256,10)`` (134,154 parameters), cross-entropy,
batch 128, shuffled epochs, no augmentation. Splits and metrics as the CIFAR task (45k / 5k / test;
accuracy and loss). About 0.1 GFLOP per step: full grids with 5 seeds fit on a CPU.
These settings are ours (the literature source of the task could not be verified).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, DataRoot, MetricSums, SizeSpec, Task, classification_sums
from .cifar_resnet9 import CIFAR_MEAN, CIFAR_STD, cifar10_split

__all__ = ["CifarProjectionTask", "ProjectionMLP", "gaussian_projection"]

FEATURES = 256


def gaussian_projection(seed: int, out_features: int = FEATURES, in_features: int = 3072) -> Tensor:
    """The fixed projection matrix ``P`` (float32, entries N(0, 1/in_features)) for ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(out_features, in_features, generator=generator) / in_features**0.5


@functools.lru_cache(maxsize=8)
def _features(root: str, split: str, split_mode: str, cap: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """Projected features (float32, N×256) and labels of a CIFAR-10 split, cached in memory."""
    images, labels = cifar10_split(root, split, split_mode)
    if cap:
        images, labels = images[:cap], labels[:cap]
    p = gaussian_projection(seed)
    mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
    chunks = [
        ((torch.from_numpy(np.array(images[i : i + 5000])).float() / 255.0 - mean) / std).flatten(1) @ p.T
        for i in range(0, len(images), 5000)
    ]
    return torch.cat(chunks), torch.from_numpy(labels.astype(np.int64))


class ProjectionMLP(nn.Module):
    """``Linear(d, w) ReLU Linear(w, w) ReLU Linear(w, classes)``."""

    def __init__(self, in_features: int = FEATURES, width: int = 256, num_classes: int = 10) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_features, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class CifarProjectionTask(Task):
    name = "cifar-proj"
    datasets = ("cifar10",)
    primary_metric = "accuracy"
    higher_is_better = True
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=2500, batch_size=128, eval_every=100),
        "cpu": SizeSpec(steps=500, batch_size=128, eval_every=50),
        "smoke": SizeSpec(steps=20, batch_size=32, eval_every=10, subset={"train": 512, "val": 256, "test": 256}),
    }
    # Same declared choice as SADDLE: the MLP's first Linear is input-side, its last the head.
    role_overrides: ClassVar[Mapping[str, str]] = {"net.0.weight": "conv_first", "net.4.weight": "head"}
    eval_batch_size = 50_000  # the whole split in one pass (as the published records were computed)

    def __init__(
        self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair", projection_seed: int = 0
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self.projection_seed = projection_seed

    def describe(self) -> dict:
        return {
            **super().describe(),
            "projection_seed": self.projection_seed,
            "projection": f"N(0, 1/3072), {FEATURES}x3072, torch.Generator().manual_seed(seed)",
        }

    def _build_model(self, seed: int) -> nn.Module:
        return ProjectionMLP()

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        root = str(data.resolve_data_root(self.data_root).resolve())
        # The cap is applied before the projection: the features of a capped split are computed from it alone.
        return _features(root, split, self.split_mode, self.spec.subset.get(split), self.projection_seed)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        features, labels = chunk
        return classification_sums(model(features.to(dtype)), labels)
