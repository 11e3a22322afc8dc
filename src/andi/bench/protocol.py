"""Benchmark protocols, declared before any run: the paper's replay, the fair comparison, and ``quick``.

Every number that decides what gets run lives here as a frozen dataclass field with its source, so a
reviewer can read the whole search space and seed policy in one place (``docs/design/protocol.md``).

* :class:`ReplayProtocol` — the ANDI paper's experiment exactly as its script runs it
  (``VladimerKhasia/ANDI:ANDI.py`` @ 29f90fe: ``train_engine``, ``search_lr``, ``run_experiment``):
  2500 steps, batch 128, the pre-update minibatch loss recorded every 50 steps, seeds 42 and 1337, an lr
  grid searched for ANDI only (on seed 42), fixed AdamW and the script's "Muon", constant lr.
* :class:`FairProtocol` — an equal budget for every arm: lr = base × 2^k, k ∈ {−4, …, 3}, a grid-edge
  extension rule, tuning seed(s) disjoint from ≥ 3 reporting seeds, one WSD schedule for all arms, selection
  on the final validation metric, reporting on test. Hybrid arms' aux AdamW uses the tuned AdamW lr.
* :data:`QUICK` / :data:`QUICK_SMOKE` — the embedded ``andi-bench quick`` demonstration: the fair
  procedure with a reduced but equal 3-point grid (base × 4^k, k ∈ {−1, 0, 1}), 1 tuning and 2 reporting
  seeds and short runs (too few seeds for evidence; the report says so).

The protocols only *describe* runs (:class:`~andi.bench.runner.RunConfig` objects) and selection rules;
:mod:`andi.bench.sweep` executes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runner imports torch and the tasks; protocols stay importable without them
    from andi.bench.runner import RunConfig

__all__ = [
    "ANDI_GRID",
    "BATCH_SIZE",
    "CORE_ARMS",
    "EVAL_INTERVAL",
    "FAIR",
    "FAMILY_ARMS",
    "PROTOCOLS",
    "QUICK",
    "QUICK_SMOKE",
    "REPLAY",
    "SEEDS",
    "TRAIN_STEPS",
    "ArmSpec",
    "FairProtocol",
    "ReplayProtocol",
    "get_protocol",
    "select_fair_lr",
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
REPLAY_MUON = "muon-andi-paper"  # the script's "Muon" (docs/design/family.md §4); never labelled plain "Muon"


def _lookup(table: tuple[tuple[str, Any], ...], task: str, default: Any) -> Any:
    return dict(table).get(task, default)


def _as_pairs(mapping: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted((str(k), v) for k, v in items))


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
        return _lookup(self.labels, arm, arm)

    def fixed_lr(self, arm: str, task: str) -> float:
        """The script's untuned lr of AdamW and of its "Muon"."""
        if arm == "adamw":
            return float(_lookup(self.adamw_lr, task, self.adamw_lr_default))
        if arm == self.muon_optimizer:
            return float(_lookup(self.muon_lr, task, self.muon_lr_default))
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
        from andi.bench.runner import RunConfig

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


# ================================================================================================== fair
@dataclass(frozen=True)
class ArmSpec:
    """One optimizer arm of the fair protocol.

    ``base_lr`` is the centre of the lr grid (``task_base_lr`` overrides it per task); ``hybrid`` arms send
    hidden matrices to ``optimizer`` and every other parameter to an aux AdamW whose lr is the tuned AdamW lr
    of the task (β (0.9, 0.95), eps 1e-10). ``optimizer_kwargs`` and ``task_kwargs`` hold the fixed
    non-lr hyperparameters; ``source`` says where the defaults come from.
    """

    name: str
    optimizer: str
    base_lr: float
    label: str = ""
    roles: str = "standard"
    hybrid: bool = False
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()
    task_kwargs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    task_base_lr: tuple[tuple[str, float], ...] = ()
    weight_decay: float = 0.0
    source: str = ""

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ValueError(f"arm {self.name!r}: base lr must be positive, got {self.base_lr}")
        if self.roles not in ("standard", "all"):
            raise ValueError(f"arm {self.name!r}: roles must be 'standard' or 'all', got {self.roles!r}")

    @property
    def display(self) -> str:
        return self.label or self.name

    def base(self, task: str) -> float:
        return float(_lookup(self.task_base_lr, task, self.base_lr))

    def kwargs(self, task: str, aux_lr: float | None = None) -> tuple[tuple[str, Any], ...]:
        kw = dict(self.optimizer_kwargs)
        kw.update(dict(_lookup(self.task_kwargs, task, ())))
        if self.hybrid:
            if aux_lr is None:
                raise ValueError(f"hybrid arm {self.name!r} needs the tuned AdamW lr as aux_lr")
            kw.update(aux_lr=float(aux_lr), aux_betas=(0.9, 0.95), aux_eps=1e-10)
        return _as_pairs(kw)


_GPT_ADAMW_BETAS = (("gpt", (("betas", (0.9, 0.95)),)),)

#: The three core arms of the fair protocol (docs/design/protocol.md (c) "Arms" and "Search space").
CORE_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec(
        "adamw",
        "adamw",
        1e-3,
        label="AdamW",
        roles="all",
        optimizer_kwargs=(("betas", (0.9, 0.999)), ("eps", 1e-8)),
        task_kwargs=_GPT_ADAMW_BETAS,
        source="torch.optim.AdamW defaults; β2 0.95 on GPT (protocol.md)",
    ),
    ArmSpec(
        "muon",
        "muon",
        0.02,
        label="Muon",
        hybrid=True,
        source="KellerJordan/Muon defaults: momentum 0.95, Nesterov, NS5 (family.md §3.3)",
    ),
    ArmSpec(
        "andi",
        "andi",
        0.02,
        label="ANDI",
        roles="all",
        source="ANDI paper mode, every parameter (andi.md §5 defaults: momentum 0.9, Nesterov)",
    ),
)


_SCION_SOURCE = (
    "LIONS-EPFL/scion README: α = 0.1, constrained; radii of the registry's recipe (shakespeare-char "
    "sweep: input 1, blocks 3, head 10); lr base 2^-4 for the CNN (README CNN recipe), 2^-6 elsewhere "
    "(README MLP recipe; the nanoGPT recipe's 2^-12 belongs to radii 50/3000, not these)"
)
_SCION_LR = (("cifar", 2.0**-4),)

#: Family arms of the fair protocol (docs/design/protocol.md (c) "Arms"), each with the split of
#: docs/design/family.md §0.
FAMILY_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec(
        "sgd",
        "sgd",
        0.05,
        label="SGD-Nesterov",
        roles="all",
        optimizer_kwargs=(("momentum", 0.9), ("nesterov", True)),
        source="torch.optim.SGD, momentum 0.9",
    ),
    ArmSpec(
        "sinkgd-l1",
        "sinkgd",
        1e-3,
        label="SinkGD L=1",
        hybrid=True,
        optimizer_kwargs=(("L", 1),),
        source="Scetbon et al. 2025, the paper's scale (no output normalization)",
    ),
    ArmSpec(
        "sinkgd-l5",
        "sinkgd",
        1e-3,
        label="SinkGD L=5",
        hybrid=True,
        optimizer_kwargs=(("L", 5),),
        source="Scetbon et al. 2025 default L = 5",
    ),
    ArmSpec("rmnp", "rmnp", 0.02, label="RMNP", hybrid=True, source="RMNP code defaults: momentum 0.95, Nesterov"),
    ArmSpec(
        "normuon",
        "normuon",
        0.02,
        label="NorMuon",
        hybrid=True,
        source="pytorch-optimizer NorMuon defaults (momentum 0.95, β2 0.95)",
    ),
    ArmSpec(
        "scion-colnorm",
        "scion",
        2.0**-6,
        label="Scion ColNorm",
        optimizer_kwargs=(("recipe", "colnorm"),),
        task_base_lr=_SCION_LR,
        source=_SCION_SOURCE,
    ),
    ArmSpec(
        "scion-rownorm",
        "scion",
        2.0**-6,
        label="Scion RowNorm",
        optimizer_kwargs=(("recipe", "rownorm"),),
        task_base_lr=_SCION_LR,
        source=_SCION_SOURCE,
    ),
)


def select_fair_lr(scores: Sequence[float], higher_is_better: bool) -> int:
    """Index of the best mean final validation metric; failures (NaN/inf/None) lose, ties keep the earlier."""
    if not scores:
        raise ValueError("no grid values to select from")
    best_i, best = 0, None
    for i, s in enumerate(scores):
        if s is None or not math.isfinite(s):
            continue
        v = -s if higher_is_better else s
        if best is None or v < best:
            best_i, best = i, v
    return best_i


@dataclass(frozen=True)
class FairProtocol:
    """Equal-budget comparison (docs/design/protocol.md (c)).

    Per arm and task the lr grid is ``base × factor^k`` for ``k`` in ``ks``; if the winner (mean final
    validation metric over the tuning seeds) sits at a grid edge, ``edge_extension`` more points beyond that
    edge are run once and the arm is marked *edge-extended*. AdamW (``reference_arm``) is tuned first: its
    chosen lr is the aux lr of hybrid arms and its median reporting-seed final metric is the time-to-target
    target. The winner is re-run on every reporting seed with ``eval_split="test"``.
    """

    name: str = "fair"
    tasks: tuple[str, ...] = PAPER_TASKS
    arms: tuple[ArmSpec, ...] = CORE_ARMS + FAMILY_ARMS
    ks: tuple[int, ...] = tuple(range(-4, 4))
    factor: float = 2.0
    edge_extension: int = 2
    tuning_seeds: tuple[int, ...] = (0,)
    reporting_seeds: tuple[int, ...] = (1001, 1002, 1003, 1004, 1005)
    min_reporting_seeds: int = 3
    reference_arm: str = "adamw"
    schedule: str = "wsd"
    warmup_frac: float = 0.02
    decay_frac: float = 0.4
    eval_every: int | None = None  # None: the task default (100 steps at full size)
    task_steps: tuple[tuple[str, int], ...] = ()  # per-task step override; else the task default
    task_batch_size: tuple[tuple[str, int], ...] = ()  # per-task batch override; else the task default
    evidence: bool = True  # False for demonstrations with too few seeds (the report says so)
    description: str = "fair protocol: equal lr grid per arm, disjoint tuning/reporting seeds, WSD"
    reserved_seeds: tuple[int, ...] = field(default=SEEDS, repr=False)

    def __post_init__(self) -> None:
        if not self.ks or list(self.ks) != sorted(set(self.ks)):
            raise ValueError(f"ks must be strictly increasing and non-empty, got {self.ks}")
        if not self.factor > 1:
            raise ValueError(f"grid factor must exceed 1, got {self.factor}")
        if not self.tuning_seeds:
            raise ValueError("at least one tuning seed is required")
        overlap = set(self.tuning_seeds) & set(self.reporting_seeds)
        if overlap:
            raise ValueError(
                f"tuning and reporting seeds must be disjoint; both contain {sorted(overlap)} "
                "(selecting and reporting on the same seed biases the result toward the tuned arm)"
            )
        if len(set(self.reporting_seeds)) < self.min_reporting_seeds:
            raise ValueError(
                f"need at least {self.min_reporting_seeds} distinct reporting seeds, got {self.reporting_seeds}"
            )
        reserved = (set(self.tuning_seeds) | set(self.reporting_seeds)) & set(self.reserved_seeds)
        if reserved:
            raise ValueError(f"seeds {sorted(reserved)} are reserved for the replay protocol")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValueError(f"arm names must be unique, got {names}")
        if self.reference_arm not in names:
            raise ValueError(f"the reference arm {self.reference_arm!r} must be one of the arms {names}")
        if self.edge_extension < 0:
            raise ValueError(f"edge_extension must be >= 0, got {self.edge_extension}")

    # -------------------------------------------------------------------------------------------------
    def arm(self, name: str) -> ArmSpec:
        for a in self.arms:
            if a.name == name:
                return a
        raise KeyError(f"protocol {self.name!r} has no arm {name!r}; arms: {[a.name for a in self.arms]}")

    def ordered_arms(self, names: Sequence[str] | None = None) -> tuple[ArmSpec, ...]:
        """The requested arms with the reference arm (AdamW) first, as tuning requires."""
        chosen = [self.arm(n) for n in names] if names is not None else list(self.arms)
        if all(a.name != self.reference_arm for a in chosen):
            chosen.append(self.arm(self.reference_arm))
        return tuple(sorted(chosen, key=lambda a: a.name != self.reference_arm))

    def grid(self, arm: ArmSpec | str, task: str) -> tuple[float, ...]:
        """The declared lr grid of ``arm`` on ``task``, ascending."""
        a = self.arm(arm) if isinstance(arm, str) else arm
        return tuple(a.base(task) * self.factor**k for k in self.ks)

    def extension(self, grid: Sequence[float], winner: float) -> tuple[float, ...]:
        """Extra points beyond the edge the winner sits on (empty when it is interior or the rule is off)."""
        lo, hi = min(grid), max(grid)
        n = self.edge_extension
        if n == 0 or lo == hi:
            return ()
        if math.isclose(winner, lo, rel_tol=1e-12):
            return tuple(lo / self.factor**j for j in range(1, n + 1))
        if math.isclose(winner, hi, rel_tol=1e-12):
            return tuple(hi * self.factor**j for j in range(1, n + 1))
        return ()

    def steps_for(self, task: str) -> int | None:
        return _lookup(self.task_steps, task, None)

    def batch_size_for(self, task: str) -> int | None:
        return _lookup(self.task_batch_size, task, None)

    def budget(self) -> int:
        """Declared tuning trials per arm and task before any edge extension."""
        return len(self.ks) * len(self.tuning_seeds)

    def config(
        self,
        arm: ArmSpec | str,
        task: str,
        lr: float,
        seed: int,
        *,
        split: str,
        size: str,
        aux_lr: float | None = None,
        steps: int | None = None,
        device: str = "cpu",
        dtype: str = "float32",
    ) -> RunConfig:
        """The :class:`RunConfig` of one fair run (``split="val"`` to tune, ``"test"`` to report)."""
        from andi.bench.runner import RunConfig

        a = self.arm(arm) if isinstance(arm, str) else arm
        if split not in ("val", "test"):
            raise ValueError(f"fair runs evaluate on 'val' (tuning) or 'test' (reporting), got {split!r}")
        return RunConfig(
            task=task,
            size=size,
            optimizer=a.optimizer,
            lr=float(lr),
            steps=steps if steps is not None else self.steps_for(task),
            batch_size=self.batch_size_for(task),
            init_seed=seed,
            data_seed=seed,
            schedule=self.schedule,
            warmup_frac=self.warmup_frac,
            decay_frac=self.decay_frac,
            weight_decay=a.weight_decay,
            optimizer_kwargs=a.kwargs(task, aux_lr),
            roles=a.roles,
            eval_every=self.eval_every,
            eval_split=split,
            device=device,
            dtype=dtype,
        )

    def select(self, scores: Sequence[float], higher_is_better: bool) -> int:
        return select_fair_lr(scores, higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: The fair protocol: core and family arms (``andi-bench run`` runs the core arms unless asked for more).
FAIR = FairProtocol()
#: The paper's replay.
REPLAY = ReplayProtocol()

_QUICK_COMMON: dict[str, Any] = dict(
    tasks=PAPER_TASKS,
    arms=CORE_ARMS,
    # 3 points around each arm's base, equal for every arm. Factor 4 (16× span) rather than 2: with three
    # points and no edge extension, a factor-2 grid left most winners on an edge in our runs.
    ks=(-1, 0, 1),
    factor=4.0,
    edge_extension=0,  # a demonstration has a fixed budget; edge winners are flagged in the report
    tuning_seeds=(0,),
    reporting_seeds=(1001, 1002),
    min_reporting_seeds=2,
    evidence=False,
)
#: ``andi-bench quick`` (default ``--size cpu``): the paper tasks at CPU size, a few hundred steps.
QUICK = FairProtocol(
    name="quick",
    # Sized to finish within 5 minutes on 2 cores even when only one thread is effective (measured
    # single-thread CPU time ≈ 3.5 min): 45 runs of a few hundred steps, smaller batches for CIFAR and GPT.
    task_steps=(("cifar", 120), ("gpt", 150), ("saddle", 240)),
    task_batch_size=(("cifar", 32), ("gpt", 16)),
    eval_every=40,
    description="quick demonstration: 3-point equal grid (factor 4), 1 tuning + 2 reporting seeds, CPU size",
    **_QUICK_COMMON,
)
#: ``andi-bench quick --size smoke``: the same procedure at the tasks' smoke size (CI, seconds). Its own name
#: keeps its manifests apart from :data:`QUICK`'s (``manifest-<protocol>-<task>-<size>.json``).
QUICK_SMOKE = FairProtocol(
    name="quick-smoke",
    task_steps=(("cifar", 8), ("gpt", 8), ("saddle", 8)),
    eval_every=4,
    description="quick smoke test: 3-point equal grid (factor 4), 1 tuning + 2 reporting seeds, smoke size",
    **_QUICK_COMMON,
)

PROTOCOLS: dict[str, FairProtocol | ReplayProtocol] = {
    "fair": FAIR,
    "replay": REPLAY,
    "quick": QUICK,
    "quick-smoke": QUICK_SMOKE,
}


def get_protocol(name: str) -> FairProtocol | ReplayProtocol:
    """The declared protocol called ``name`` (``fair``, ``replay``, ``quick``, ``quick-smoke``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}") from None
