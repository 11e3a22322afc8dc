"""Synthetic run records for the sweep/report/CLI tests: same schema as andi.bench.execution.runner.run, no training.

``fake_record(config)`` is a deterministic function of the config: a loss curve whose final value depends
smoothly on ``log2(lr / best_lr)`` per optimizer plus a seed-dependent offset, divergence (NaN, status
``diverged``) far above the best lr, eval curves on the configured split, timings and memory numbers.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from typing import Any

from andi.bench.report import ArmResult, stats

BEST_LR = {"adamw": 2e-3, "muon": 0.02, "andi": 0.01, "andi-reference": 0.05, "muon-andi-paper": 0.05}
QUALITY = {"adamw": 0.30, "muon": 0.25, "andi": 0.22, "andi-reference": 0.24, "muon-andi-paper": 0.28}
STEP_TIME = {"adamw": 0.010, "muon": 0.014, "andi": 0.011}


def _noise(*parts: Any) -> float:
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") / 2**64 - 0.5  # uniform in [-0.5, 0.5)


def fake_record(config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
    opt, lr, seed = config.optimizer, config.lr, config.init_seed
    steps = config.steps or 60
    best = BEST_LR.get(opt, 0.01)
    x = math.log2(lr / best)
    final_level = QUALITY.get(opt, 0.3) + 0.05 * x * x + 0.01 * _noise(opt, seed, config.task)
    diverged_at = steps // 3 if x > 3.5 else None

    def loss_at(t: int) -> float:
        if diverged_at is not None and t >= diverged_at:
            return math.nan
        return final_level + (2.0 - final_level) * math.exp(-5.0 * t / steps)

    every = config.train_record_every
    train_steps = list(range(0, steps, every))
    eval_every = 10 if config.eval_every is None else config.eval_every
    ev: dict[str, list] = {"steps": []}
    if config.eval_split != "none" and eval_every > 0:
        ev["steps"] = [*range(0, steps, eval_every), steps]
        ev["loss"] = [None if math.isnan(loss_at(t)) else loss_at(t) + 0.02 for t in ev["steps"]]
    step_s = STEP_TIME.get(opt, 0.012)
    final_value = None if diverged_at is not None or not ev.get("loss") else ev["loss"][-1]
    if config.eval_split == "none":
        final_value = None
    return {
        "schema": 1,
        "key": config.key(),
        "config": config.to_dict(),
        "status": "diverged" if diverged_at is not None else "ok",
        "diverged_at": diverged_at,
        "versions": {"andi": "0.1.0", "torch": "2.13.0", "python": "3.11", "numpy": "2.4"},
        "device": {"type": "cpu", "name": "fake-cpu", "threads": 2},
        "train": {"steps": train_steps, "loss": [None if math.isnan(loss_at(t)) else loss_at(t) for t in train_steps]},
        "eval": ev,
        "final": {
            "metric": "loss",
            "higher_is_better": False,
            "value": final_value,
            "train_loss_last100": None if diverged_at is not None else loss_at(steps - 1),
            "metrics": {} if final_value is None else {"loss": final_value},
        },
        "timing": {
            "total_s": steps * step_s * 1.3,
            "train_s": steps * step_s,
            "cumulative_train_s": [t * step_s for t in ev["steps"]],
            "optimizer_step_median_s": step_s / 4 * (1 + 0.01 * _noise(seed)),
        },
        "memory": {
            "state_bytes": {"adamw": 8000, "muon": 4400}.get(opt, 4000),
            "peak_bytes": 10_000_000 + seed,
            "peak_kind": "rss",
        },
    }


def diverging_reporting_seed(optimizer: str, seed: int) -> Any:
    """A fake runner like :func:`fake_record`, except that ``optimizer``'s reporting run on ``seed`` diverges."""

    def run(config: Any, **kwargs: Any) -> dict:
        record = fake_record(config)
        if config.optimizer == optimizer and config.eval_split == "test" and config.init_seed == seed:
            record.update(status="diverged", diverged_at=5)
            record["final"].update(value=None, metrics={})
        return record

    return run


class CountingRun:
    """A fake ``run`` that counts calls per config key and can raise on the n-th call (a "kill")."""

    def __init__(self, fail_on_call: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail_on_call = fail_on_call

    def __call__(self, config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
        if self.fail_on_call is not None and len(self.calls) + 1 == self.fail_on_call:
            raise KeyboardInterrupt("simulated kill")
        self.calls.append(config.key())
        return fake_record(config)


# ------------------------------------------------------------------------------- for executors and claims
#: Environment of :func:`marked_fake_record` (worker processes inherit it): a folder for markers, seconds to
#: sleep per run, and comma-separated config keys to kill (SIGKILL, first attempt only) or to fail (always).
ENV_MARKERS = "ANDI_TEST_MARKERS"
ENV_SLEEP = "ANDI_TEST_SLEEP"
ENV_KILL = "ANDI_TEST_KILL_KEYS"
ENV_FAIL = "ANDI_TEST_FAIL_KEYS"


def marked_fake_record(config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
    """:func:`fake_record` that leaves a marker per computation (``<key>.<pid>.<n>.start`` in
    ``$ANDI_TEST_MARKERS``), sleeps ``$ANDI_TEST_SLEEP`` seconds, kills its own process (``kill -9``) the first
    time it runs a key of ``$ANDI_TEST_KILL_KEYS`` and raises for every key of ``$ANDI_TEST_FAIL_KEYS``.

    Module level, so worker processes (spawn, Ray) import it by name; usable as ``ANDI_BENCH_RUN_FN``
    ``=_bench_fakes:marked_fake_record`` with this folder on ``PYTHONPATH``.
    """
    import os
    import signal
    import time
    import uuid
    from pathlib import Path

    key = config.key()
    markers = Path(os.environ[ENV_MARKERS])
    (markers / f"{key}.{os.getpid()}.{uuid.uuid4().hex[:8]}.start").touch()
    time.sleep(float(os.environ.get(ENV_SLEEP, "0")))
    if key in os.environ.get(ENV_KILL, "").split(","):
        try:
            (markers / f"{key}.killed").open("x").close()  # exclusive: only the first attempt is killed
        except FileExistsError:
            pass
        else:
            os.kill(os.getpid(), signal.SIGKILL)
    if key in os.environ.get(ENV_FAIL, "").split(","):
        raise RuntimeError(f"injected failure of {key[:12]}")
    return fake_record(config)


def computations(markers: Any) -> dict[str, int]:
    """How many times :func:`marked_fake_record` started each key (from its markers)."""
    from collections import Counter
    from pathlib import Path

    return dict(Counter(p.name.split(".")[0] for p in Path(markers).glob("*.start")))


# ------------------------------------------------------------------ per-seed results for the verdict tests
#: The reporting seeds of the hand-built arm results below.
SEEDS = (1001, 1002, 1003, 1004, 1005)
_RAW = [-1.3, -0.4, 0.2, 0.5, 1.0]
Z = [(z - statistics.mean(_RAW)) / statistics.stdev(_RAW) for z in _RAW]  # sample mean 0, sample sd 1


def sample(mean: float, sd: float, z: list[float] = Z) -> list[float]:
    """Five values with exactly this sample mean and standard deviation (ddof=1)."""
    return [mean + sd * v for v in z]


def arm_result(name: str, label: str, values: list[float | None], seeds: tuple[int, ...] = SEEDS) -> ArmResult:
    """An :class:`ArmResult` with these final values per seed (``None``: diverged) and no records."""
    return ArmResult(
        arm=name,
        label=label,
        optimizer=name,
        chosen_lr=0.01,
        trials=8,
        edge_extended=False,
        at_edge=False,
        records=[],
        seeds=list(seeds),
        finals=list(values),
        summary=stats.summarize(stats.finite_values(values)),
    )
