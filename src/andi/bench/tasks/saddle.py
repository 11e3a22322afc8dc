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

from collections.abc import Iterator, Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, DataRoot, SizeSpec, Task, shuffled_epochs

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

    def __init__(self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair") -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self._cache: dict[tuple[str, str], Tensor] = {}

    def _build_model(self, seed: int) -> nn.Module:
        return DeepAutoencoder()

    def _pixels(self, split: str, device: torch.device) -> Tensor:
        """uint8 (N, 784) pixels of ``split`` on ``device`` (cached)."""
        key = (split, str(device))
        if key not in self._cache:
            if split == "test":
                images, _ = data.load_fashion_mnist(self.data_root, train=False)
            else:
                images, _ = data.load_fashion_mnist(self.data_root, train=True)
                n_val = len(images) // 12  # 5,000 of the official 60,000
                if self.split_mode == "fair":
                    images = images[: len(images) - n_val] if split == "train" else images[len(images) - n_val :]
            cap = self.spec.subset.get(split)
            images = images[:cap] if cap else images
            self._cache[key] = torch.from_numpy(images.reshape(len(images), -1).copy()).to(device)
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
        pixels = self._pixels("train", device)
        generator = torch.Generator().manual_seed(seed)
        indices = shuffled_epochs(len(pixels), batch_size or self.default_batch_size, generator)

        def stream() -> Iterator[Batch]:
            for idx in indices:
                yield (pixels[idx.to(device)].to(dtype) / 255.0,)

        return stream()

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        (x,) = batch
        return F.mse_loss(model(x), x.view(x.size(0), -1))

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        pixels = self._pixels(split, device)
        total = torch.zeros((), dtype=torch.float64, device=device)
        for chunk in pixels.split(1024):
            x = chunk.to(dtype) / 255.0
            total += F.mse_loss(model(x), x, reduction="sum").double()
        return {"loss": total.item() / pixels.numel()}
