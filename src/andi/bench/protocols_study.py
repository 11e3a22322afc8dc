"""The evidence study's protocols: ``study``, ``study-saddle-full`` and ``width`` (fair protocols, declared up front).

:func:`study_protocols` builds them from :class:`~andi.bench.protocol.FairProtocol` and the arm tables of
:mod:`andi.bench.arms`; :mod:`andi.bench.protocol` registers them (``andi-bench run --protocol study`` etc.), so import
them from there (``andi.bench.protocol.STUDY``). They are built in a function, not at import, because
:mod:`andi.bench.protocol` imports this module: either module can then be imported first.

What every study protocol shares with ``fair`` (docs/design/protocol.md (c)): the 8-point lr grid base × 2^k,
k ∈ {−4, …, 3}, one WSD schedule for every arm (2 % warmup, 40 % linear decay), selection on the mean final validation
metric of the tuning seed, reporting on the test split, hybrid arms' aux AdamW at the tuned AdamW lr. What they add:

* **Repeated edge extension**: a winner at an edge of the lrs explored so far adds 2 points beyond it, again and
  again, for at most :data:`EDGE_ROUNDS` rounds (8 extra points, a 2^8 = 256× wider span); a winner still at an edge
  after that is marked ``edge_capped: true`` in its manifest entry.
* **Seeds**: tuning seed 0; reporting seeds 1001–1005 (disjoint from the tuning seed and from the replay's 42 and
  1337). ``study`` reports AdamW, Muon, ANDI, ANDI-hybrid and SGD on all five and the six relatives on the first 3
  (``reporting_seed_counts``), the issue's fallback for a 2-core budget.
* **Newton–Schulz in float32 on CPU** for the Muon arm (:class:`andi.optim.Muon`, ``ns_dtype=None``): torch's bf16
  iteration is emulated, very slowly, on CPUs without native bf16. NorMuon's Newton–Schulz stays bf16.

``study`` — every fair arm (:data:`~andi.bench.arms.CORE_ARMS` + :data:`~andi.bench.arms.FAMILY_ARMS`: AdamW, Muon,
ANDI, SGD, ANDI-hybrid, SinkGD L=1 and L=5, RMNP, NorMuon, Scion ColNorm and RowNorm) on ``saddle``, ``cifar``
(ResNet-9), ``gpt``, ``cifar-proj`` and the five toy landscapes, each at its CPU size's steps
(:data:`STUDY_TASK_STEPS` is empty). Run with ``andi-bench run --protocol study --workers 2 --threads 1``.
Sizing (this project's 2-core Xeon, shared with other jobs, so ±30 %): per task 5 arms × (8 + 5) + 6 arms ×
(8 + 3) = 131 planned runs plus the extension rounds; worker-slot seconds per run through the local executor with
2 workers × 1 thread, measured while the study ran beside other work: cifar ≈ 28, gpt ≈ 20, saddle ≈ 10,
cifar-proj ≈ 6, a toy < 1. Measured: 1361 runs (with the extension rounds) in 65 minutes
(docs/results/index.md).

``study-saddle-full`` — SADDLE at the paper's size (2500 steps, batch 128, the full Fashion-MNIST training split)
for ANDI, ANDI-hybrid, AdamW and Muon, the same procedure (``andi-bench run --protocol study-saddle-full``; its size
defaults to ``full``). Estimate: 4 arms × (8 + 5) + ≈ 8 extension runs = 60 runs × ≈ 15 s / 2 workers ≈ 8 min.

``width`` — lr transfer across width: char-GPT at CPU size with ``n_embd`` ∈ {64, 128, 256} (tasks ``gpt-w64``,
``gpt-w128``, ``gpt-w256``; head size 16 kept, so 4, 8 and 16 heads) for ANDI, ANDI-hybrid, AdamW and Muon,
:data:`WIDTH_STEPS` steps per run, the full 8-point grid with repeated extension on each width, 2 reporting seeds
(``andi-bench run --protocol width``). The manifests hold what its plots need: the model of each task
(``task_model``: ``n_embd``, ``n_head``, …) and every tuning run's lr and final validation loss
(``arms[].tuning``). One run alone at 300 steps, AdamW | Muon: width 64 19 | 19 s, width 128 29 | 33 s, width 256
100 | 122 s; at 150 steps about half. Measured: 136 runs in 33 minutes with 2 workers × 1 thread.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from andi.bench.arms import CORE_ARMS, FAMILY_ARMS, ArmSpec

if TYPE_CHECKING:
    from andi.bench.protocol import FairProtocol

__all__ = [
    "EDGE_ROUNDS",
    "STUDY_FIVE_SEED_ARMS",
    "STUDY_TASKS",
    "STUDY_TASK_STEPS",
    "TOY_TASKS",
    "WIDTH_ARMS",
    "WIDTH_STEPS",
    "WIDTH_TASKS",
    "study_protocols",
]

#: Most rounds of the edge rule per arm and task (2 points each) in every study protocol.
EDGE_ROUNDS = 4
#: The toy landscapes of :mod:`andi.bench.tasks.toys` (the two ``-noisy`` ones add gradient noise).
TOY_TASKS = ("rosenbrock", "quadratic", "rotated-quadratic", "quadratic-noisy", "rotated-quadratic-noisy")
#: Tasks of ``study``: the paper's three, the CPU-sized CIFAR variant and the toys.
STUDY_TASKS = ("saddle", "cifar", "gpt", "cifar-proj", *TOY_TASKS)
#: Step overrides of ``study``: none, every task runs its CPU size's steps (CIFAR and GPT 300).
STUDY_TASK_STEPS: tuple[tuple[str, int], ...] = ()
#: Arms of ``study`` reported on 5 seeds; the others on the first 3 (see the module docstring).
STUDY_FIVE_SEED_ARMS = ("adamw", "muon", "andi", "andi-hybrid", "sgd")
#: Steps of every ``width`` run (the CPU size of ``gpt`` runs 300).
WIDTH_STEPS = 150
#: Width sweep tasks (:func:`andi.bench.tasks.char_gpt.char_gpt_width_task`).
WIDTH_TASKS = ("gpt-w64", "gpt-w128", "gpt-w256")
#: Arms of ``width`` and ``study-saddle-full``.
WIDTH_ARMS = ("adamw", "muon", "andi", "andi-hybrid")

_SEEDS = dict(tuning_seeds=(0,), reporting_seeds=(1001, 1002, 1003, 1004, 1005), min_reporting_seeds=3)


def _for_tasks(arm: ArmSpec, tasks: tuple[str, ...], like: str) -> ArmSpec:
    """``arm`` with the per-task settings (kwargs, base lr) of task ``like`` given to ``tasks`` too."""
    kwargs = dict(arm.task_kwargs)
    base = dict(arm.task_base_lr)
    if like in kwargs:
        kwargs.update({t: kwargs[like] for t in tasks})
    if like in base:
        base.update({t: base[like] for t in tasks})
    return dataclasses.replace(arm, task_kwargs=tuple(sorted(kwargs.items())), task_base_lr=tuple(sorted(base.items())))


def study_protocols() -> dict[str, FairProtocol]:
    """``study``, ``study-saddle-full`` and ``width`` by name (see the module docstring)."""
    from andi.bench.protocol import FairProtocol

    every_arm = CORE_ARMS + FAMILY_ARMS
    names = tuple(a.name for a in every_arm)
    common = dict(
        ks=tuple(range(-4, 4)),
        factor=2.0,
        edge_extension=2,
        edge_extension_rounds=EDGE_ROUNDS,
        schedule="wsd",
        warmup_frac=0.02,
        decay_frac=0.4,
        **_SEEDS,
    )
    study = FairProtocol(
        name="study",
        tasks=STUDY_TASKS,
        arms=every_arm,
        default_arms=names,
        task_steps=STUDY_TASK_STEPS,
        reporting_seed_counts=tuple((n, 3) for n in names if n not in STUDY_FIVE_SEED_ARMS),
        description=(
            "evidence study (CPU, ~90 min with --workers 2 --threads 1): every fair arm, 8-point factor-2 grid "
            f"with up to {EDGE_ROUNDS} edge-extension rounds, 1 tuning + 5 reporting seeds (3 for the relatives), WSD"
        ),
        **common,
    )
    four = tuple(a for a in every_arm if a.name in WIDTH_ARMS)
    saddle_full = FairProtocol(
        name="study-saddle-full",
        tasks=("saddle",),
        arms=four,
        default_arms=WIDTH_ARMS,
        default_size="full",
        description=(
            "evidence study, SADDLE at the paper's size: ANDI, ANDI-hybrid, AdamW, Muon; 8-point factor-2 grid "
            f"with up to {EDGE_ROUNDS} edge-extension rounds, 1 tuning + 5 reporting seeds, WSD"
        ),
        **common,
    )
    width = FairProtocol(
        name="width",
        tasks=WIDTH_TASKS,
        arms=tuple(_for_tasks(a, WIDTH_TASKS, like="gpt") for a in four),
        default_arms=WIDTH_ARMS,
        description=(
            "lr transfer: char-GPT at CPU size, n_embd 64/128/256 (head size 16), ANDI, ANDI-hybrid, AdamW, "
            f"Muon; {WIDTH_STEPS} steps, 8-point factor-2 grid with up to {EDGE_ROUNDS} edge-extension rounds per "
            "width, 1 tuning + 2 reporting seeds"
        ),
        task_steps=tuple((t, WIDTH_STEPS) for t in WIDTH_TASKS),
        **{**common, "reporting_seeds": (1001, 1002), "min_reporting_seeds": 2},
    )
    return {p.name: p for p in (study, saddle_full, width)}
