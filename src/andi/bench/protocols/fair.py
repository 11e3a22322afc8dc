"""The fair protocol: :class:`FairProtocol` (an equal budget for every arm), its selection rule
:func:`select_fair_lr`, and the declared instances :data:`FAIR`, :data:`QUICK` and :data:`QUICK_SMOKE`.

* :class:`FairProtocol` — lr = base × 2^k, k ∈ {−4, …, 3}, a grid-edge extension rule, tuning seed(s) disjoint
  from ≥ 3 reporting seeds, one WSD schedule for all arms (an arm may declare its own), selection on the final
  validation metric, reporting on test. Hybrid arms' aux AdamW uses the tuned AdamW lr.
* :data:`QUICK` / :data:`QUICK_SMOKE` — the embedded ``andi-bench quick`` demonstration: the fair procedure with a
  reduced but equal 3-point grid (base × 4^k, k ∈ {−1, 0, 1}), 1 tuning and 2 reporting seeds and short runs (too
  few seeds for evidence; the report says so).

Every number that decides what gets run is a frozen dataclass field with its source (``docs/design/protocol.md``).
Imports: :mod:`andi.bench.protocols.arms`, :mod:`andi.bench.protocols.replay` (the reserved seeds and paper tasks),
:mod:`andi.bench.protocols.run_config` (lazily).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

from andi.bench.protocols.arms import CORE_ARMS, FAMILY_ARMS, ArmSpec, lookup
from andi.bench.protocols.replay import PAPER_TASKS, SEEDS

if TYPE_CHECKING:
    from andi.bench.protocols.run_config import RunConfig

__all__ = ["FAIR", "QUICK", "QUICK_SMOKE", "FairProtocol", "select_fair_lr"]


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
    #: ``(arm, n)``: that arm tunes on the first ``n`` tuning seeds only (every other arm on all of them).
    tuning_seed_counts: tuple[tuple[str, int], ...] = ()
    #: After the edge rule, the winner's neighbours ``winner × r`` and ``winner / r`` are tuned too and the winner
    #: re-selected (``√2`` halves the factor-2 grid's spacing around it); ``None``: no refinement.
    refine_factor: float | None = None

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
        for arm, n in self.tuning_seed_counts:
            if arm not in names:
                raise ValueError(f"tuning_seed_counts names {arm!r}, which is not one of the arms {names}")
            if not 1 <= n <= len(self.tuning_seeds):
                raise ValueError(
                    f"arm {arm!r}: {n} tuning seeds; need 1 to {len(self.tuning_seeds)} (the first n of "
                    f"{self.tuning_seeds})"
                )
        if self.refine_factor is not None and not 1 < self.refine_factor < self.factor:
            raise ValueError(
                f"refine_factor must lie strictly between 1 and the grid factor {self.factor:g}, "
                f"got {self.refine_factor}"
            )
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

    def refinement(self, explored: Sequence[float], winner: float) -> tuple[float, ...]:
        """The points ``winner × r`` and ``winner / r`` (``r`` = :attr:`refine_factor`) not explored yet, ascending;
        empty when refinement is off."""
        if self.refine_factor is None:
            return ()
        near = (winner / self.refine_factor, winner * self.refine_factor)
        return tuple(x for x in near if not any(math.isclose(x, e, rel_tol=1e-9) for e in explored))

    def steps_for(self, task: str) -> int | None:
        return lookup(self.task_steps, task, None)

    def batch_size_for(self, task: str) -> int | None:
        return lookup(self.task_batch_size, task, None)

    def budget(self, arm: ArmSpec | str | None = None) -> int:
        """Declared tuning trials of ``arm`` (the most of any arm when ``None``) per task before any edge extension
        or refinement."""
        seeds = len(self.tuning_seeds) if arm is None else len(self.tuning_seeds_for(arm))
        return len(self.ks) * seeds

    def tuning_seeds_for(self, arm: ArmSpec | str) -> tuple[int, ...]:
        """The tuning seeds of ``arm``: all of them, or the first ``n`` where ``tuning_seed_counts`` says so."""
        name = arm.name if isinstance(arm, ArmSpec) else arm
        n = lookup(self.tuning_seed_counts, name, len(self.tuning_seeds))
        return self.tuning_seeds[:n]

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
        from andi.bench.protocols.run_config import RunConfig

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


_STUDY_FIELDS = (
    "edge_extension_rounds",
    "reporting_seed_counts",
    "default_arms",
    "default_size",
    "tuning_seed_counts",
    "refine_factor",
)
_STUDY_FIELD_DEFAULTS = {f.name: f.default for f in fields(FairProtocol) if f.name in _STUDY_FIELDS}

#: The fair protocol: core and family arms (``andi-bench run`` runs the core arms unless asked for more).
FAIR = FairProtocol()

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
