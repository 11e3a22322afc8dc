"""The report says how its timings were taken: the executors of its records, and a mark on timings of runs that
were packed several to a GPU (not comparable with runs alone on a device). Records from before executors load."""

from __future__ import annotations

import json
from pathlib import Path

from _bench_fakes import CountingRun

from andi.bench import protocols as P
from andi.bench.execution.executors import SerialExecutor
from andi.bench.execution.store import validate_record
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.report import generate_report


class _PackedGpu(SerialExecutor):
    """Serial, but records say 4 runs shared each GPU (what ``--workers-per-gpu 4`` writes)."""

    @property
    def packed(self) -> int | None:
        return 4


def _table_header(md: str, task: str) -> str:
    return next(line for line in md.split(f"### {task}\n", 1)[1].splitlines() if line.startswith("| arm |"))


def test_report_names_the_executor_and_marks_packed_timings(tmp_path: Path) -> None:
    solo, packed = tmp_path / "solo", tmp_path / "packed"
    run_fair(P.QUICK_SMOKE, "saddle", Sweep(solo, run_fn=CountingRun()), size="smoke")
    run_fair(P.QUICK_SMOKE, "saddle", Sweep(packed, run_fn=CountingRun(), executor=_PackedGpu()), size="smoke")

    md = generate_report(solo, figures=False).read_text()
    assert "Timings were taken by: serial executor, 1 run at once" in md
    assert "†" not in _table_header(md, "saddle") and "packed on one GPU" not in md

    md = generate_report(packed, figures=False).read_text()
    assert "4 per GPU (packed)" in md
    header = _table_header(md, "saddle")
    assert "time to target (s †)" in header and "speedup †" in header
    assert "† Timed with up to 4 runs packed on one GPU" in md


def test_records_without_execution_still_load_and_report(tmp_path: Path) -> None:
    """Results written before executors existed: valid, reported, their execution 'not recorded'."""
    run_fair(P.QUICK_SMOKE, "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke")
    for path in tmp_path.glob("*.json"):
        if not path.name.startswith("manifest-"):
            record = json.loads(path.read_text())
            del record["execution"]
            assert validate_record(record, record["key"]) == []
            path.write_text(json.dumps(record))
    md = generate_report(tmp_path, figures=False).read_text()
    assert "Timings were taken by: not recorded (before executors) (6 runs)" in md
    assert not list(tmp_path.glob("*.corrupt*"))
