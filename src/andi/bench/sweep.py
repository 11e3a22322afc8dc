"""Execute protocols: grid × seeds through the runner, one JSON record per run, resumable.

Each run is stored as ``<results_dir>/<config.key()>.json`` (written to a temporary file, fsynced, then
atomically renamed), so an interrupted sweep leaves only complete records behind. On restart a run whose
record exists *and validates* (schema, key and config match, required fields present) is reused; a corrupt or
partial file is logged with its path, moved aside to ``<key>.json.corrupt`` (``.corrupt.1``, ``.corrupt.2``,
… when earlier copies are there: none is overwritten) and recomputed — never used. Files are written with the
permissions of any other file (``0o666 & ~umask``), so the results are as readable as the report.

After a task finishes, a manifest ``manifest-<protocol>-<task>-<size>.json`` records what the protocol
decided (grids, edge extensions, tuning scores, chosen lr, reporting run keys). :mod:`andi.bench.report`
reads manifests and records; everything it prints can be recomputed from them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi.bench.files import atomic_write_text, quarantine_path
from andi.bench.protocol import FairProtocol, ReplayProtocol
from andi.bench.util import final_value, finite_or_none, progress_bar

if TYPE_CHECKING:
    from andi.bench.runner import RunConfig

__all__ = [
    "MANIFEST_SCHEMA",
    "RECORD_SCHEMA",
    "ResultStore",
    "Sweep",
    "TaskInfo",
    "progress_enabled",
    "run_fair",
    "run_protocol",
    "run_replay",
    "validate_record",
]

logger = logging.getLogger("andi.bench")

RECORD_SCHEMA = 1
MANIFEST_SCHEMA = 1
_MANIFEST_PREFIX = "manifest-"

RunFn = Callable[..., dict]


# ============================================================================================ validation
def _json_normal(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


def _is_num(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_record(
    record: Any, expected_key: str | None = None, expected_config: Mapping[str, Any] | None = None
) -> list[str]:
    """Problems that make ``record`` unusable (empty list = valid), per the runner's record contract."""
    if not isinstance(record, dict):
        return [f"record is a {type(record).__name__}, not an object"]
    problems = []
    if record.get("schema") != RECORD_SCHEMA:
        problems.append(f"schema is {record.get('schema')!r}, expected {RECORD_SCHEMA}")
    key = record.get("key")
    if not isinstance(key, str):
        problems.append("missing key")
    elif expected_key is not None and key != expected_key:
        problems.append(f"key {key[:12]}… does not match the expected {expected_key[:12]}…")
    if expected_config is not None and record.get("config") != _json_normal(dict(expected_config)):
        problems.append("config differs from the requested run")
    if not isinstance(record.get("config"), dict):
        problems.append("missing config")
    if record.get("status") not in ("ok", "diverged"):
        problems.append(f"status is {record.get('status')!r}")
    train = record.get("train")
    if not isinstance(train, dict) or not isinstance(train.get("steps"), list):
        problems.append("missing train curve")
    elif len(train["steps"]) != len(train.get("loss") or []):
        problems.append("train steps and losses differ in length")
    ev = record.get("eval")
    if not isinstance(ev, dict):
        problems.append("missing eval")
    else:
        n_eval = len(ev.get("steps") or [])
        for name, vals in ev.items():
            if not isinstance(vals, list) or len(vals) != n_eval:
                problems.append(f"eval[{name!r}] is not a list aligned with eval steps")
    final = record.get("final")
    if not isinstance(final, dict) or not isinstance(final.get("metric"), str):
        problems.append("missing final metric")
    else:
        if not isinstance(final.get("higher_is_better"), bool):
            problems.append("final.higher_is_better is not a bool")
        if final.get("value") is not None and not _is_num(final["value"]):
            problems.append("final.value is not a number")
    timing = record.get("timing")
    if not isinstance(timing, dict) or not _is_num(timing.get("total_s")):
        problems.append("missing timing")
    elif isinstance(ev, dict) and len(timing.get("cumulative_train_s") or []) != len(ev.get("steps") or []):
        problems.append("timing.cumulative_train_s is not aligned with eval steps")
    memory = record.get("memory")
    if not isinstance(memory, dict) or not isinstance(memory.get("state_bytes"), int):
        problems.append("missing memory.state_bytes")
    return problems


# ================================================================================================= store
class ResultStore:
    """A results directory: one ``<key>.json`` per run plus ``manifest-*.json`` files.

    ``corrupt_note`` ends the warning logged for a corrupt record and says what the caller does about it
    (a sweep recomputes the run, a report leaves it out), so the warning never promises what won't happen.
    """

    def __init__(self, root: str | os.PathLike[str], *, corrupt_note: str = "it is not used") -> None:
        self.root = Path(root)
        self.corrupt_note = corrupt_note
        self.corrupt: list[Path] = []  # files found corrupt (and moved aside when possible) by this object

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def _read(self, path: Path, expected_key: str | None, expected_config: Mapping | None) -> dict | None:
        """The validated record at ``path``; ``None`` if absent. Corrupt files are reported and moved aside."""
        if not path.exists():
            return None
        try:
            with open(path, encoding="utf-8") as f:
                record = json.load(f)
            problems = validate_record(record, expected_key, expected_config)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            problems = [f"unreadable JSON ({e})"]
        if not problems:
            return record
        aside = quarantine_path(path)
        try:
            os.replace(path, aside)
            where = f"moved to {aside.name}"
        except OSError as e:  # e.g. a read-only results directory being reported on
            where = f"left in place (cannot move it aside: {e.strerror or e})"
        logger.warning("corrupt result file %s: %s; %s; %s", path, "; ".join(problems), where, self.corrupt_note)
        self.corrupt.append(path)
        return None

    def load(self, config: RunConfig) -> dict | None:
        """The stored record of ``config`` if present and valid."""
        key = config.key()
        return self._read(self.path(key), key, config.to_dict())

    def get(self, key: str) -> dict | None:
        """The stored record with ``key`` (validated against its key only)."""
        return self._read(self.path(key), key, None)

    def save(self, record: Mapping[str, Any]) -> Path:
        """Write ``record`` atomically (temporary file in the same directory, fsync, ``os.replace``)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return _atomic_write_json(self.path(record["key"]), record)

    def records(self) -> Iterator[dict]:
        """Every valid record in the directory (corrupt ones are reported and moved aside)."""
        for path in sorted(self.root.glob("*.json")):
            if not path.name.startswith(_MANIFEST_PREFIX):
                rec = self._read(path, path.stem, None)
                if rec is not None:
                    yield rec

    def manifest_path(self, protocol: str, task: str, size: str) -> Path:
        return self.root / f"{_MANIFEST_PREFIX}{protocol}-{task}-{size}.json"

    def write_manifest(self, manifest: Mapping[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.manifest_path(manifest["protocol"], manifest["task"], manifest["size"])
        return _atomic_write_json(path, manifest)

    def manifests(self) -> list[dict]:
        out = []
        for path in sorted(self.root.glob(f"{_MANIFEST_PREFIX}*.json")):
            try:
                with open(path, encoding="utf-8") as f:
                    m = json.load(f)
            except (OSError, json.JSONDecodeError) as e:
                logger.warning("unreadable manifest %s (%s): skipped", path, e)
                continue
            if not isinstance(m, dict) or m.get("manifest") != MANIFEST_SCHEMA:
                logger.warning("manifest %s has an unknown schema: skipped", path)
                continue
            out.append(m)
        return out


def _atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


# ================================================================================================= sweep
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


class Sweep:
    """Runs configs through ``run_fn`` with resume-by-key, counting computed and reused runs.

    Corrupt records met on the way are listed in ``sweep.store.corrupt`` (and recomputed).

    ``run_fn(config, *, data_root=..., progress=...) -> record`` defaults to :func:`andi.bench.runner.run`
    (imported on first use). Tests inject a fake one.
    """

    def __init__(
        self,
        results_dir: str | os.PathLike[str],
        *,
        run_fn: RunFn | None = None,
        data_root: str | os.PathLike[str] | None = None,
        progress: bool | None = None,
        task_info: Callable[[str, str], TaskInfo] | None = None,
    ) -> None:
        self.store = ResultStore(results_dir, corrupt_note="the run will be recomputed")
        self._run_fn = run_fn
        self.data_root = data_root
        self.progress = progress_enabled(progress)
        self._task_info = task_info
        self.computed = 0
        self.reused = 0

    @property
    def run_fn(self) -> RunFn:
        if self._run_fn is None:
            from andi.bench.runner import run

            self._run_fn = run
        return self._run_fn

    def task_info(self, task: str, size: str) -> TaskInfo:
        if self._task_info is not None:
            return self._task_info(task, size)
        from andi.bench.tasks import get_task

        return TaskInfo(default_steps=int(get_task(task, size=size, data_root=self.data_root).default_steps))

    def run(self, config: RunConfig) -> dict:
        """The record of ``config``: from disk when a valid one exists, else computed and stored."""
        record = self.store.load(config)
        if record is not None:
            self.reused += 1
            return record
        record = self.run_fn(config, data_root=self.data_root, progress=self.progress)
        problems = validate_record(record, config.key(), config.to_dict())
        if problems:
            raise RuntimeError(f"the runner returned an invalid record for {config}: {'; '.join(problems)}")
        self.store.save(record)
        self.computed += 1
        return _json_normal(record)

    def run_many(self, configs: Sequence[RunConfig], desc: str = "") -> list[dict]:
        """Records of ``configs`` in order, with one progress bar over them."""
        bar = progress_bar(len(configs), desc, enabled=self.progress, unit="run")
        out = []
        try:
            for cfg in configs:
                out.append(self.run(cfg))
                bar.update(1)
        finally:
            bar.close()
        return out


# ============================================================================================ protocols
def _mean_score(records: Sequence[Mapping[str, Any]]) -> float | None:
    """Mean final validation metric over tuning seeds; any failed seed fails the grid point."""
    vals = [final_value(r) for r in records]
    if not vals or any(v is None for v in vals):
        return None
    return sum(vals) / len(vals)  # type: ignore[arg-type]


def _merge_manifest(store: ResultStore, manifest: dict[str, Any]) -> dict[str, Any]:
    """Keep arms of an earlier manifest of the same protocol/task/size that this invocation did not run."""
    path = store.manifest_path(manifest["protocol"], manifest["task"], manifest["size"])
    if path.exists():
        try:
            with open(path, encoding="utf-8") as f:
                old = json.load(f)
        except (OSError, json.JSONDecodeError):
            old = None
        same = isinstance(old, dict) and all(
            old.get(k) == manifest.get(k) for k in ("manifest", "kind", "device", "dtype", "steps")
        ) and _json_normal({k: v for k, v in old.get("spec", {}).items() if k != "arms"}) == _json_normal(
            {k: v for k, v in manifest["spec"].items() if k != "arms"}
        )
        if same:
            names = {a["arm"] for a in manifest["arms"]}
            manifest["arms"] = [a for a in old["arms"] if a["arm"] not in names] + manifest["arms"]
    return manifest


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
    """The paper's protocol on one task; returns (and writes) its manifest.

    Stage 1 runs the ANDI grid on the search seed and the fixed arms on every seed; the winner of
    :func:`~andi.bench.protocol.select_replay_lr` then runs on every seed (its search-seed run is the
    same config, so the stored record is reused, as the script reuses the seed-42 result in its curve).
    """
    default_steps = None if steps is not None or size == "full" else sweep.task_info(task, size).default_steps
    steps, every = protocol.resolve(size, default_steps, steps)

    def cfg(arm: str, lr: float, seed: int) -> RunConfig:
        return protocol.config(arm, task, lr, seed, size=size, steps=steps, record_every=every,
                               device=device, dtype=dtype)

    arms = []
    search = [cfg(protocol.andi_optimizer, lr, protocol.search_seed) for lr in protocol.andi_grid]
    search_recs = sweep.run_many(search, desc=f"{task} replay: ANDI lr search")
    winner = protocol.andi_grid[protocol.select(search_recs)]
    for arm in protocol.arms:
        if arm == protocol.andi_optimizer:
            lr, grid = winner, list(protocol.andi_grid)
            tuning = [{"lr": g, "keys": [r["key"]], "score": finite_or_none(r["train"]["loss"][-1]
                       if r["train"]["loss"] else None)} for g, r in zip(protocol.andi_grid, search_recs)]
        else:
            lr, grid, tuning = protocol.fixed_lr(arm, task), [protocol.fixed_lr(arm, task)], []
        reporting = sweep.run_many([cfg(arm, lr, s) for s in protocol.seeds], desc=f"{task} replay: {arm}")
        arms.append({
            "arm": arm, "label": protocol.label(arm), "optimizer": arm, "roles": protocol.roles,
            "hybrid": False, "aux_lr": None, "grid": grid, "extension": [], "edge_extended": False,
            "at_edge": len(grid) > 1 and lr in (min(grid), max(grid)), "trials": len(tuning),
            "tuning": tuning, "chosen_lr": lr, "reporting": [r["key"] for r in reporting],
        })
    manifest = {
        "manifest": MANIFEST_SCHEMA, "kind": "replay", "protocol": protocol.name, "task": task, "size": size,
        "steps": steps, "record_every": every, "device": device, "dtype": dtype, "spec": protocol.to_dict(),
        "seeds": list(protocol.seeds), "arms": arms,
    }
    sweep.store.write_manifest(manifest)
    return manifest


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
    """The fair protocol on one task; returns (and writes) its manifest.

    AdamW is tuned first (it is added when not requested: hybrid arms need its lr and the report needs its
    target). For every arm: the declared grid on the tuning seeds, selection on the mean final validation
    metric, the edge rule, then the winner on every reporting seed with the test split.
    """
    steps = steps if steps is not None else protocol.steps_for(task)
    ordered = protocol.ordered_arms(arms)
    if arms is not None and protocol.reference_arm not in arms:
        logger.info("adding %r: it sets the aux lr of hybrid arms and the time-to-target target",
                    protocol.reference_arm)
    aux_lr: float | None = None
    out = []
    for arm in ordered:
        a_aux = aux_lr if arm.hybrid else None

        def trials(lrs: Sequence[float], arm=arm, a_aux=a_aux) -> list[dict[str, Any]]:
            cfgs = [protocol.config(arm, task, lr, s, split="val", size=size, aux_lr=a_aux, steps=steps,
                                    device=device, dtype=dtype) for lr in lrs for s in protocol.tuning_seeds]
            recs = sweep.run_many(cfgs, desc=f"{task} {protocol.name}: tune {arm.name}")
            n = len(protocol.tuning_seeds)
            return [{"lr": lr, "keys": [r["key"] for r in recs[i * n:(i + 1) * n]],
                     "score": _mean_score(recs[i * n:(i + 1) * n]),
                     "higher_is_better": bool(recs[i * n]["final"]["higher_is_better"])}
                    for i, lr in enumerate(lrs)]

        grid = protocol.grid(arm, task)
        tuning = trials(grid)
        hib = tuning[0]["higher_is_better"]
        chosen = tuning[protocol.select([t["score"] for t in tuning], hib)]["lr"]
        ext = protocol.extension(grid, chosen)
        if ext:
            logger.info("%s/%s: winner lr %.4g at a grid edge; extending with %s", task, arm.name, chosen,
                        ", ".join(f"{x:.4g}" for x in ext))
            tuning += trials(ext)
            tuning.sort(key=lambda t: t["lr"])
            chosen = tuning[protocol.select([t["score"] for t in tuning], hib)]["lr"]
        all_lrs = [t["lr"] for t in tuning]
        reporting = sweep.run_many(
            [protocol.config(arm, task, chosen, s, split="test", size=size, aux_lr=a_aux, steps=steps,
                             device=device, dtype=dtype) for s in protocol.reporting_seeds],
            desc=f"{task} {protocol.name}: report {arm.name}",
        )
        if arm.name == protocol.reference_arm:
            aux_lr = chosen
        out.append({
            "arm": arm.name, "label": arm.display, "optimizer": arm.optimizer, "roles": arm.roles,
            "hybrid": arm.hybrid, "aux_lr": a_aux, "grid": list(grid), "extension": list(ext),
            "edge_extended": bool(ext), "at_edge": chosen in (min(all_lrs), max(all_lrs)),
            "trials": sum(len(t["keys"]) for t in tuning), "tuning": tuning, "chosen_lr": chosen,
            "reporting": [r["key"] for r in reporting], "source": arm.source,
        })
    manifest = {
        "manifest": MANIFEST_SCHEMA, "kind": "fair", "protocol": protocol.name, "task": task, "size": size,
        "steps": steps, "device": device, "dtype": dtype, "spec": protocol.to_dict(),
        "seeds": list(protocol.reporting_seeds), "reference_arm": protocol.reference_arm, "arms": out,
    }
    manifest = _merge_manifest(sweep.store, manifest)
    sweep.store.write_manifest(manifest)
    return manifest


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
    """Run ``protocol`` on each task (default: the protocol's tasks); returns the manifests."""
    manifests = []
    for task in tasks if tasks is not None else protocol.tasks:
        if isinstance(protocol, ReplayProtocol):
            if arms is not None:
                raise ValueError("the replay protocol has fixed arms; --optimizers does not apply to it")
            manifests.append(run_replay(protocol, task, sweep, size=size, steps=steps, device=device,
                                        dtype=dtype))
        else:
            manifests.append(run_fair(protocol, task, sweep, size=size, arms=arms, steps=steps,
                                      device=device, dtype=dtype))
        logger.info("%s/%s done (%d runs computed, %d reused so far)", protocol.name, task,
                    sweep.computed, sweep.reused)
    return manifests
