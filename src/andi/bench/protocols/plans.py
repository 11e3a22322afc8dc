"""Plans: a protocol on one task as a sequence of stages of runs, each decided from the records of the previous.

A plan is a generator. It yields a :class:`Stage` (the :class:`~andi.bench.execution.runner.RunConfig` objects to run
next), receives their records through ``send`` (a list aligned with ``stage.configs``) and finally returns the
task's manifest (the ``StopIteration`` value). It knows no process, no file and no executor; selection uses
the pure rules of :mod:`andi.bench.protocols`. :mod:`andi.bench.execution.sweep` drives plans: it runs the union of the
current stages of all plans (so several tasks fill the workers together) and sends each plan its records.

Stages are as wide as the protocol allows, so that parallel executors have work:

* fair: AdamW (the reference arm) and every non-hybrid arm tune at once; as soon as AdamW's lr is chosen (after
  its edge extension, if any), the hybrid arms, whose aux lr it is, start tuning, in the same stage as AdamW's
  reporting runs; each arm's edge extension rounds and reporting runs follow its own selection. Each arm's
  procedure is exactly the sequential one (:func:`fair_plan`), so the manifest is the same as a one-run-at-a-time
  sweep's.
* replay: the ANDI lr search and the fixed arms' runs in one stage, then the winner on every seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from andi.bench.protocols.arms import ArmSpec
from andi.bench.protocols.fair import FairProtocol
from andi.bench.protocols.replay import ReplayProtocol
from andi.bench.util import final_value, finite_or_none

if TYPE_CHECKING:
    from andi.bench.protocols.run_config import RunConfig

__all__ = ["MANIFEST_SCHEMA", "Plan", "Stage", "fair_plan", "planned_runs", "replay_plan"]

#: Version of the manifest a plan returns (``"manifest"`` key); :mod:`andi.bench.execution.store` checks it on load.
MANIFEST_SCHEMA = 1

logger = logging.getLogger("andi.bench")


@dataclass
class Stage:
    """Runs a plan needs next: ``configs`` and the arm each belongs to (for progress), on ``task``."""

    task: str
    configs: list[RunConfig]
    arms: list[str] = field(default_factory=list)


#: A plan: yields stages, is sent each stage's records, returns the task's manifest.
Plan = Generator[Stage, list[dict], dict[str, Any]]
_ArmSteps = Generator[list["RunConfig"], list[dict], dict[str, Any]]


def _mean_score(records: Sequence[dict]) -> float | None:
    """Mean final validation metric over tuning seeds; any failed seed fails the grid point."""
    vals = [final_value(r) for r in records]
    if not vals or any(v is None for v in vals):
        return None
    return sum(vals) / len(vals)  # type: ignore[arg-type]


def _higher_is_better(record: dict, task: str) -> bool:
    """From the record; a failed record has no metric block, so then from the task's declaration."""
    final = record.get("final")
    if isinstance(final, dict) and isinstance(final.get("higher_is_better"), bool):
        return final["higher_is_better"]
    from andi.bench.tasks import find_task_class

    cls = find_task_class(task)
    return bool(cls.higher_is_better) if cls is not None else False


# ================================================================================================== fair
def _fair_arm(
    protocol: FairProtocol,
    arm: ArmSpec,
    task: str,
    aux_lr: float | None,
    on_chosen: Callable[[ArmSpec, float], None],
    **run: Any,
) -> _ArmSteps:
    """One arm of the fair protocol: grid, selection, edge rule, reporting seeds; returns its manifest entry.

    The edge rule runs in rounds: while the winner sits at an edge of every lr explored so far and fewer than
    ``protocol.edge_extension_rounds`` rounds have run, ``protocol.extension`` points beyond that edge are tuned and
    the winner re-selected. ``edge_capped`` marks a winner still at an edge when the rounds ran out."""

    tuning_seeds = protocol.tuning_seeds_for(arm)

    def tuning_configs(lrs: Sequence[float]) -> list[RunConfig]:
        return [
            protocol.config(arm, task, lr, s, split="val", aux_lr=aux_lr, **run) for lr in lrs for s in tuning_seeds
        ]

    def trials(lrs: Sequence[float], recs: list[dict]) -> list[dict[str, Any]]:
        n = len(tuning_seeds)
        return [
            {
                "lr": lr,
                "keys": [r["key"] for r in recs[i * n : (i + 1) * n]],
                "score": _mean_score(recs[i * n : (i + 1) * n]),
                "higher_is_better": _higher_is_better(recs[i * n], task),
            }
            for i, lr in enumerate(lrs)
        ]

    grid = protocol.grid(arm, task)
    tuning = trials(grid, (yield tuning_configs(grid)))
    hib = tuning[0]["higher_is_better"]
    chosen = tuning[protocol.select([t["score"] for t in tuning], hib)]["lr"]
    extension: list[float] = []
    rounds = 0
    while rounds < protocol.edge_extension_rounds:
        ext = protocol.extension([t["lr"] for t in tuning], chosen)
        if not ext:
            break
        rounds += 1
        logger.info(
            "%s/%s: winner lr %.4g at a grid edge; extension round %d/%d with %s",
            task,
            arm.name,
            chosen,
            rounds,
            protocol.edge_extension_rounds,
            ", ".join(f"{x:.4g}" for x in ext),
        )
        extension += ext
        tuning += trials(ext, (yield tuning_configs(ext)))
        tuning.sort(key=lambda t: t["lr"])
        chosen = tuning[protocol.select([t["score"] for t in tuning], hib)]["lr"]
    refinement = list(protocol.refinement([t["lr"] for t in tuning], chosen))
    if refinement:
        tuning += trials(refinement, (yield tuning_configs(refinement)))
        tuning.sort(key=lambda t: t["lr"])
        chosen = tuning[protocol.select([t["score"] for t in tuning], hib)]["lr"]
    on_chosen(arm, chosen)
    all_lrs = [t["lr"] for t in tuning]
    at_edge = chosen in (min(all_lrs), max(all_lrs))
    capped = at_edge and rounds == protocol.edge_extension_rounds and protocol.edge_extension > 0
    if capped:
        logger.warning(
            "%s/%s: winner lr %.4g still at the edge after %d extension round(s), the cap: marked edge_capped",
            task,
            arm.name,
            chosen,
            rounds,
        )
    seeds = protocol.reporting_seeds_for(arm)
    reporting = yield [protocol.config(arm, task, chosen, s, split="test", aux_lr=aux_lr, **run) for s in seeds]
    return {
        "arm": arm.name,
        "label": arm.display,
        "optimizer": arm.optimizer,
        "roles": arm.roles,
        "hybrid": arm.hybrid,
        "aux_lr": aux_lr,
        "grid": list(grid),
        "extension": extension,
        "edge_extended": bool(extension),
        "extension_rounds": rounds,
        **({"refinement": refinement} if protocol.refine_factor else {}),
        **({"tuning_seeds": list(tuning_seeds)} if protocol.tuning_seed_counts else {}),
        "at_edge": at_edge,
        "edge_capped": capped,
        "trials": sum(len(t["keys"]) for t in tuning),
        "tuning": tuning,
        "chosen_lr": chosen,
        "seeds": list(seeds),
        "reporting": [r["key"] for r in reporting],
        "source": arm.source,
    }


def fair_plan(
    protocol: FairProtocol,
    task: str,
    *,
    size: str = "cpu",
    arms: Sequence[str] | None = None,
    steps: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> Plan:
    """The fair protocol on one task (AdamW added when not requested: hybrid arms need its lr, the report its
    target). Per arm: the declared grid on the tuning seeds, selection on the mean final validation metric, the
    edge rule (in rounds), then the winner on its reporting seeds with the test split. Returns the manifest, which
    also holds the task's model hyperparameters at ``size`` (``task_model``, e.g. the width of a ``gpt-w*`` task)."""
    steps = steps if steps is not None else protocol.steps_for(task)
    ordered = protocol.ordered_arms(arms)
    if arms is not None and protocol.reference_arm not in arms:
        logger.info(
            "adding %r: it sets the aux lr of hybrid arms and the time-to-target target", protocol.reference_arm
        )
    run = {"size": size, "steps": steps, "device": device, "dtype": dtype}
    procedures: dict[str, _ArmSteps] = {}
    requests: dict[str, list[RunConfig]] = {}
    entries: dict[str, dict[str, Any]] = {}
    aux: dict[str, float] = {}

    def note_choice(arm: ArmSpec, lr: float) -> None:
        if arm.name == protocol.reference_arm:
            aux["lr"] = lr

    def start(arm: ArmSpec) -> None:
        procedures[arm.name] = _fair_arm(protocol, arm, task, aux.get("lr") if arm.hybrid else None, note_choice, **run)
        requests[arm.name] = next(procedures[arm.name])

    waiting = [a for a in ordered if a.hybrid and a.name != protocol.reference_arm]
    for arm in ordered:
        if arm not in waiting:
            start(arm)
    while requests:
        names = list(requests)
        records = yield Stage(task, [c for n in names for c in requests[n]], [n for n in names for _ in requests[n]])
        i = 0
        for name in names:
            part, i = records[i : i + len(requests[name])], i + len(requests[name])
            try:
                requests[name] = procedures[name].send(part)
            except StopIteration as done:
                del requests[name]
                entries[name] = done.value
        if "lr" in aux and waiting:
            for arm in waiting:
                start(arm)
            waiting = []
    return {
        "manifest": MANIFEST_SCHEMA,
        "kind": "fair",
        "protocol": protocol.name,
        "task": task,
        "size": size,
        "steps": steps,
        "device": device,
        "dtype": dtype,
        "spec": protocol.to_dict(),
        "seeds": list(protocol.reporting_seeds),
        "reference_arm": protocol.reference_arm,
        "task_model": _task_model(task, size),
        "arms": [entries[a.name] for a in ordered],
    }


def _task_model(task: str, size: str) -> dict[str, Any] | None:
    """The declared model hyperparameters of ``task`` at ``size`` (no data loaded); ``None`` for an unknown task."""
    from andi.bench.tasks import find_task_class

    cls = find_task_class(task)
    spec = cls.sizes.get(size) if cls is not None else None
    return dict(spec.model) if spec is not None else None


# ================================================================================================ replay
def replay_plan(
    protocol: ReplayProtocol,
    task: str,
    *,
    size: str = "full",
    default_steps: int | None = None,
    steps: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> Plan:
    """The paper's protocol on one task: the ANDI grid on the search seed and the fixed arms on every seed, then
    the winner of :func:`~andi.bench.protocols.select_replay_lr` on every seed (its search-seed run is the same
    config, so its record is reused, as the script reuses the seed-42 result in its curve). ``default_steps``
    is the task's step count at ``size`` (unused at ``full``). Returns the manifest."""
    steps, every = protocol.resolve(size, default_steps, steps)

    def cfg(arm: str, lr: float, seed: int) -> RunConfig:
        return protocol.config(
            arm, task, lr, seed, size=size, steps=steps, record_every=every, device=device, dtype=dtype
        )

    andi = protocol.andi_optimizer
    fixed = [a for a in protocol.arms if a != andi]
    search = [cfg(andi, lr, protocol.search_seed) for lr in protocol.andi_grid]
    fixed_runs = [cfg(a, protocol.fixed_lr(a, task), s) for a in fixed for s in protocol.seeds]
    records = yield Stage(task, search + fixed_runs, [andi] * len(search) + [a for a in fixed for _ in protocol.seeds])
    search_recs, n = records[: len(search)], len(protocol.seeds)
    reporting = {a: records[len(search) + i * n : len(search) + (i + 1) * n] for i, a in enumerate(fixed)}
    winner = protocol.andi_grid[protocol.select(search_recs)]
    reporting[andi] = yield Stage(task, [cfg(andi, winner, s) for s in protocol.seeds], [andi] * n)

    arms = []
    for arm in protocol.arms:
        if arm == andi:
            lr, grid = winner, list(protocol.andi_grid)
            tuning = [{"lr": g, "keys": [r["key"]], "score": _last_loss(r)} for g, r in zip(grid, search_recs)]
        else:
            lr, grid, tuning = protocol.fixed_lr(arm, task), [protocol.fixed_lr(arm, task)], []
        arms.append(
            {
                "arm": arm,
                "label": protocol.label(arm),
                "optimizer": arm,
                "roles": protocol.roles,
                "hybrid": False,
                "aux_lr": None,
                "grid": grid,
                "extension": [],
                "edge_extended": False,
                "at_edge": len(grid) > 1 and lr in (min(grid), max(grid)),
                "trials": len(tuning),
                "tuning": tuning,
                "chosen_lr": lr,
                "reporting": [r["key"] for r in reporting[arm]],
            }
        )
    return {
        "manifest": MANIFEST_SCHEMA,
        "kind": "replay",
        "protocol": protocol.name,
        "task": task,
        "size": size,
        "steps": steps,
        "record_every": every,
        "device": device,
        "dtype": dtype,
        "spec": protocol.to_dict(),
        "seeds": list(protocol.seeds),
        "arms": arms,
    }


def _last_loss(record: dict) -> float | None:
    """The last recorded training loss, ``None`` if there is none (diverged at once, or a failed run)."""
    losses = (record.get("train") or {}).get("loss") or []
    return finite_or_none(losses[-1]) if losses else None


# ============================================================================================== planning
def planned_runs(protocol: FairProtocol | ReplayProtocol, arms: Sequence[str] | None = None) -> dict[str, int]:
    """Runs per arm and task a plan declares before any edge extension (for progress: the total grows when an
    extension is run)."""
    if isinstance(protocol, ReplayProtocol):
        n = len(protocol.seeds)
        return {a: (len(protocol.andi_grid) + n if a == protocol.andi_optimizer else n) for a in protocol.arms}
    return {a.name: protocol.budget(a) + len(protocol.reporting_seeds_for(a)) for a in protocol.ordered_arms(arms)}
