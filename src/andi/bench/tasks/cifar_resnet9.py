"""CIFAR: the paper's "ResNet-9" on CIFAR-10 (``docs/design/protocol.md`` (a), task CIFAR).

Model (6,573,130 parameters at the paper's widths), with ``cb(i, o, pool)`` = ``Conv2d(i, o, 3, padding=1,
bias=False) → BatchNorm2d → ReLU [→ MaxPool2d(2)]``::

    cb(3,64) cb(64,128,pool) cb(128,128) cb(128,128) cb(128,256,pool) cb(256,512,pool) cb(512,512) cb(512,512)
    MaxPool2d(4) Flatten Linear(512,10)

There are no residual connections (a plain 9-layer conv net, despite the name). Training augmentation is
torchvision's ``RandomCrop(32, padding=4)`` (zero padding) + ``RandomHorizontalFlip(0.5)`` re-implemented with
torch ops, then ``x/255`` and ``Normalize(mean=(0.49, 0.48, 0.44), std=(0.2, 0.19, 0.2))``. Loss: mean
cross-entropy. Splits (fair): official train images 0-44,999 train, 45,000-49,999 ``"val"``, the official test
set ``"test"``; metrics = loss and accuracy without augmentation. Paper mode trains on all 50,000.
``cpu`` size: widths / 8 and a 10k-image subset; ``smoke``: widths / 16 and a few hundred images.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, MetricSums, SizeSpec, Task, classification_sums

__all__ = ["CIFAR_MEAN", "CIFAR_STD", "PAPER_WIDTHS", "CifarTask", "ResNet9", "cifar10_split", "crop_flip"]

#: Normalization constants of the paper's script (not the dataset's exact statistics).
CIFAR_MEAN = (0.49, 0.48, 0.44)
CIFAR_STD = (0.2, 0.19, 0.2)
PAPER_WIDTHS = (64, 128, 128, 128, 256, 512, 512, 512)
_POOL_AFTER = (False, True, False, False, True, True, False, False)


def _conv_block(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class ResNet9(nn.Module):
    """The paper's 8-conv + linear network on 32x32 images (no residuals). ``widths`` are the 8 conv widths."""

    def __init__(self, widths: Sequence[int] = PAPER_WIDTHS, num_classes: int = 10) -> None:
        super().__init__()
        if len(widths) != 8:
            raise ValueError(f"ResNet9 needs 8 conv widths, got {len(widths)}")
        blocks = [_conv_block(c_in, c_out, pool) for c_in, c_out, pool in zip((3, *widths[:-1]), widths, _POOL_AFTER)]
        self.net = nn.Sequential(*blocks, nn.MaxPool2d(4), nn.Flatten(), nn.Linear(widths[-1], num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def cifar10_split(data_root, split: str, split_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (uint8 N×3×32×32) and labels of a CIFAR-10 split: ``"train"``, ``"val"`` or ``"test"``.

    Fair mode holds out the last tenth (5,000 images) of the official training set as ``"val"``; paper mode
    trains on all of it.
    """
    if split == "test":
        return data.load_cifar10(data_root, train=False)
    images, labels = data.load_cifar10(data_root, train=True)
    if split_mode == "paper":
        return images, labels
    n_train = len(images) - len(images) // 10
    sl = slice(0, n_train) if split == "train" else slice(n_train, None)
    return images[sl], labels[sl]


def crop_flip(images: Tensor, generator: torch.Generator, padding: int = 4) -> Tensor:
    """Random crop with zero padding then random horizontal flip (p = 0.5) of a uint8 (B, C, H, W) batch.

    Crop offsets are uniform in ``[0, 2·padding]`` per image, like ``RandomCrop(H, padding)``; random numbers
    come from the CPU ``generator`` so the stream does not depend on the device.
    """
    b, c, h, w = images.shape
    offsets = torch.randint(0, 2 * padding + 1, (2, b), generator=generator).to(images.device)
    flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    padded = F.pad(images, (padding, padding, padding, padding))
    rows = offsets[0, :, None] + torch.arange(h, device=images.device)  # (B, H)
    cols = offsets[1, :, None] + torch.arange(w, device=images.device)  # (B, W)
    cols = torch.where(flip[:, None], cols.flip(-1), cols)
    bi = torch.arange(b, device=images.device)[:, None, None, None]
    ci = torch.arange(c, device=images.device)[None, :, None, None]
    return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


class CifarTask(Task):
    name = "cifar"
    datasets = ("cifar10",)
    primary_metric = "accuracy"
    higher_is_better = True
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=2500, batch_size=128, eval_every=100, model={"widths": PAPER_WIDTHS}),
        "cpu": SizeSpec(
            steps=300,
            batch_size=64,
            eval_every=50,
            model={"widths": tuple(w // 8 for w in PAPER_WIDTHS)},
            subset={"train": 10_000, "val": 1_000, "test": 2_000},
        ),
        "smoke": SizeSpec(
            steps=20,
            batch_size=32,
            eval_every=10,
            model={"widths": tuple(w // 16 for w in PAPER_WIDTHS)},
            subset={"train": 256, "val": 128, "test": 128},
        ),
    }
    role_overrides: ClassVar[Mapping[str, str]] = {"net.0.0.weight": "conv_first", "net.10.weight": "head"}

    eval_batch_size = 500

    def _build_model(self, seed: int) -> nn.Module:
        return ResNet9(self.spec.model["widths"])

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        images, labels = cifar10_split(self.data_root, split, self.split_mode)
        cap = self.spec.subset.get(split)  # cut before the copy: the full training set is 150 MB
        return torch.from_numpy(images[:cap].copy()), torch.from_numpy(labels[:cap].copy())

    @staticmethod
    def _normalize(images: Tensor, dtype: torch.dtype) -> Tensor:
        mean = torch.tensor(CIFAR_MEAN, dtype=dtype, device=images.device).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR_STD, dtype=dtype, device=images.device).view(1, 3, 1, 1)
        return (images.to(dtype) / 255.0 - mean) / std

    def make_train_batch(
        self, data: tuple[Tensor, ...], indices: Tensor, generator: torch.Generator, dtype: torch.dtype
    ) -> Batch:
        images, labels = data
        return self._normalize(crop_flip(images[indices], generator), dtype), labels[indices]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        images, labels = chunk
        return classification_sums(model(self._normalize(images, dtype)), labels)
