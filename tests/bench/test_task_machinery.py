"""The batch and evaluation machinery every data task shares (``andi.bench.tasks.base.Task``), on a task defined
here with only the five things a task file holds: model, loss, data, metric sums (and a size table)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from andi.bench.tasks.base import Batch, MetricSums, SizeSpec, Task, classification_sums

N_TRAIN, N_VAL = 37, 23


class _LinearTask(Task):
    name = "linear-in-test"
    primary_metric = "accuracy"
    higher_is_better = True
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=10, batch_size=8, eval_every=5),
        "cpu": SizeSpec(steps=10, batch_size=8, eval_every=5, subset={"train": 20}),
        "smoke": SizeSpec(steps=10, batch_size=8, eval_every=5),
    }
    loads = 0

    def _build_model(self, seed: int) -> nn.Module:
        return nn.Linear(4, 3)

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        type(self).loads += 1
        g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split])
        n = N_TRAIN if split == "train" else N_VAL
        return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(3, (n,), generator=g)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        return F.cross_entropy(model(x), y)

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        x, y = chunk
        return classification_sums(model(x.to(dtype)), y)


def test_training_stream_is_shuffled_epochs_of_the_capped_split_cast_to_the_dtype() -> None:
    task = _LinearTask("cpu")
    batches = [next(it) for it in [task.train_batches(5, batch_size=8)] for _ in range(6)]
    x, y = task.load_split("train")
    sizes = [len(b[1]) for b in batches]
    assert sizes == [8, 8, 4, 8, 8, 4]  # the cap (20) and a short last batch per epoch
    assert all(b[0].dtype == torch.float32 and b[1].dtype == torch.int64 for b in batches)
    epoch = torch.cat([b[1] for b in batches[:3]])
    assert sorted(epoch.tolist()) == sorted(y[:20].tolist())  # each example once per epoch
    g = torch.Generator().manual_seed(5)
    first = torch.randperm(20, generator=g)[:8]
    assert torch.equal(batches[0][0], x[first].float())  # the order is the seed's permutation
    again = task.train_batches(5, batch_size=8)
    assert all(torch.equal(a, b) for a, b in zip(next(again), batches[0]))


def test_split_tensors_are_loaded_once_per_split_and_device() -> None:
    task = _LinearTask("full")
    before = _LinearTask.loads
    first = task.split_tensors("val")
    assert task.split_tensors("val", torch.device("cpu")) is first
    assert _LinearTask.loads == before + 1


@settings(max_examples=25, deadline=None)
@given(chunk=st.integers(1, 30))
def test_evaluation_is_the_fp64_mean_whatever_the_chunking(chunk: int) -> None:
    task = _LinearTask("full")
    task.eval_batch_size = chunk
    model = task.build_model(0).double()
    x, y = task.load_split("val")
    with torch.no_grad():
        logits = model(x)
    expected_loss = F.cross_entropy(logits, y).item()
    expected_accuracy = (logits.argmax(-1) == y).double().mean().item()
    got = task.evaluate(model, "val")
    assert got["loss"] == pytest.approx(expected_loss, rel=1e-12)
    assert got["accuracy"] == pytest.approx(expected_accuracy, rel=1e-12)
    assert model.training  # evaluate restores the mode


def test_a_task_without_data_must_override_the_loops() -> None:
    class NoData(_LinearTask):
        def load_split(self, split: str) -> tuple[Tensor, ...]:
            return Task.load_split(self, split)

    with pytest.raises(NotImplementedError, match="has no dataset"):
        NoData("full").train_batches(0)

    class NoMetric(_LinearTask):
        def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
            return Task.eval_sums(self, model, chunk, dtype)

    with pytest.raises(NotImplementedError, match="has no eval_sums"):
        NoMetric("full").evaluate(nn.Linear(4, 3), "val")
