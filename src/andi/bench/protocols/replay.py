"""The paper's replay protocols: :class:`ReplayProtocol` (the paper's script, ``ANDI.py`` @29f90fe) and
:class:`ReplayV7Protocol` (the author's v7 experiment, ``experiments/ANDI.py`` @5cb1d03), with the script's constants
and its lr-search rule :func:`select_replay_lr`.

A replay runs each arm exactly as the author's script does — its lrs, seeds, schedules and data — so that its numbers
can be set beside the author's. It only *describes* runs (:class:`~andi.bench.protocols.run_config.RunConfig`);
:mod:`andi.bench.execution.sweep` executes them. Imports: :mod:`andi.bench.protocols.arms`,
:mod:`andi.bench.protocols.run_config` (lazily).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from andi.bench.protocols.arms import lookup

if TYPE_CHECKING:
    from andi.bench.protocols.run_config import RunConfig

__all__ = [
    "ANDI_GRID",
    "BATCH_SIZE",
    "EVAL_INTERVAL",
    "PAPER_TASKS",
    "REPLAY_ANDI",
    "REPLAY_MUON",
    "SEEDS",
    "TRAIN_STEPS",
    "V7_REPRODUCED_WITHIN",
    "ReplayProtocol",
    "ReplayV7Protocol",
    "select_replay_lr",
]

# ---- The paper script's constants (VladimerKhasia/ANDI:ANDI.py @ 29f90fe, module level).
TRAIN_STEPS = 2500
BATCH_SIZE = 128
EVAL_INTERVAL = 50  # the script records the pre-update minibatch loss when i % EVAL_INTERVAL == 0
SEEDS = (42, 1337)
ANDI_GRID = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005)  # search_lr: ANDI only, seed 42 only, in this order
PAPER_TASKS = ("saddle", "cifar", "gpt")

# ---- Optimizer names of the registry (andi.list_optimizers()).
REPLAY_ANDI = "andi-reference"  # compat="reference": the script's ANDI class (docs/design/algorithm.md §3)
REPLAY_MUON = "muon-andi-paper"

#: A replayed v7 number is reproduced when the two-seed mean lies within this many nats of the author's (declared
#: in docs/results/gpt-paper-size/claim.md before the first run: about half the spread of two seeds of one arm).
V7_REPRODUCED_WITHIN = 0.01  # the script's "Muon" (docs/design/family.md §4); never labelled plain "Muon"


# ================================================================================================ replay
@dataclass(frozen=True)
class ReplayProtocol:
    """The paper's protocol as its script runs it (docs/design/protocol.md (a)).

    At ``size="full"`` every run uses :data:`TRAIN_STEPS` steps of batch :data:`BATCH_SIZE` and records the
    pre-update minibatch loss every :data:`EVAL_INTERVAL` steps (steps 0, 50, …, 2450). At smaller sizes
    the task's default step count and batch are used and the recording interval is scaled to keep the
    same number of points (``steps // 50``). ``init_seed = data_seed = seed`` (the script seeds everything
    once per run). Every parameter goes to the one optimizer (``roles="all"``), lr is constant, there is
    no held-out evaluation and no weight decay except AdamW's torch default of 0.01.
    """

    name: str = "replay"
    tasks: tuple[str, ...] = PAPER_TASKS
    steps: int = TRAIN_STEPS
    batch_size: int = BATCH_SIZE
    train_record_every: int = EVAL_INTERVAL
    seeds: tuple[int, ...] = SEEDS
    search_seed: int = SEEDS[0]
    andi_optimizer: str = REPLAY_ANDI
    andi_grid: tuple[float, ...] = ANDI_GRID
    adamw_lr: tuple[tuple[str, float], ...] = (("gpt", 3e-4),)
    adamw_lr_default: float = 1e-3
    adamw_weight_decay: float = 0.01  # torch.optim.AdamW default, kept by the script
    muon_optimizer: str = REPLAY_MUON
    muon_lr: tuple[tuple[str, float], ...] = (("gpt", 0.02),)
    muon_lr_default: float = 0.05
    schedule: str = "constant"
    roles: str = "all"
    eval_split: str = "none"
    labels: tuple[tuple[str, str], ...] = (
        ("adamw", "AdamW"),
        (REPLAY_MUON, "ANDI-script Muon"),
        (REPLAY_ANDI, "ANDI"),
    )
    # What the paper reports as ANDI's best lr (paper §5): compared against our selection in the report.
    paper_andi_lr: tuple[tuple[str, float], ...] = (("cifar", 0.005), ("gpt", 0.05), ("saddle", 0.1))

    def __post_init__(self) -> None:
        if self.search_seed not in self.seeds:
            raise ValueError(f"search seed {self.search_seed} must be one of the reporting seeds {self.seeds}")
        if not self.andi_grid:
            raise ValueError("the ANDI grid must not be empty")

    # -------------------------------------------------------------------------------------------------
    @property
    def arms(self) -> tuple[str, ...]:
        """Arm names in plotting order: AdamW, the script's Muon, ANDI."""
        return ("adamw", self.muon_optimizer, self.andi_optimizer)

    def label(self, arm: str) -> str:
        return lookup(self.labels, arm, arm)

    def fixed_lr(self, arm: str, task: str) -> float:
        """The script's untuned lr of AdamW and of its "Muon"."""
        if arm == "adamw":
            return float(lookup(self.adamw_lr, task, self.adamw_lr_default))
        if arm == self.muon_optimizer:
            return float(lookup(self.muon_lr, task, self.muon_lr_default))
        raise KeyError(f"arm {arm!r} has no fixed lr in the replay protocol (only ANDI is searched)")

    def resolve(self, size: str, task_default_steps: int | None, steps: int | None = None) -> tuple[int, int]:
        """``(steps, train_record_every)`` at ``size``: the paper's at ``full``, scaled elsewhere."""
        if steps is None:
            steps = self.steps if size == "full" else task_default_steps
        if steps is None or steps < 1:
            raise ValueError(f"cannot resolve a step count for size {size!r} (got {steps})")
        points = self.steps // self.train_record_every  # 50 recorded points in the paper
        return steps, max(1, steps // points)

    def config(
        self,
        arm: str,
        task: str,
        lr: float,
        seed: int,
        *,
        size: str,
        steps: int,
        record_every: int,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> RunConfig:
        """The :class:`RunConfig` of one replay run."""
        from andi.bench.protocols.run_config import RunConfig

        return RunConfig(
            task=task,
            size=size,
            optimizer=arm,
            lr=float(lr),
            steps=steps,
            batch_size=self.batch_size if size == "full" else None,
            init_seed=seed,
            data_seed=seed,
            schedule=self.schedule,
            weight_decay=self.adamw_weight_decay if arm == "adamw" else 0.0,
            roles=self.roles,
            eval_every=0,
            eval_split=self.eval_split,
            train_record_every=record_every,
            device=device,
            dtype=dtype,
        )

    def select(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Index of the winning grid value; see :func:`select_replay_lr`."""
        return select_replay_lr([_last_recorded_loss(r) for r in records])

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ReplayV7Protocol(ReplayProtocol):
    """The author's v7 experiment (``VladimerKhasia/ANDI:experiments/ANDI.py`` @5cb1d03) on the GPT, as it runs it.

    Its three arms at the lrs it chose — ANDI (the v7 class, ``andi-v7``) 0.09, its D-Muon (``d-muon-v7``) 0.02,
    AdamW 1e-3 — on seeds 42 and 1337; weight decay 0.01 on the v7 groups (:func:`andi.decayed_parameters`) for all
    three; WSD from lr 0 (10 % warmup, 20 % linear cooldown) for ANDI and D-Muon, cosine to 1 % (10 % warmup) for
    AdamW; task ``gpt-v7`` (90/10 split, one random stream for training and evaluation windows); an evaluation of 50
    random validation batches after every 50th step; a run's score is the mean of its last 5 evaluations
    (``eval_schedule="v7"``). ``andi_grid`` holds ANDI's one lr, so the plan runs it on the search seed and reuses
    that run for seed 42's report, as the script does.
    """

    name: str = "replay-v7"
    tasks: tuple[str, ...] = ("gpt-v7",)
    andi_optimizer: str = "andi-v7"
    andi_grid: tuple[float, ...] = (0.09,)
    adamw_lr: tuple[tuple[str, float], ...] = (("gpt-v7", 1e-3),)
    muon_optimizer: str = "d-muon-v7"
    muon_lr: tuple[tuple[str, float], ...] = (("gpt-v7", 0.02),)
    labels: tuple[tuple[str, str], ...] = (
        ("adamw", "AdamW"),
        ("d-muon-v7", "D-Muon (v7 script)"),
        ("andi-v7", "ANDI (v7 script)"),
    )
    paper_andi_lr: tuple[tuple[str, float], ...] = (("gpt-v7", 0.09),)
    schedules: tuple[tuple[str, str], ...] = (("adamw", "cosine-v7"), ("andi-v7", "wsd-v7"), ("d-muon-v7", "wsd-v7"))
    warmup_frac: float = 0.1
    decay_frac: float = 0.2
    weight_decay: float = 0.01
    decay_rule: str = "v7"
    eval_every: int = 50
    eval_split: str = "val"
    #: The author's table (mean of seeds 42 and 1337 of the v7 score): what the replay is set beside.
    author_scores: tuple[tuple[str, float], ...] = (("andi-v7", 1.5351), ("d-muon-v7", 1.5545), ("adamw", 1.5770))
    default_size: str | None = "full"

    def config(
        self,
        arm: str,
        task: str,
        lr: float,
        seed: int,
        *,
        size: str,
        steps: int,
        record_every: int,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> RunConfig:
        """The :class:`RunConfig` of one v7 run: the replay's, with the v7 schedules, weight decay, evaluation and
        score (the eval interval is the task's default below ``full``)."""
        base = super().config(
            arm, task, lr, seed, size=size, steps=steps, record_every=record_every, device=device, dtype=dtype
        )
        return dataclasses.replace(
            base,
            schedule=lookup(self.schedules, arm, "wsd-v7"),
            warmup_frac=self.warmup_frac,
            decay_frac=self.decay_frac,
            weight_decay=self.weight_decay,
            eval_every=self.eval_every if size == "full" else None,
            decay_rule=self.decay_rule,
            eval_schedule="v7",
        )

    def select(self, records: Sequence[Mapping[str, Any]]) -> int:
        """Index of the lowest v7 score (the script's ``run_search``: NaN skipped, ties keep the earlier)."""
        scores = [r.get("final", {}).get("value") if r.get("status") == "ok" else None for r in records]
        return select_replay_lr([math.nan if v is None else float(v) for v in scores])


def _last_recorded_loss(record: Mapping[str, Any]) -> float:
    losses = record.get("train", {}).get("loss") or []
    if not losses or losses[-1] is None:
        return math.nan
    return float(losses[-1])


def select_replay_lr(last_losses: Sequence[float]) -> int:
    """The script's ``search_lr`` rule: index of the lowest recorded loss at the last record.

    NaN (diverged or never recorded) is skipped, a tie keeps the earlier grid value (strict ``<``), and if
    every value is NaN the first grid value wins.
    """
    if not last_losses:
        raise ValueError("no grid values to select from")
    best_i, best = 0, math.inf
    for i, loss in enumerate(last_losses):
        if loss is None or math.isnan(loss):
            continue
        if loss < best:
            best_i, best = i, loss
    return best_i
