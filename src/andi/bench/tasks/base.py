"""The :class:`Task` interface shared by every benchmark task, and the batch streams they use.

A task bundles a model family, its data, a loss, held-out splits and a metric, at three sizes:

* ``"full"``: the paper's model and data, the protocol's step count (GPU territory for CIFAR and GPT);
* ``"cpu"``: scaled down so that ~300 steps take well under a minute on 2 cores;
* ``"smoke"``: seconds, tiny data subsets (CI).

and two split modes:

* ``"fair"`` (default): train on the training split only, evaluate on ``"val"`` (tuning) or ``"test"``
  (reporting), exactly as ``docs/design/protocol.md`` (c) declares;
* ``"paper"``: the replay's data semantics: SADDLE and CIFAR train on the whole official training set in
  shuffled epochs with a short final batch, GPT samples random windows over the whole text; there is no
  validation split (the official test set remains available for SADDLE and CIFAR).

Randomness is explicit: :meth:`Task.build_model` seeds the model init with ``seed`` (PyTorch's default
initializers, like the paper's ``seed_everything``), :meth:`Task.train_batches` draws every random choice
(shuffles, crops, flips, windows) from its own CPU :class:`torch.Generator` seeded with ``seed``, so the data
stream is independent of the init and identical on every device.

The batch and evaluation loops live here, once; a task file holds only what is particular to it. A task with a
dataset implements five things: :meth:`Task._build_model`, :meth:`Task.loss`, :meth:`Task.load_split` (its
examples as tensors), :meth:`Task.eval_sums` (the metric sums of one evaluation chunk) and, when a training batch
is more than the selected rows cast to the training dtype, :meth:`Task.make_train_batch` (augmentation,
scaling, windows). :meth:`Task.sample_indices` (shuffled epochs by default) and :meth:`Task.eval_data` (the
split's tensors by default) are there for tasks that sample or evaluate differently. A task without data (the
toys) overrides :meth:`Task.train_batches` and :meth:`Task._evaluate` instead.
"""

from __future__ import annotations

import abc
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "SIZES",
    "SPLIT_MODES",
    "Batch",
    "DataRoot",
    "MetricSums",
    "SizeSpec",
    "Task",
    "classification_sums",
    "random_windows",
    "shuffled_epochs",
]

SIZES = ("full", "cpu", "smoke")
SPLIT_MODES = ("fair", "paper")
Batch = tuple[Tensor, ...]
#: What :meth:`Task.eval_sums` returns: metric name -> sum over a chunk, and the count the sums are averaged over.
MetricSums = tuple[dict[str, Tensor], int]
DataRoot = str | os.PathLike[str] | None


@dataclass(frozen=True)
class SizeSpec:
    """Defaults of one task size. ``model`` holds size-specific model hyperparameters, ``subset`` caps the
    number of examples (or characters) used per split, e.g. ``{"train": 10_000, "val": 1_000}``."""

    steps: int
    batch_size: int
    eval_every: int
    model: Mapping[str, Any] = field(default_factory=dict)
    subset: Mapping[str, int] = field(default_factory=dict)


class Task(abc.ABC):
    """One benchmark problem. Subclasses set the class attributes and implement the abstract methods.

    Args:
        size: ``"full"``, ``"cpu"`` or ``"smoke"``.
        data_root: dataset folder (see :func:`andi.bench.tasks.data.resolve_data_root`).
        split_mode: ``"fair"`` (held-out splits of ``docs/design/protocol.md`` (c)) or ``"paper"`` (replay data).
    """

    name: ClassVar[str]
    primary_metric: ClassVar[str] = "loss"
    higher_is_better: ClassVar[bool] = False
    sizes: ClassVar[Mapping[str, SizeSpec]]
    #: Datasets the task reads (keys of :data:`andi.bench.tasks.data.DATASETS`), so they can be checked up front.
    datasets: ClassVar[tuple[str, ...]] = ()
    #: fnmatch pattern on parameter names -> role, applied after :func:`andi.param_roles`' detection.
    role_overrides: ClassVar[Mapping[str, str]] = {}
    #: Examples per forward pass of an evaluation (a memory bound; see :meth:`eval_sums`).
    eval_batch_size: ClassVar[int] = 1024
    #: A toy landscape rather than a learning task: reports keep it out of the real tasks' cross-task profiles
    #: and scores, and give the toys their own.
    toy: ClassVar[bool] = False
    #: Every seed gives the same run (no random init or data): tests between arms are meaningless, reports say n/a.
    deterministic: ClassVar[bool] = False
    #: The metric a diverged or failed reporting run counts as in the mean and the tests (e.g. the untrained
    #: model's, or chance accuracy); ``None``: such runs are left out and only counted. The package's tasks declare
    #: theirs in the claims file (:mod:`andi.bench.paper_claims`), which wins over this.
    divergence_penalty: ClassVar[float | None] = None

    def __init__(self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair") -> None:
        if size not in SIZES:
            raise ValueError(f"unknown size {size!r} for task {self.name!r}; expected one of {SIZES}")
        if split_mode not in SPLIT_MODES:
            raise ValueError(f"unknown split_mode {split_mode!r}; expected one of {SPLIT_MODES}")
        self.size = size
        self.data_root = data_root
        self.split_mode = split_mode
        self.spec = self.sizes[size]
        self._split_cache: dict[tuple[str, str], tuple[Tensor, ...]] = {}

    # ------------------------------------------------------------------------------------------ defaults
    @property
    def default_steps(self) -> int:
        return self.spec.steps

    @property
    def default_batch_size(self) -> int:
        return self.spec.batch_size

    @property
    def default_eval_every(self) -> int:
        return self.spec.eval_every

    @property
    def splits(self) -> tuple[str, ...]:
        """Held-out splits :meth:`evaluate` accepts in this split mode."""
        return ("val", "test") if self.split_mode == "fair" else ("test",)

    def _check_split(self, split: str) -> None:
        if split not in self.splits:
            raise ValueError(
                f"task {self.name!r} in split_mode={self.split_mode!r} has no split {split!r}; available: {self.splits}"
            )

    def describe(self) -> dict[str, Any]:
        """JSON-serialisable description of this task instance (goes into every run record)."""
        return {
            "name": self.name,
            "size": self.size,
            "split_mode": self.split_mode,
            "model": dict(self.spec.model),
            "subset": dict(self.spec.subset),
            "primary_metric": self.primary_metric,
            "higher_is_better": self.higher_is_better,
        }

    # ------------------------------------------------------------------------------------------- models
    def build_model(self, seed: int) -> nn.Module:
        """A fresh model, initialized by PyTorch's default initializers after ``torch.manual_seed(seed)``.

        The global RNG state is restored afterwards; the model is built on the CPU in float32.
        """
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self._build_model(seed)

    @abc.abstractmethod
    def _build_model(self, seed: int) -> nn.Module: ...

    # --------------------------------------------------------------------------------------------- data
    def load_split(self, split: str) -> tuple[Tensor, ...]:
        """The examples of ``split`` (``"train"``, ``"val"`` or ``"test"``, as this split mode defines them): CPU
        tensors whose first dimension indexes the examples (e.g. ``(images, labels)``; one token stream for the
        GPT). :meth:`split_tensors` caps them to the size's ``subset`` and caches them; a task may apply the cap
        itself when what it derives from the raw data depends on it."""
        raise NotImplementedError(f"task {self.name!r} has no dataset: it overrides train_batches and _evaluate")

    def split_tensors(self, split: str, device: str | torch.device = "cpu") -> tuple[Tensor, ...]:
        """:meth:`load_split`'s tensors, cut to the size's ``subset`` cap and moved to ``device`` (cached)."""
        key = (split, str(device))
        if key not in self._split_cache:
            cap = self.spec.subset.get(split)
            self._split_cache[key] = tuple((t[:cap] if cap else t).to(device) for t in self.load_split(split))
        return self._split_cache[key]

    def sample_indices(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """The endless stream of CPU ``int64`` index batches into the ``n`` training examples (default:
        :func:`shuffled_epochs`)."""
        return shuffled_epochs(n, batch_size, generator)

    def make_train_batch(
        self, data: tuple[Tensor, ...], indices: Tensor, generator: torch.Generator, dtype: torch.dtype
    ) -> Batch:
        """The training batch of ``indices`` (already on the data's device) into the training ``data``; random
        choices (augmentation) come from ``generator``. Default: the selected rows, floating ones cast to ``dtype``."""
        return tuple(_cast_floating(t[indices], dtype) for t in data)

    def train_generator(self, seed: int) -> torch.Generator:
        """The CPU generator every random choice of the training stream is drawn from (seeded with ``seed``)."""
        return torch.Generator().manual_seed(seed)

    def train_batches(
        self,
        seed: int,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Batch]:
        """Endless stream of training batches, already on ``device`` (floating inputs in ``dtype``).

        The data are loaded (and verified) by this call, not at the first batch, so a training clock started
        after it never includes loading.
        """
        device = torch.device(device)
        data = self.split_tensors("train", device)
        generator = self.train_generator(seed)
        indices = self.sample_indices(len(data[0]), batch_size or self.default_batch_size, generator)

        def stream() -> Iterator[Batch]:
            for idx in indices:
                yield self.make_train_batch(data, idx.to(device), generator, dtype)

        return stream()

    @abc.abstractmethod
    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        """Scalar training loss of ``model`` on ``batch`` (the value that is back-propagated)."""

    def eval_data(self, split: str, device: torch.device) -> tuple[Tensor, ...]:
        """The tensors an evaluation of ``split`` walks through in chunks of :attr:`eval_batch_size` rows
        (default: :meth:`split_tensors`)."""
        return self.split_tensors(split, device)

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        """Metric *sums* over one chunk of :meth:`eval_data` and the count they are averaged over: the evaluation
        adds the sums of every chunk in float64 and divides by the total count (e.g. summed cross-entropy and the
        number of examples; :func:`classification_sums`)."""
        raise NotImplementedError(f"task {self.name!r} has no eval_sums: it overrides _evaluate")

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        totals: dict[str, Tensor] = {}
        count = 0
        for chunk in zip(*(t.split(self.eval_batch_size) for t in self.eval_data(split, device))):
            sums, n = self.eval_sums(model, chunk, dtype)
            for name, value in sums.items():
                totals[name] = totals.get(name, torch.zeros((), dtype=torch.float64, device=device)) + value.double()
            count += n
        if not count:
            raise ValueError(f"task {self.name!r}: split {split!r} has nothing to evaluate")
        return {name: total.item() / count for name, total in totals.items()}

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """Held-out metrics of ``model`` on ``split``: ``{"loss": ...}`` plus ``{"accuracy": ...}`` for
        classification. Runs in ``eval()`` mode under ``no_grad`` and restores the model's mode."""
        self._check_split(split)
        ref = next(iter(model.parameters()))
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                return self._evaluate(model, split, ref.device, ref.dtype)
        finally:
            model.train(was_training)


# -------------------------------------------------------------------------------------------- batch streams
def _cast_floating(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def classification_sums(logits: Tensor, labels: Tensor) -> MetricSums:
    """:meth:`Task.eval_sums` of a classifier: summed cross-entropy and number correct, over ``len(labels)``."""
    return {
        "loss": F.cross_entropy(logits, labels, reduction="sum"),
        "accuracy": (logits.argmax(-1) == labels).sum(),
    }, len(labels)


def shuffled_epochs(n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Index batches over ``range(n)``: a fresh permutation each epoch, the last batch of an epoch short
    (``DataLoader(shuffle=True, drop_last=False)`` semantics). Indices are CPU ``int64`` tensors."""
    if n <= 0 or batch_size <= 0:
        raise ValueError(f"need n > 0 and batch_size > 0, got n={n}, batch_size={batch_size}")

    def stream() -> Iterator[Tensor]:
        while True:
            yield from torch.randperm(n, generator=generator).split(batch_size)

    return stream()


def random_windows(n: int, block: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
    """Start offsets of random ``block + 1``-long windows in a sequence of length ``n``:
    ``torch.randint(n - block, (batch_size,))`` per batch, as nanoGPT's ``get_batch``."""
    if n <= block:
        raise ValueError(f"sequence of length {n} is too short for windows of {block} + 1 tokens")

    def stream() -> Iterator[Tensor]:
        while True:
            yield torch.randint(n - block, (batch_size,), generator=generator)

    return stream()
