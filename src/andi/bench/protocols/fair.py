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
* :data:`STUDY`, :data:`STUDY_SADDLE_FULL`, :data:`WIDTH` — the evidence study sized for a 2-core CPU, the SADDLE
  task at the paper's size and the char-GPT width sweep, declared in :mod:`andi.bench.protocols_study`.

The protocols only *describe* runs (:class:`~andi.bench.runner.RunConfig` objects) and selection rules;
:mod:`andi.bench.sweep` executes them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from andi.bench.arms import CORE_ARMS, FAMILY_ARMS, ArmSpec, lookup
from andi.bench.protocols_study import study_protocols

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
    "REPLAY_V7",
    "SEEDS",
    "STUDY",
    "STUDY_GPT_FULL",
    "STUDY_SADDLE_FULL",
    "TRAIN_STEPS",
    "WIDTH",
    "ArmSpec",
    "FairProtocol",
    "ReplayProtocol",
    "ReplayV7Protocol",
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
        """The :class:`RunConfig` of one v7 run (the eval interval is the task's default below ``full``)."""
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
            schedule=lookup(self.schedules, arm, "wsd-v7"),
            warmup_frac=self.warmup_frac,
            decay_frac=self.decay_frac,
            weight_decay=self.weight_decay,
            roles=self.roles,
            eval_every=self.eval_every if size == "full" else None,
            eval_split=self.eval_split,
            train_record_every=record_every,
            device=device,
            dtype=dtype,
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


# ================================================================================================== fair
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
    edge are run and the arm is marked *edge-extended*. The rule repeats, each round beyond the edge of every lr
    explored so far, while the winner sits at an edge, for at most ``edge_extension_rounds`` rounds (1, the
    default, extends once); a winner still at an edge when the rounds are spent is marked *edge-capped* in the
    manifest. AdamW (``reference_arm``) is tuned first: its chosen lr is the aux lr of hybrid arms and its median
    reporting-seed final metric is the time-to-target target. The winner is re-run on every reporting seed with
    ``eval_split="test"`` (``reporting_seed_counts`` may give an arm only the first ``n`` of them).

    The fields after ``reserved_seeds`` were added for the evidence study; :meth:`to_dict` writes them only when
    they differ from their defaults, so the spec (and the manifests) of protocols that do not use them is unchanged.
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
    #: Most rounds of the edge rule per arm and task (each adds ``edge_extension`` points beyond the edge).
    edge_extension_rounds: int = 1
    #: ``(arm, n)``: that arm is reported on the first ``n`` reporting seeds only (every other arm on all of them).
    reporting_seed_counts: tuple[tuple[str, int], ...] = ()
    #: Arms ``andi-bench run`` runs without ``--optimizers`` (``None``: the core arms among :attr:`arms`).
    default_arms: tuple[str, ...] | None = None
    #: Task size ``andi-bench run`` uses without ``--size`` (``None``: the command's default, ``cpu``).
    default_size: str | None = None

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
        if self.edge_extension_rounds < 1:
            raise ValueError(f"edge_extension_rounds must be >= 1, got {self.edge_extension_rounds}")
        for arm, n in self.reporting_seed_counts:
            if arm not in names:
                raise ValueError(f"reporting_seed_counts names {arm!r}, which is not one of the arms {names}")
            if not self.min_reporting_seeds <= n <= len(self.reporting_seeds):
                raise ValueError(
                    f"arm {arm!r}: {n} reporting seeds; need {self.min_reporting_seeds} to "
                    f"{len(self.reporting_seeds)} (the first n of {self.reporting_seeds})"
                )
        unknown = [a for a in self.default_arms or () if a not in names]
        if unknown:
            raise ValueError(f"default_arms {unknown} are not arms of the protocol {names}")
        if self.default_size not in (None, "full", "cpu", "smoke"):
            raise ValueError(f"default_size must be None, 'full', 'cpu' or 'smoke', got {self.default_size!r}")

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
        """Extra points beyond the edge of ``grid`` (every lr explored so far) the winner sits on; empty when it is
        interior or the rule is off. The plan calls it once per round, at most :attr:`edge_extension_rounds` times."""
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
        return lookup(self.task_steps, task, None)

    def batch_size_for(self, task: str) -> int | None:
        return lookup(self.task_batch_size, task, None)

    def budget(self) -> int:
        """Declared tuning trials per arm and task before any edge extension."""
        return len(self.ks) * len(self.tuning_seeds)

    def reporting_seeds_for(self, arm: ArmSpec | str) -> tuple[int, ...]:
        """The reporting seeds of ``arm``: all of them, or the first ``n`` where ``reporting_seed_counts`` says so."""
        name = arm.name if isinstance(arm, ArmSpec) else arm
        n = lookup(self.reporting_seed_counts, name, len(self.reporting_seeds))
        return self.reporting_seeds[:n]

    def run_arms(self) -> tuple[str, ...]:
        """The arms a run without an explicit choice runs: :attr:`default_arms`, else the core arms declared here."""
        if self.default_arms is not None:
            return self.default_arms
        core = {a.name for a in CORE_ARMS}
        return tuple(a.name for a in self.arms if a.name in core)

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
            schedule=a.schedule or self.schedule,
            warmup_frac=self.warmup_frac,
            decay_frac=self.decay_frac,
            weight_decay=a.weight_decay,
            optimizer_kwargs=a.kwargs(task, aux_lr),
            roles=a.roles,
            eval_every=self.eval_every,
            eval_split=split,
            device=device,
            dtype=dtype,
            decay_rule=a.decay_rule,
        )

    def select(self, scores: Sequence[float], higher_is_better: bool) -> int:
        return select_fair_lr(scores, higher_is_better)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except the study's additions (see the class docstring) while they hold their defaults."""
        spec = asdict(self)
        spec["arms"] = [a.to_dict() for a in self.arms]
        for name in _STUDY_FIELDS:
            if spec[name] == _STUDY_FIELD_DEFAULTS[name]:
                del spec[name]
        return spec


_STUDY_FIELDS = ("edge_extension_rounds", "reporting_seed_counts", "default_arms", "default_size")
_STUDY_FIELD_DEFAULTS = {f.name: f.default for f in fields(FairProtocol) if f.name in _STUDY_FIELDS}

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

#: The evidence study (:mod:`andi.bench.protocols_study`, built from the classes and arm tables above).
_STUDY_PROTOCOLS = study_protocols()
#: ``andi-bench run --protocol study``: every fair arm on the paper tasks, ``cifar-proj`` and the toys at CPU size.
STUDY: FairProtocol = _STUDY_PROTOCOLS["study"]
#: ``andi-bench run --protocol study-saddle-full``: SADDLE at the paper's size for ANDI, ANDI-hybrid, AdamW, Muon.
STUDY_SADDLE_FULL: FairProtocol = _STUDY_PROTOCOLS["study-saddle-full"]
#: ``andi-bench run --protocol width``: char-GPT at widths 64, 128, 256 (lr transfer).
WIDTH: FairProtocol = _STUDY_PROTOCOLS["width"]

#: ``andi-bench run --protocol study-gpt-full``: the GPT at the paper's size in the author's v7 setting.
STUDY_GPT_FULL: FairProtocol = _STUDY_PROTOCOLS["study-gpt-full"]
#: ``andi-bench run --protocol replay-v7``: the author's v7 GPT experiment as it runs it.
REPLAY_V7 = ReplayV7Protocol()

PROTOCOLS: dict[str, FairProtocol | ReplayProtocol] = {
    "fair": FAIR,
    "replay": REPLAY,
    "replay-v7": REPLAY_V7,
    "quick": QUICK,
    "quick-smoke": QUICK_SMOKE,
    **_STUDY_PROTOCOLS,
}


def get_protocol(name: str) -> FairProtocol | ReplayProtocol:
    """The declared protocol called ``name`` (``fair``, ``replay``, ``quick``, ``quick-smoke``, ``study``,
    ``study-saddle-full``, ``width``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise KeyError(f"unknown protocol {name!r}; choose from {sorted(PROTOCOLS)}") from None
