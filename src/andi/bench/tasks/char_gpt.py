"""GPT: the paper's character-level NanoGPT on TinyShakespeare (``docs/design/protocol.md`` (a), task GPT).

Model (818,176 parameters at vocab 65; block 64, n_embd 128, n_head 4, n_layer 4), kept with the paper
script's quirks:

* ``x = tok_emb(idx) + pos_emb(arange(T))`` (two ``nn.Embedding``); each block is an
  ``nn.Sequential(LayerNorm, MultiheadAttention(batch_first=True), LayerNorm, MLP)`` applied by hand::

      x = x + attn(ln1(x), ln1(x), ln1(x), attn_mask=causal, is_causal=True)[0]
      x = x + mlp(ln2(x))                  # Linear(d, 4d) GELU Linear(4d, d)
      logits = head(ln_f(x))               # Linear(d, vocab, bias=False), not tied to tok_emb

* the first LayerNorm is evaluated three times (query, key, value are distinct tensors, so
  ``nn.MultiheadAttention`` takes its separate-q/k/v path; same math as the packed one);
* Q, K, V share one fused ``in_proj_weight`` (3d × d); ``causal`` is a float mask, ``-inf`` above the diagonal,
  passed together with ``is_causal=True`` (and the default ``need_weights=True``); no dropout.

Loss: mean cross-entropy over all positions. Data: vocabulary = sorted characters of the whole text (65).
Splits (fair): characters [0, 90 %) train, [90 %, 95 %) ``"val"``, [95 %, 100 %) ``"test"``; metric = mean
cross-entropy (nats/char) over all non-overlapping ``block``-long windows of the split. Training batches are
random windows (``randint(len - block)``); paper mode draws them from the whole text and has no held-out split.

Width variants (``gpt-w64``, ``gpt-w128``, ``gpt-w256``; :func:`char_gpt_width_task`) for the lr-transfer sweep: the
same task with ``n_embd`` set to the width and ``n_head`` scaled so that the head size stays that of the size's base
model (16 at ``cpu``, 32 at ``full``; at ``smoke`` half the width, head size 16); every other setting is the size's.
``gpt-w64`` at ``cpu`` is ``gpt`` at ``cpu``; ``gpt-w128`` at ``full`` is the paper's model.

``gpt-v7`` (:class:`CharGPTV7Task`) is the data and evaluation of the author's v7 experiment (``experiments/ANDI.py``
@5cb1d03), for its replay: see the class.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import data
from .base import Batch, DataRoot, MetricSums, SizeSpec, Task, random_windows

__all__ = [
    "GPT_WIDTHS",
    "PAPER_GPT",
    "V7_EVAL_BATCHES",
    "CharGPT",
    "CharGPTTask",
    "CharGPTV7Task",
    "char_gpt_width_task",
]

PAPER_GPT = {"block_size": 64, "n_embd": 128, "n_head": 4, "n_layer": 4}


class CharGPT(nn.Module):
    """The paper script's ``NanoGPT`` (see the module docstring for its quirks)."""

    def __init__(
        self, vocab_size: int, block_size: int = 64, n_embd: int = 128, n_head: int = 4, n_layer: int = 4
    ) -> None:
        super().__init__()
        self.block_size = block_size
        self.tok_emb = nn.Embedding(vocab_size, n_embd)
        self.pos_emb = nn.Embedding(block_size, n_embd)
        self.blocks = nn.Sequential(
            *[
                nn.Sequential(
                    nn.LayerNorm(n_embd),
                    nn.MultiheadAttention(n_embd, n_head, batch_first=True),
                    nn.LayerNorm(n_embd),
                    nn.Sequential(nn.Linear(n_embd, 4 * n_embd), nn.GELU(), nn.Linear(4 * n_embd, n_embd)),
                )
                for _ in range(n_layer)
            ]
        )
        self.ln_f = nn.LayerNorm(n_embd)
        self.head = nn.Linear(n_embd, vocab_size, bias=False)

    def forward(self, idx: Tensor) -> Tensor:
        _, t = idx.shape
        if t > self.block_size:
            raise ValueError(f"sequence length {t} exceeds block_size {self.block_size}")
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t, device=idx.device))
        mask = torch.triu(torch.full((t, t), float("-inf"), device=idx.device, dtype=x.dtype), diagonal=1)
        for block in self.blocks:
            ln1, attn, ln2, mlp = block
            x = x + attn(ln1(x), ln1(x), ln1(x), attn_mask=mask, is_causal=True)[0]
            x = x + mlp(ln2(x))
        return self.head(self.ln_f(x))


class CharGPTTask(Task):
    name = "gpt"
    datasets = ("tinyshakespeare",)
    primary_metric = "loss"
    higher_is_better = False
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        "full": SizeSpec(steps=2500, batch_size=128, eval_every=100, model=dict(PAPER_GPT)),
        "cpu": SizeSpec(
            steps=300,
            batch_size=32,
            eval_every=50,
            model={"block_size": 64, "n_embd": 64, "n_head": 4, "n_layer": 2},
            subset={"val": 32_768, "test": 32_768},
        ),
        "smoke": SizeSpec(
            steps=20,
            batch_size=8,
            eval_every=10,
            model={"block_size": 32, "n_embd": 32, "n_head": 2, "n_layer": 1},
            subset={"train": 20_000, "val": 2_048, "test": 2_048},
        ),
    }
    role_overrides: ClassVar[Mapping[str, str]] = {
        "tok_emb.weight": "embedding",
        "pos_emb.weight": "embedding",
        "head.weight": "head",
    }

    def __init__(self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair") -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self._codes: Tensor | None = None
        self._vocab: str | None = None

    @property
    def splits(self) -> tuple[str, ...]:
        return ("val", "test") if self.split_mode == "fair" else ()

    @property
    def block_size(self) -> int:
        return int(self.spec.model["block_size"])

    def _load(self) -> Tensor:
        if self._codes is None:
            text = data.load_tinyshakespeare(self.data_root)
            self._vocab = "".join(sorted(set(text)))
            lut = torch.full((max(map(ord, self._vocab)) + 1,), -1, dtype=torch.int64)
            lut[torch.tensor([ord(c) for c in self._vocab])] = torch.arange(len(self._vocab))
            codes = torch.frombuffer(bytearray(text.encode("utf-32-le")), dtype=torch.int32).long()
            self._codes = lut[codes]
        return self._codes

    @property
    def vocab(self) -> str:
        """The sorted characters of the whole text (index = token id)."""
        self._load()
        assert self._vocab is not None
        return self._vocab

    def describe(self) -> dict:
        return {**super().describe(), "vocab_size": len(self.vocab)}

    def _build_model(self, seed: int) -> nn.Module:
        return CharGPT(len(self.vocab), **self.spec.model)

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        """The token stream of ``split`` (one int64 tensor; the whole text in paper mode)."""
        codes = self._load()
        if self.split_mode == "paper":
            return (codes,)
        n = len(codes)
        a, b = int(0.9 * n), int(0.95 * n)
        return ({"train": codes[:a], "val": codes[a:b], "test": codes[b:]}[split],)

    def sample_indices(self, n: int, batch_size: int, generator: torch.Generator) -> Iterator[Tensor]:
        """Start offsets of random windows (:func:`random_windows`)."""
        return random_windows(n, self.block_size, batch_size, generator)

    def make_train_batch(
        self, data: tuple[Tensor, ...], indices: Tensor, generator: torch.Generator, dtype: torch.dtype
    ) -> Batch:
        """Inputs and next-character targets of the ``block``-long windows starting at ``indices``."""
        windows = data[0][indices[:, None] + torch.arange(self.block_size + 1, device=indices.device)]
        return windows[:, :-1], windows[:, 1:]

    def loss(self, model: nn.Module, batch: Batch) -> Tensor:
        x, y = batch
        logits = model(x)
        return F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))

    eval_batch_size = 256

    def eval_data(self, split: str, device: torch.device) -> tuple[Tensor, ...]:
        """Every non-overlapping ``block``-long window of the split and its targets."""
        (tokens,) = self.split_tensors(split, device)
        block = self.block_size
        n_windows = (len(tokens) - 1) // block
        if n_windows < 1:
            raise ValueError(f"split {split!r} has {len(tokens)} tokens: too short for one {block}-char window")
        return tokens[: n_windows * block].view(n_windows, block), tokens[1 : n_windows * block + 1].view(
            n_windows, block
        )

    def eval_sums(self, model: nn.Module, chunk: Batch, dtype: torch.dtype) -> MetricSums:
        x, y = chunk
        logits = model(x)
        return {"loss": F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1), reduction="sum")}, y.numel()


#: Widths (``n_embd``) of the width variants registered as tasks ``gpt-w<width>``.
GPT_WIDTHS = (64, 128, 256)


def _width_model(base: Mapping[str, int], width: int) -> dict[str, int]:
    head_size = base["n_embd"] // base["n_head"]
    if width % head_size:
        raise ValueError(f"width {width} is not a multiple of the head size {head_size}")
    return {**base, "n_embd": width, "n_head": width // head_size}


def char_gpt_width_task(width: int) -> type[CharGPTTask]:
    """The task class ``gpt-w<width>``: :class:`CharGPTTask` with ``n_embd = width`` and each size's head size kept
    (``n_head`` scales with the width); at ``smoke`` the width is halved to stay fast."""
    sizes = {
        size: SizeSpec(
            steps=spec.steps,
            batch_size=spec.batch_size,
            eval_every=spec.eval_every,
            model=_width_model(spec.model, width // 2 if size == "smoke" else width),
            subset=dict(spec.subset),
        )
        for size, spec in CharGPTTask.sizes.items()
    }
    doc = f"Char-GPT of width {width} (``n_embd``; see :func:`char_gpt_width_task`)."
    return type(f"CharGPTWidth{width}Task", (CharGPTTask,), {"name": f"gpt-w{width}", "sizes": sizes, "__doc__": doc})


#: Random validation batches per evaluation in the v7 experiment (its ``EVAL_STEPS``).
V7_EVAL_BATCHES = 50


class CharGPTV7Task(CharGPTTask):
    """The char-GPT as the author's v7 experiment trains and scores it (task ``gpt-v7``; the replay's only).

    * Splits: characters [0, 90 %) train, [90 %, 100 %) ``"val"`` (the script's ``prepare_shakespeare``); there is no
      test split, so selection and reporting see the same numbers, as in the script.
    * One random stream for everything: the script seeds the global generator, builds the model (which draws the
      init from it) and then draws every training window *and* every validation window from it. The stream of
      :meth:`train_batches` starts from the generator state the model's init leaves behind, and :meth:`evaluate`
      draws from that same stream, so the windows are the script's on CPU, in the script's order.
    * An evaluation is the mean loss (``np.mean`` of the batch means) over :data:`V7_EVAL_BATCHES` random windows
      batches of the training batch size; the runner's ``eval_schedule="v7"`` calls it after the update of every
      50th step and scores a run by the mean of its last 5 evaluations.

    Evaluate only after :meth:`train_batches` (the stream it evaluates from is created there).
    """

    name = "gpt-v7"
    sizes: ClassVar[Mapping[str, SizeSpec]] = {
        size: SizeSpec(
            steps=spec.steps,
            batch_size=spec.batch_size,
            eval_every=50 if size == "full" else spec.eval_every,
            model=dict(spec.model),
            subset={k: v for k, v in spec.subset.items() if k == "train"},
        )
        for size, spec in CharGPTTask.sizes.items()
    }

    def __init__(self, size: str = "cpu", data_root: DataRoot = None, *, split_mode: str = "fair") -> None:
        super().__init__(size, data_root, split_mode=split_mode)
        self._stream: torch.Generator | None = None
        self._eval_batch_size = self.default_batch_size

    @property
    def splits(self) -> tuple[str, ...]:
        return ("val",)

    def load_split(self, split: str) -> tuple[Tensor, ...]:
        codes = self._load()
        cut = int(0.9 * len(codes))
        return (codes[:cut] if split == "train" else codes[cut:],)

    def train_generator(self, seed: int) -> torch.Generator:
        """The global generator's state after ``manual_seed(seed)`` and the model's init, kept for evaluation too."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build_model(seed)  # advance the generator exactly as the script's model construction does
            state = torch.get_rng_state()
        self._stream = torch.Generator().manual_seed(seed)
        self._stream.set_state(state)
        return self._stream

    def train_batches(
        self,
        seed: int,
        *,
        batch_size: int | None = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> Iterator[Batch]:
        self.split_tensors("val", device)  # loaded here, so that no evaluation pays for it
        self._eval_batch_size = batch_size or self.default_batch_size
        return super().train_batches(seed, batch_size=batch_size, device=device, dtype=dtype)

    def _evaluate(self, model: nn.Module, split: str, device: torch.device, dtype: torch.dtype) -> dict[str, float]:
        if self._stream is None:
            raise RuntimeError("gpt-v7 evaluates from its training stream: call train_batches first")
        data = self.split_tensors(split, device)
        starts = self.sample_indices(len(data[0]), self._eval_batch_size, self._stream)
        losses = [
            self.loss(model, self.make_train_batch(data, next(starts).to(device), self._stream, dtype)).item()
            for _ in range(V7_EVAL_BATCHES)
        ]
        return {"loss": float(np.mean(losses))}
