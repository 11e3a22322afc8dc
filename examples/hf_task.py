"""A Hugging Face model as an ``andi-bench`` task: a small GPT-2 built from its config (nothing is downloaded).

The task wraps the model the way a training loop already uses it — ``model(input_ids=..., labels=...).loss`` — on
sequences this file generates: each sequence is an arithmetic progression modulo the vocabulary with a random start
and step, so the next token is predictable from the two before it. Bring your own model the same way: build it in
``_build_model`` (``from_config`` for a fresh init, seeded by the run's seed), return its loss in ``loss`` and the
held-out metric sums in ``eval_sums``::

    andi-bench compare examples/hf_task.py:TinyGPT2Task --size smoke

Needs ``transformers`` (``pip install -e '.[integrations]'``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import torch
from torch import Tensor, nn

from andi.bench.tasks import Batch, MetricSums, SizeSpec, Task

VOCAB, SEQ_LEN = 64, 32
SPLIT_SIZES = {"train": 8192, "val": 512, "test": 512}


def make_sequences(n: int, seed: int) -> Tensor:
    """``n`` progressions ``(a + k·b) mod VOCAB``, ``k = 0..SEQ_LEN-1``, with random ``a`` and ``b``."""
    g = torch.Generator().manual_seed(seed)
    start = torch.randint(VOCAB, (n, 1), generator=g)
    step = torch.randint(1, VOCAB, (n, 1), generator=g)
    return (start + step * torch.arange(SEQ_LEN)) % VOCAB


class TinyGPT2Task(Task):
    """GPT-2 (2 layers, 64 wide, 4 heads) from ``transformers``; metric: held-out next-token cross-entropy."""

    name = "tiny-gpt2"
    primary_metric = "loss"
    higher_is_better = False
    divergence_penalty = float(torch.log(torch.tensor(float(VOCAB))))  # a uniform prediction
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=2000, batch_size=64, eval_every=100),
        "cpu": SizeSpec(steps=200, batch_size=32, eval_every=50),
        "smoke": SizeSpec(steps=10, batch_size=8, eval_every=5, subset={"train": 256, "val": 64, "test": 64}),
    }

    def _build_model(self, seed: int) -> nn.Module:
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(n_layer=2, n_head=4, n_embd=64, vocab_size=VOCAB, n_positions=SEQ_LEN)
        return GPT2LMHeadModel(config)

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        seed = {"train": 0, "val": 1, "test": 2}[split]
        return (make_sequences(SPLIT_SIZES[split], seed),)

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        (ids,) = batch
        return model(input_ids=ids, labels=ids).loss

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        (ids,) = chunk
        loss = model(input_ids=ids, labels=ids).loss  # mean over the chunk's predicted tokens
        tokens = ids.numel() - len(ids)
        return {"loss": loss * tokens}, tokens
