"""The execution a sweep gets without flags: the rule, and what the real entry point does and records."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from andi.bench.execution.defaults import LARGE_MODEL_PARAMS, LARGE_MODEL_THREADS, choose_execution
from andi.bench.execution.executors import available_cores

SMALL = 112_512  # the GPT at CPU size
LARGE = 6_573_130  # ResNet-9 at the paper's size


def test_small_models_on_a_cpu_get_one_worker_per_core_and_one_thread() -> None:
    chosen = choose_execution(cores=2, gpus=0, device="cpu", runs=45, largest_params=SMALL)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("local", 2, 1)
    assert chosen.describe() == "2 runs at once, 1 thread each (2 cores, models up to 0.11 M parameters)"
    chosen = choose_execution(cores=16, gpus=0, device="cpu", runs=300, largest_params=SMALL)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("local", 16, 1)


def test_one_core_or_one_run_stays_in_this_process() -> None:
    chosen = choose_execution(cores=1, gpus=0, device="cpu", runs=45, largest_params=SMALL)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("serial", None, 1)
    chosen = choose_execution(cores=8, gpus=0, device="cpu", runs=1, largest_params=SMALL)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("serial", None, 8)


def test_large_models_get_several_threads_a_run() -> None:
    chosen = choose_execution(cores=16, gpus=0, device="cpu", runs=100, largest_params=LARGE)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("local", 16 // LARGE_MODEL_THREADS, 4)
    chosen = choose_execution(cores=2, gpus=0, device="cpu", runs=100, largest_params=LARGE)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("serial", None, 2)


def test_cuda_gets_one_worker_per_gpu() -> None:
    assert choose_execution(cores=16, gpus=1, device="cuda", runs=50, largest_params=LARGE).executor == "serial"
    chosen = choose_execution(cores=16, gpus=4, device="cuda", runs=50, largest_params=LARGE)
    assert (chosen.executor, chosen.workers, chosen.threads) == ("local", 4, 4)


@given(
    cores=st.integers(1, 256),
    runs=st.integers(1, 5000),
    params=st.integers(0, 10**9),
)
def test_the_cores_are_used_and_never_oversubscribed(cores: int, runs: int, params: int) -> None:
    chosen = choose_execution(cores=cores, gpus=0, device="cpu", runs=runs, largest_params=params)
    workers = chosen.workers or 1
    assert (chosen.executor == "serial") == (workers == 1)
    assert 1 <= workers <= min(cores, runs)
    assert workers * chosen.threads <= max(cores, 1)
    # no more than a worker's worth of cores idles, and small models get one thread while runs outnumber cores
    assert cores - workers * chosen.threads < chosen.threads or workers == runs
    if params < LARGE_MODEL_PARAMS and runs >= cores:
        assert (workers, chosen.threads) == (cores, 1)


def test_quick_without_flags_records_the_chosen_execution_and_prints_one_line_per_note(tmp_path: Path) -> None:
    """The real entry point: the choice is announced once, stored in every record, and warnings are one line."""
    env = {**os.environ, "CI": "true"}
    proc = subprocess.run(
        [sys.executable, "-m", "andi.bench", "quick", "--size", "smoke", "--out", str(tmp_path), "--no-report"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    err = proc.stderr.splitlines()
    expected = choose_execution(cores=available_cores(), gpus=0, device="cpu", runs=45, largest_params=437_664)
    assert expected.threads == 1  # every model of quick is small
    assert [line for line in err if "runs at once" in line or "one run at a time" in line] == [
        f"andi-bench: {expected.describe()}; --workers/--threads choose otherwise"
    ]
    # warnings the user cannot act on in code are one line each, shown once (not once per worker)
    warnings_shown = [line for line in err if line.startswith("andi-bench: warning:")]
    assert len(warnings_shown) == len(set(warnings_shown)) <= 1
    assert not [line for line in err if "Warning" in line or line.startswith(" ")], err
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json") if not p.name.startswith("manifest-")]
    assert len(records) == 45
    for record in records:
        ex = record["execution"]
        assert (ex["executor"], ex["workers"], ex["threads"]) == (expected.executor, expected.workers or 1, 1)


def test_the_module_examples_hold() -> None:
    import doctest

    from andi.bench.execution import defaults

    result = doctest.testmod(defaults)
    assert result.attempted >= 2 and result.failed == 0
