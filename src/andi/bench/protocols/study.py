"""The evidence study's protocols: ``study``, ``study-saddle-full``, ``width``, ``study-gpt-full``, ``study-v2`` and
``width-v2`` (fair protocols, declared up front).

:func:`study_protocols` builds them from :class:`~andi.bench.protocols.fair.FairProtocol` and the arm tables of
:mod:`andi.bench.protocols.arms`; :mod:`andi.bench.protocols.registry` registers them (``andi-bench run --protocol
study`` etc.) and :mod:`andi.bench.protocols` exports them (``andi.bench.protocols.STUDY``). Imports: the fair
protocol and the arms, nothing that imports this module back.

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

``study`` — every fair arm (:data:`~andi.bench.protocols.arms.CORE_ARMS` +
:data:`~andi.bench.protocols.arms.FAMILY_ARMS`: AdamW, Muon, ANDI, SGD, ANDI-hybrid, SinkGD L=1 and L=5, RMNP,
NorMuon, Scion ColNorm and RowNorm) on ``saddle``, ``cifar`` (ResNet-9), ``gpt``, ``cifar-proj`` and the five toy
landscapes, each at its CPU size's steps
(:data:`STUDY_TASK_STEPS` is empty). Run with ``andi-bench run --protocol study --workers 2 --threads 1``.
Sizing (this project's 2-core Xeon, shared with other jobs, so ±30 %): per task 5 arms × (8 + 5) + 6 arms ×
(8 + 3) = 131 planned runs plus the extension rounds; worker-slot seconds per run through the local executor with
2 workers × 1 thread, measured while the study ran beside other work: cifar ≈ 28, gpt ≈ 20, saddle ≈ 10,
cifar-proj ≈ 6, a toy < 1. Measured: 1361 runs (with the extension rounds) in 65 minutes
(docs/results/index.md).

``study-v2`` — the study again under the reviewer-grade rules (docs/design/protocol.md (e)), for the four headline
arms (AdamW, Muon, ANDI, ANDI-hybrid: :data:`HEADLINE_ARMS`) on every task of ``study``: the lr is chosen on the
mean final validation metric over :data:`V2_TUNING_SEEDS` (3 tuning seeds), after the factor-2 scan with repeated
edge extension, refined by the two points at √2 on both sides of the winner; 10 reporting seeds (1001–1010). Its
verdicts follow the claims file :mod:`andi.bench.paper_claims` (a diverged reporting seed counts at the task's
penalty). The six relatives keep their one-tuning-seed results in ``study``. Sizing with the worker-slot seconds
above: per task 4 arms × (3 × ≈ 12 + 10) ≈ 184 runs, cifar ≈ 86 min, gpt ≈ 61, saddle ≈ 31, cifar-proj ≈ 18, toys
≈ 5: ≈ 100 minutes with ``--workers 2 --threads 1``.

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

``width-v2`` — ``width`` under the reviewer-grade rules of ``study-v2``: the same tasks, arms and steps, the lr chosen
on the mean final validation loss of :data:`V2_TUNING_SEEDS` after the extended factor-2 scan and the √2 refinement,
:data:`WIDTH_V2_REPORTING_SEEDS` (5 reporting seeds). Sizing from ``width``'s ≈ 29 worker-slot seconds a run: 4 arms
× 3 widths × (3 × ≈ 12 + 5) ≈ 490 runs, ≈ 2 hours with ``--workers 2 --threads 1``.

``study-gpt-full`` — the char-GPT at the paper's size (n_embd 128, 4 layers, 4 heads, block 64, batch 128, 2500 steps)
in the setting of the author's v7 experiment: ANDI (its v7 class, ``andi-v7``), D-Muon (``d-muon``, as Semenov et al.
define it) and AdamW, each with weight decay 0.01 on the v7 groups and its v7 schedule (WSD from 0 with 10 % warmup
and 20 % cooldown for ANDI and D-Muon, cosine to 1 % for AdamW). Every arm gets 3 lr points with factor-2 spacing
around its centre (ANDI 0.09 and AdamW 1e-3, the author's choices; D-Muon :data:`D_MUON_GPT_CENTRE`, the author's
0.02 carried over to the AdamW-matched scale), one edge point per round for up to 3 rounds, 1 tuning seed (0) on the
validation split and 5 reporting seeds (1001–1005) on the test split. One run takes 21–28 minutes on one thread of
this project's 2-core CPU (≈ 0.5 s a step, measured), so the study (27 runs in the event) ran for hours in the
background (``scripts/gpt_paper_size.sh``); its page is ``docs/results/gpt-paper-size/report.md``, its records
``docs/results/gpt-paper-size/records.tar.xz``. Its verdict rule is declared in
``docs/results/gpt-paper-size/claim.md``, committed before the first run.
"""

from __future__ import annotations

import dataclasses
import math

from andi.bench.protocols.arms import CORE_ARMS, FAMILY_ARMS, ArmSpec
from andi.bench.protocols.fair import FairProtocol

__all__ = [
    "D_MUON_GPT_CENTRE",
    "EDGE_ROUNDS",
    "GPT_FULL_ARMS",
    "GPT_FULL_ARM_NAMES",
    "HEADLINE_ARMS",
    "STUDY_FIVE_SEED_ARMS",
    "STUDY_TASKS",
    "STUDY_TASK_STEPS",
    "TOY_TASKS",
    "V2_REPORTING_SEEDS",
    "V2_TUNING_SEEDS",
    "WIDTH_ARMS",
    "WIDTH_STEPS",
    "WIDTH_TASKS",
    "WIDTH_V2_REPORTING_SEEDS",
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
#: The headline arms of ``study-v2``: the paper's method on its own and on Muon's footing, and the two baselines.
HEADLINE_ARMS = WIDTH_ARMS
#: Tuning seeds of ``study-v2`` (disjoint from the reporting seeds and from the replay's 42 and 1337).
V2_TUNING_SEEDS = (0, 1, 2)
#: Reporting seeds of ``study-v2``.
V2_REPORTING_SEEDS = tuple(range(1001, 1011))
#: Reporting seeds of ``width-v2`` (the lr-transfer question rests on the tuning runs; five seeds report each width).
WIDTH_V2_REPORTING_SEEDS = tuple(range(1001, 1006))

#: D-Muon's lr centre on the paper's GPT: the author's 0.02 (KellerJordan's scale √max(1, m/n)) moved to the
#: AdamW-matched scale 0.2·√max(m, n). On the GPT's hidden matrices (fan-in 128 or 512, fan-out ≥ fan-in or not) the two
#: agree at lr · 0.2·√128 = 0.02, i.e. lr = 0.1/√128 ≈ 0.0088.
D_MUON_GPT_CENTRE = 0.1 / math.sqrt(128)
#: The arms of ``study-gpt-full`` (module docstring): the v7 setting, each arm's own schedule, the v7 decay groups.
GPT_FULL_ARMS = (
    ArmSpec(
        "adamw",
        "adamw",
        1e-3,
        label="AdamW",
        roles="all",
        optimizer_kwargs=(("betas", (0.9, 0.999)), ("eps", 1e-8)),
        weight_decay=0.01,
        schedule="cosine-v7",
        decay_rule="v7",
        source="the v7 script's AdamW: torch defaults β (0.9, 0.999), ε 1e-8; weight decay 0.01 on the v7 groups; "
        "lr centre its choice 1e-3",
    ),
    ArmSpec(
        "andi",
        "andi-v7",
        0.09,
        label="ANDI (v7)",
        roles="all",
        weight_decay=0.01,
        schedule="wsd-v7",
        decay_rule="v7",
        source="the v7 class (compat='v7'): momentum 0.9, Nesterov; weight decay 0.01 on the v7 groups; lr centre "
        "the author's choice 0.09",
    ),
    ArmSpec(
        "d-muon",
        "d-muon",
        D_MUON_GPT_CENTRE,
        label="D-Muon",
        weight_decay=0.01,
        schedule="wsd-v7",
        decay_rule="v7",
        source="Semenov et al. 2025: Muon (Nesterov 0.95, NS5, 0.2·√max(m, n)) on hidden matrices, AdamW (0.8, 0.999) "
        "on the rest at the same lr; weight decay 0.01 on the v7 groups; lr centre the author's 0.02 on this scale",
    ),
)
GPT_FULL_ARM_NAMES = tuple(a.name for a in GPT_FULL_ARMS)

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
    """``study``, ``study-saddle-full``, ``width``, ``study-gpt-full``, ``study-v2`` and ``width-v2`` by name (see the
    module docstring)."""
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
    gpt_full = FairProtocol(
        name="study-gpt-full",
        tasks=("gpt",),
        arms=GPT_FULL_ARMS,
        ks=(-1, 0, 1),
        factor=2.0,
        edge_extension=1,
        edge_extension_rounds=3,
        schedule="wsd-v7",
        warmup_frac=0.1,
        decay_frac=0.2,
        default_arms=GPT_FULL_ARM_NAMES,
        default_size="full",
        description=(
            "the GPT claim at the paper's size in the v7 setting: ANDI (v7), D-Muon, AdamW with weight decay 0.01 on "
            "the v7 groups and their v7 schedules; 3-point factor-2 grid around each arm's centre with up to 3 "
            "one-point edge-extension rounds, 1 tuning seed (val) + 5 reporting seeds (test)"
        ),
        **_SEEDS,
    )
    study_v2 = FairProtocol(
        name="study-v2",
        tasks=STUDY_TASKS,
        arms=four,
        default_arms=HEADLINE_ARMS,
        task_steps=STUDY_TASK_STEPS,
        refine_factor=math.sqrt(2.0),
        description=(
            "reviewer-grade study (CPU, ~100 min with --workers 2 --threads 1): AdamW, Muon, ANDI, ANDI-hybrid; "
            f"8-point factor-2 grid with up to {EDGE_ROUNDS} edge-extension rounds, then √2 refinement around the "
            f"winner, lr chosen on the mean of {len(V2_TUNING_SEEDS)} tuning seeds, {len(V2_REPORTING_SEEDS)} "
            "reporting seeds, WSD"
        ),
        **{
            **common,
            "tuning_seeds": V2_TUNING_SEEDS,
            "reporting_seeds": V2_REPORTING_SEEDS,
            "min_reporting_seeds": 10,
        },
    )
    width_v2 = FairProtocol(
        name="width-v2",
        tasks=WIDTH_TASKS,
        arms=width.arms,
        default_arms=WIDTH_ARMS,
        task_steps=width.task_steps,
        refine_factor=math.sqrt(2.0),
        description=(
            "lr transfer under the reviewer-grade rules: char-GPT at CPU size, n_embd 64/128/256 (head size 16), "
            f"ANDI, ANDI-hybrid, AdamW, Muon; {WIDTH_STEPS} steps, 8-point factor-2 grid with up to {EDGE_ROUNDS} "
            f"edge-extension rounds per width, then √2 refinement, lr chosen on the mean of {len(V2_TUNING_SEEDS)} "
            f"tuning seeds, {len(WIDTH_V2_REPORTING_SEEDS)} reporting seeds, WSD"
        ),
        **{
            **common,
            "tuning_seeds": V2_TUNING_SEEDS,
            "reporting_seeds": WIDTH_V2_REPORTING_SEEDS,
            "min_reporting_seeds": len(WIDTH_V2_REPORTING_SEEDS),
        },
    )
    return {p.name: p for p in (study, saddle_full, width, gpt_full, study_v2, width_v2)}
