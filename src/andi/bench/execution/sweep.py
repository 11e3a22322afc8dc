"""Execute protocols: plans (:mod:`andi.bench.protocols.plans`) through an executor
(:mod:`andi.bench.execution.executors`), one JSON record per run in a results directory
(:mod:`andi.bench.execution.store`), resumable and safe to share.

The flow is one way. A plan yields a stage of configs; :class:`Sweep` runs the union of the current stages of
all plans (every task at once) and sends each plan its records; a plan's return value is its manifest, which
the sweep merges into ``manifest-<protocol>-<task>-<size>.json`` under a lock. The plans know no executor and
the executors know no results directory: the sweep alone reads, claims and writes.

For each config the sweep

1. reuses a valid record already on disk (a corrupt one is moved aside and the run recomputed);
2. claims the run (``<key>.claim``, :mod:`andi.bench.execution.claims`) just before an executor slot starts it; a run
   claimed by a live process elsewhere is left to it: the sweep runs the rest, then waits (polling, bounded by
   the claim timeout) for its record, and takes the claim over if it goes stale. A record that appeared
   meanwhile always wins over computing;
3. validates the record the worker hands back, adds ``execution`` (executor, workers, host, threads, packed)
   and writes it atomically, then removes the claim.

A run that raises is retried once (a worker killed mid-run counts as raising); if it fails again, a *failed*
record with its traceback is written, which the protocol scores like a diverged run, the report shows as
failed, and the next invocation recomputes. A missing or corrupt dataset stops the sweep instead (it would
fail every run). Any other exception, or an interrupt, stops the sweep with its claims released.

Progress is one bar over every run of the sweep: done, running and left, per arm, with an ETA (off with
``CI=true`` or when stderr is not a terminal).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from andi.bench.errors import SetupError
from andi.bench.execution.claims import DEFAULT_CLAIM_TIMEOUT_S, Claims
from andi.bench.execution.executors import Executor, Outcome, RunSpec, SerialExecutor, resolve_run_fn
from andi.bench.execution.store import (
    MANIFEST_SCHEMA,
    RECORD_SCHEMA,
    ResultStore,
    _json_normal,
    merge_manifest,
    validate_record,
)
from andi.bench.paper_claims import claims_sha256
from andi.bench.protocols import FairProtocol, ReplayProtocol
from andi.bench.protocols.plans import Plan, fair_plan, planned_runs, replay_plan
from andi.bench.util import final_value, progress_bar  # noqa: F401 (final_value: callers import it from here)

if TYPE_CHECKING:
    from andi.bench.execution.runner import RunConfig

__all__ = [
    "MANIFEST_SCHEMA",
    "RECORD_SCHEMA",
    "ResultStore",
    "Sweep",
    "TaskInfo",
    "drive",
    "progress_enabled",
    "run_fair",
    "run_protocol",
    "run_replay",
    "validate_record",
]

logger = logging.getLogger("andi.bench")

RunFn = Callable[..., dict]
#: A failing run is attempted this many times in all (the first try and one retry).
ATTEMPTS = 2


def progress_enabled(requested: bool | None = None) -> bool:
    """Progress bars: on when asked, else only on an interactive stderr and outside CI."""
    if requested is not None:
        return requested
    if os.environ.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


@dataclass(frozen=True)
class TaskInfo:
    """What a protocol needs to know about a task before running it."""

    default_steps: int


class _Progress:
    """One bar over the runs of a sweep: done / running / left and per-arm counts in the postfix."""

    def __init__(self, enabled: bool, desc: str = "sweep") -> None:
        self.enabled, self.desc = enabled, desc
        self.bar: Any = None
        self.expected: Counter[tuple[str, str]] = Counter()  # (task, arm) -> runs
        self.seen: Counter[tuple[str, str]] = Counter()
        self.done: Counter[str] = Counter()  # arm -> finished runs
        self.running = 0
        self.arm_of: dict[str, tuple[str, str]] = {}

    def plan(self, task: str, runs: Mapping[str, int]) -> None:
        for arm, n in runs.items():
            self.expected[(task, arm)] += n

    def stage(self, configs: Sequence[RunConfig], arms: Sequence[str] | None) -> None:
        """Register the runs about to be executed; the total grows where a stage exceeds the plan."""
        for i, cfg in enumerate(configs):
            key = cfg.key()
            if key in self.arm_of:
                continue
            where = (cfg.task, arms[i] if arms else cfg.optimizer)
            self.arm_of[key] = where
            self.seen[where] += 1
            self.expected[where] = max(self.expected[where], self.seen[where])
        total = sum(self.expected.values())
        if self.bar is None:
            self.bar = progress_bar(total, self.desc, enabled=self.enabled, unit="run")
        elif getattr(self.bar, "total", total) != total:
            self.bar.total = total
        self._show()

    def start(self, cfg: RunConfig) -> None:
        self.running += 1
        self._show()

    def abandon(self, cfg: RunConfig) -> None:
        """A started run that will be started again (a retry)."""
        self.running -= 1
        self._show()

    def finish(self, cfg: RunConfig, *, ran: bool) -> None:
        self.running -= ran
        self.done[self.arm_of.get(cfg.key(), (cfg.task, cfg.optimizer))[1]] += 1
        self._show()
        if self.bar is not None:
            self.bar.update(1)

    def _show(self) -> None:
        if self.bar is None or not self.enabled:
            return
        total = sum(self.expected.values())
        done = sum(self.done.values())
        per_arm: Counter[str] = Counter()
        for (_, arm), n in self.expected.items():
            per_arm[arm] += n
        arms = " ".join(f"{arm} {self.done[arm]}/{n}" for arm, n in per_arm.items())
        self.bar.set_postfix_str(
            f"{done} done, {self.running} running, {total - done - self.running} left | {arms}", refresh=False
        )

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        self.bar = None


class Sweep:
    """Runs configs through an executor with resume-by-key and claims, counting computed and reused runs.

    ``run_fn(config, *, data_root=..., progress=...) -> record`` defaults to :func:`andi.bench.execution.runner.run`
    (imported on first use; see :func:`~andi.bench.execution.executors.resolve_run_fn`). ``executor`` defaults to a
    :class:`~andi.bench.execution.executors.SerialExecutor`; the sweep closes it in :meth:`close` (or at the end of a
    ``with`` block). ``claim_timeout`` is the age after which any claim is stale (seconds); ``poll_s`` the
    first pause between checks of runs claimed elsewhere (backing off to 10 s). Corrupt records met on the way
    are listed in ``sweep.store.corrupt`` (and recomputed); keys of runs that failed twice in ``sweep.failed``.
    """

    def __init__(
        self,
        results_dir: str | os.PathLike[str],
        *,
        run_fn: RunFn | None = None,
        data_root: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        task_info: Callable[[str, str], TaskInfo] | None = None,
        executor: Executor | None = None,
        claim_timeout: float = DEFAULT_CLAIM_TIMEOUT_S,
        poll_s: float = 0.5,
    ) -> None:
        self.store = ResultStore(results_dir, corrupt_note="the run will be recomputed")
        self._run_fn = run_fn
        self.data_root = data_root
        self.progress = progress_enabled(progress)
        self._task_info = task_info
        self.executor = executor if executor is not None else SerialExecutor()
        self.claims = Claims(self.store.root, timeout_s=claim_timeout, executor=self.executor.name)
        self.poll_s = poll_s
        self.computed = 0
        self.reused = 0
        self.failed: list[str] = []
        self.started = time.time()
        self._bar: _Progress | None = None

    @property
    def run_fn(self) -> RunFn:
        if self._run_fn is None:
            self._run_fn = resolve_run_fn()
        return self._run_fn

    def task_info(self, task: str, size: str) -> TaskInfo:
        if self._task_info is not None:
            return self._task_info(task, size)
        from andi.bench.tasks import get_task

        return TaskInfo(default_steps=int(get_task(task, size=size, data_root=self.data_root).default_steps))

    def close(self) -> None:
        """Release the executor's workers and any claim still held."""
        self.claims.close()
        self.executor.close()

    def __enter__(self) -> Sweep:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------------------- running
    def run(self, config: RunConfig) -> dict:
        """The record of ``config``: from disk when a valid one exists, else computed and stored."""
        return self.run_many([config])[0]

    def run_many(self, configs: Sequence[RunConfig], desc: str = "", arms: Sequence[str] | None = None) -> list[dict]:
        """Records of ``configs`` in order (each distinct config computed at most once); ``arms`` name the arm
        of each config for the progress bar (default: its optimizer)."""
        own = self._bar is None
        if own:
            self._bar = _Progress(self.progress, desc or "runs")
        try:
            self._bar.stage(configs, arms)
            by_key = self._execute(list({c.key(): c for c in configs}.values()))
        finally:
            if own:
                self._bar.close()
                self._bar = None
        return [by_key[c.key()] for c in configs]

    @contextlib.contextmanager
    def _progress(self, desc: str) -> Iterator[_Progress]:
        self._bar = _Progress(self.progress, desc)
        try:
            yield self._bar
        finally:
            self._bar.close()
            self._bar = None

    def _finished(self, config: RunConfig) -> dict | None:
        """The stored record to use for ``config``: valid, and not a failure from before this sweep started."""
        record = self.store.load(config)
        if record is None or (record.get("status") == "failed" and record.get("failed_at", 0) < self.started):
            return None
        return record

    def _execute(self, configs: list[RunConfig]) -> dict[str, dict]:
        """Records of distinct ``configs`` by key: reused, computed (claimed first), or awaited from another
        process; failing runs are retried once, then stored as failed."""
        assert self._bar is not None
        bar = self._bar
        results: dict[str, dict] = {}
        errors: dict[str, list[str]] = {}
        todo, delay, waited = configs, self.poll_s, False
        spec = RunSpec(
            self.run_fn, None if self.data_root is None else str(self.data_root), self.progress and self.executor.inline
        )
        while todo:
            deferred: list[RunConfig] = []
            retry: list[RunConfig] = []

            def jobs(todo: list[RunConfig] = todo, deferred: list[RunConfig] = deferred) -> Iterator[RunConfig]:
                for cfg in todo:
                    record = self._finished(cfg)
                    if record is None:
                        if not self.claims.acquire(cfg.key()):
                            deferred.append(cfg)
                            continue
                        record = self._finished(cfg)  # written between the check and the claim: it wins
                        if record is None:
                            bar.start(cfg)
                            yield cfg
                            continue
                        self.claims.release(cfg.key())
                    self.reused += 1
                    results[cfg.key()] = record
                    bar.finish(cfg, ran=False)

            ran = False
            try:
                with contextlib.closing(self.executor.run(jobs(), spec)) as outcomes:
                    for outcome in outcomes:
                        ran = True
                        cfg = outcome.config
                        key = cfg.key()
                        try:
                            if outcome.fatal is not None:
                                raise SetupError(outcome.fatal)
                            if outcome.record is not None:
                                results[key] = self._store_record(outcome)
                                self.computed += 1
                            else:
                                errors.setdefault(key, []).append(outcome.error or "unknown error")
                                if len(errors[key]) < ATTEMPTS:
                                    logger.warning(
                                        "run %s/%s lr=%g seed %d failed; retrying it once:\n%s",
                                        cfg.task,
                                        cfg.optimizer,
                                        cfg.lr,
                                        cfg.init_seed,
                                        _indent(errors[key][-1]),
                                    )
                                    retry.append(cfg)
                                else:
                                    results[key] = self._store_failure(outcome, errors[key])
                        finally:
                            self.claims.release(key)
                        if key in results:
                            bar.finish(cfg, ran=True)
                        else:
                            bar.abandon(cfg)
            finally:
                self.claims.release_all()
            todo = retry + deferred
            if deferred and not ran and not retry:
                holders = {h.describe() for h in map(self.claims.holder, (c.key() for c in deferred)) if h}
                log = logger.debug if waited else logger.info
                log("waiting for %d run(s) claimed by %s", len(deferred), "; ".join(sorted(holders)) or "?")
                waited = True
                time.sleep(delay)
                delay = min(delay * 1.5, 10.0)
            else:
                delay = self.poll_s
        return results

    def _execution(self, outcome: Outcome) -> dict[str, Any]:
        ex = self.executor
        return {
            "executor": ex.name,
            "workers": ex.capacity,
            "host": outcome.host,
            "threads": outcome.threads,
            "packed": ex.packed,
        }

    def _store_record(self, outcome: Outcome) -> dict:
        cfg = outcome.config
        problems = validate_record(outcome.record, cfg.key(), cfg.to_dict())
        if problems:
            raise RuntimeError(f"the runner returned an invalid record for {cfg}: {'; '.join(problems)}")
        record = {**outcome.record, "execution": self._execution(outcome)}  # type: ignore[dict-item]
        self.store.save(record)
        return _json_normal(record)

    def _store_failure(self, outcome: Outcome, errors: list[str]) -> dict:
        cfg = outcome.config
        logger.error(
            "run %s/%s lr=%g seed %d failed %d times; stored as failed (key %s):\n%s",
            cfg.task,
            cfg.optimizer,
            cfg.lr,
            cfg.init_seed,
            len(errors),
            cfg.key()[:12],
            _indent(errors[-1]),
        )
        record = {
            "schema": RECORD_SCHEMA,
            "key": cfg.key(),
            "config": cfg.to_dict(),
            "status": "failed",
            "error": errors[-1],
            "errors": errors,
            "attempts": len(errors),
            "failed_at": time.time(),
            "execution": self._execution(outcome),
        }
        self.store.save(record)
        self.failed.append(cfg.key())
        return _json_normal(record)

    # ----------------------------------------------------------------------------------------- manifests
    def write_manifest(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Merge ``manifest`` with the one on disk (arms this sweep did not run are kept) under its lock and
        write it, with the hash of the claims file the runs were made under (:mod:`andi.bench.paper_claims`);
        returns what was written."""
        manifest = {**manifest, "claims_sha256": claims_sha256()}
        path = self.store.manifest_path(manifest["protocol"], manifest["task"], manifest["size"])
        self.store.root.mkdir(parents=True, exist_ok=True)
        with self.claims.locked(path.name):
            manifest = merge_manifest(self.store, manifest)
            self.store.write_manifest(manifest)
        return manifest


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip().splitlines())


# ============================================================================================= protocols
def drive(
    plans: Mapping[str, Plan],
    sweep: Sweep,
    *,
    planned: Mapping[str, Mapping[str, int]] | None = None,
    desc: str = "sweep",
) -> dict[str, dict[str, Any]]:
    """Run ``plans`` (by task) together: each round executes the union of every unfinished plan's next stage.

    Each manifest is written (merged) as soon as its plan returns; returns them by task. ``planned`` (runs per
    arm, by task) sizes the progress bar from the start.
    """
    manifests: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] = {}
    with sweep._progress(desc) as bar:
        for task, runs in (planned or {}).items():
            bar.plan(task, runs)

        def advance(task: str, records: list[dict] | None) -> None:
            try:
                current[task] = next(plans[task]) if records is None else plans[task].send(records)
            except StopIteration as done:
                current.pop(task, None)
                manifests[task] = sweep.write_manifest(done.value)
                logger.info(
                    "%s/%s done (%d runs computed, %d reused so far)",
                    done.value["protocol"],
                    task,
                    sweep.computed,
                    sweep.reused,
                )

        for task in plans:
            advance(task, None)
        while current:
            tasks = list(current)
            configs = [c for t in tasks for c in current[t].configs]
            arms = [a for t in tasks for a in current[t].arms]
            records = sweep.run_many(configs, arms=arms)
            i = 0
            for task in tasks:
                n = len(current[task].configs)
                advance(task, records[i : i + n])
                i += n
    return {task: manifests[task] for task in plans}


def run_replay(
    protocol: ReplayProtocol,
    task: str,
    sweep: Sweep,
    *,
    size: str = "full",
    steps: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """The paper's protocol on one task (:func:`andi.bench.protocols.plans.replay_plan`); returns (and writes) its
    manifest."""
    return run_protocol(protocol, sweep, tasks=[task], size=size, steps=steps, device=device, dtype=dtype)[0]


def run_fair(
    protocol: FairProtocol,
    task: str,
    sweep: Sweep,
    *,
    size: str = "cpu",
    arms: Sequence[str] | None = None,
    steps: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> dict[str, Any]:
    """The fair protocol on one task (:func:`andi.bench.protocols.plans.fair_plan`); returns (and writes) its
    manifest."""
    return run_protocol(protocol, sweep, tasks=[task], size=size, arms=arms, steps=steps, device=device, dtype=dtype)[0]


def run_protocol(
    protocol: FairProtocol | ReplayProtocol,
    sweep: Sweep,
    *,
    tasks: Sequence[str] | None = None,
    size: str,
    arms: Sequence[str] | None = None,
    steps: int | None = None,
    device: str = "cpu",
    dtype: str = "float32",
) -> list[dict[str, Any]]:
    """Run ``protocol`` on every task together (default: the protocol's tasks); returns the manifests in task
    order."""
    tasks = list(dict.fromkeys(tasks if tasks is not None else protocol.tasks))
    plans: dict[str, Plan] = {}
    for task in tasks:
        if isinstance(protocol, ReplayProtocol):
            if arms is not None:
                raise ValueError("the replay protocol has fixed arms; --optimizers does not apply to it")
            default = None if steps is not None or size == "full" else sweep.task_info(task, size).default_steps
            plans[task] = replay_plan(
                protocol, task, size=size, default_steps=default, steps=steps, device=device, dtype=dtype
            )
        else:
            plans[task] = fair_plan(protocol, task, size=size, arms=arms, steps=steps, device=device, dtype=dtype)
    planned = {task: planned_runs(protocol, arms) for task in tasks}
    manifests = drive(plans, sweep, planned=planned, desc=f"{protocol.name} {','.join(tasks)}")
    return [manifests[t] for t in tasks]
