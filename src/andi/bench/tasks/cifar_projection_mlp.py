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
from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, DataRoot, SizeSpec, Task, shuffled_epochs
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

    def __init__(
        self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair", projection_seed: int = 0
    ) -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self.projection_seed = projection_seed
        self._cache: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}

    def describe(self) -> dict:
        return {
            **super().describe(),
            "projection_seed": self.projection_seed,
            "projection": f"N(0, 1/3072), {FEATURES}x3072, torch.Generator().manual_seed(seed)",
        }

    def _build_model(self, seed: int) -> nn.Module:
        return ProjectionMLP()

    def _split(self, split: str, device: torch.device) -> tuple[Tensor, Tensor]:
        key = (split, str(device))
        if key not in self._cache:
            root = str(data.resolve_data_root(self.data_root).resolve())
            feats, labels = _features(root, split, self.split_mode, self.spec.subset.get(split), self.projection_seed)
            self._cache[key] = (feats.to(device), labels.to(device))
        return self._cache[key]

    def train_batches(
        self,
        seed: int,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Batch]:
        device = torch.device(device)
        feats, labels = self._split("train", device)
        generator = torch.Generator().manual_seed(seed)
        indices = shuffled_epochs(len(feats), batch_size or self.default_batch_size, generator)

        def stream() -> Iterator[Batch]:
            for idx in indices:
                idx = idx.to(device)
                yield feats[idx].to(dtype), labels[idx]

        return stream()

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        feats, labels = self._split(split, device)
        logits = torch.cat([model(x.to(dtype)) for x in feats.split(4096)])
        n = len(labels)
        return {
            "loss": F.cross_entropy(logits, labels, reduction="sum").double().item() / n,
            "accuracy": (logits.argmax(-1) == labels).sum().item() / n,
        }
