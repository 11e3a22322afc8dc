"""SADDLE: the paper's deep tanh autoencoder on Fashion-MNIST (``docs/design/protocol.md`` (a), task SADDLE).

Model (437,664 parameters), inputs flattened to 784 pixels in [0, 1]::

    encoder: Linear(784,256) Tanh Linear(256,64) Tanh Linear(64,16) Tanh
    decoder: Linear(16,64) Tanh Linear(64,256) Tanh Linear(256,784) Sigmoid

Loss: ``F.mse_loss(model(x), x)``, i.e. :math:`\\frac{1}{784B}\\sum_{b,i}(\\hat x_{bi} - x_{bi})^2`.
Splits (fair): the first 55,000 official training images train, the last 5,000 are ``"val"``, the official
10,000 test images are ``"test"``; metric = MSE with the training reduction. Paper mode trains on all 60,000.
The model is the paper's at every size; ``cpu`` uses fewer steps, ``smoke`` tiny subsets.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, MetricSums, SizeSpec, Task

__all__ = ["DeepAutoencoder", "SaddleTask"]


class DeepAutoencoder(nn.Module):
    """The paper's 784-256-64-16-64-256-784 tanh autoencoder with a sigmoid output (437,664 parameters)."""

    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 64), nn.Tanh(), nn.Linear(64, 16), nn.Tanh()
        )
        self.decoder = nn.Sequential(
            nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 256), nn.Tanh(), nn.Linear(256, 784), nn.Sigmoid()
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.decoder(self.encoder(x.view(x.size(0), -1)))


class SaddleTask(Task):
    name = "saddle"
    datasets = ("fashion-mnist",)
    primary_metric = "loss"
    higher_is_better = False
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=2500, batch_size=128, eval_every=100),
        "cpu": SizeSpec(steps=500, batch_size=128, eval_every=50),
        "smoke": SizeSpec(steps=20, batch_size=32, eval_every=10, subset={"train": 512, "val": 256, "test": 256}),
    }
    # docs/design/protocol.md (c): the autoencoder's first Linear is treated as input-side, its last as the head.
    role_overrides: ClassVar[Mapping[str, str]] = {"encoder.0.weight": "conv_first", "decoder.4.weight": "head"}

    def _build_model(self, seed: int) -> nn.Module:
        return DeepAutoencoder()

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        """uint8 (N, 784) pixels of ``split``."""
        if split == "test":
            images, _ = data.load_fashion_mnist(self.data_root, train=False)
        else:
            images, _ = data.load_fashion_mnist(self.data_root, train=True)
            n_val = len(images) // 12  # 5,000 of the official 60,000
            if self.split_mode == "fair":
                images = images[: len(images) - n_val] if split == "train" else images[len(images) - n_val :]
        return (torch.from_numpy(images.reshape(len(images), -1).copy()),)

    def make_train_batch(
        self, data: tuple[Tensor, ...], indices: Tensor, generator: torch.Generator, dtype: torch.dtype
    ) -> Batch:
        return (data[0][indices].to(dtype) / 255.0,)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        (x,) = batch
        return F.mse_loss(model(x), x.view(x.size(0), -1))

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        x = chunk[0].to(dtype) / 255.0
        return {"loss": F.mse_loss(model(x), x, reduction="sum")}, x.numel()
