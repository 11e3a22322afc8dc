"""Two ``andi-bench run`` processes started together on one ``--out``: every run computed exactly once, nothing
left behind, and the report the same as one process's.

The processes are the real entry point (``python -m andi.bench``) with the test hook ``ANDI_BENCH_RUN_FN``
pointing at a fake runner that leaves a marker per computation and sleeps a little, so that both processes
are busy at the same time for most of the sweep.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import _bench_fakes
import pytest
import torch
from _bench_fakes import ENV_MARKERS, ENV_SLEEP, computations

from andi.bench import cli
from andi.bench.execution.executors import ENV_RUN_FN

FAKES = Path(_bench_fakes.__file__).parent


def _env(markers: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            ENV_RUN_FN: "_bench_fakes:marked_fake_record",
            ENV_MARKERS: str(markers),
            ENV_SLEEP: "0.2",
            "PYTHONPATH": os.pathsep.join([str(FAKES), *filter(None, [env.get("PYTHONPATH")])]),
            "ANDI_DATA_VERIFY": "0",
            "ANDI_DATA_DOWNLOAD": "0",
            "CUDA_VISIBLE_DEVICES": "",
            "CI": "true",
        }
    )
    return env


def _argv(out: Path, data_root: Path) -> list[str]:
    return [
        "run",
        "--protocol",
        "quick-smoke",
        "--task",
        "saddle,gpt",
        "--out",
        str(out),
        "--data-root",
        str(data_root),
        "--no-report",
        "--threads",
        "1",
    ]


def _report(results: Path, dest: Path) -> str:
    assert cli.main(["report", str(results), "--no-figures", "--out", str(dest)]) == 0
    return dest.read_text().replace(str(results), "RESULTS")


@pytest.fixture
def keep_threads() -> Iterator[None]:
    """``cli.main([... "--threads", "1"])`` sets this process's torch threads: restored afterwards."""
    before = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(before)


def test_two_processes_share_one_results_directory(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch, keep_threads: None
) -> None:
    shared, markers = tmp_path / "shared", tmp_path / "markers"
    markers.mkdir()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "andi.bench", *_argv(shared, synthetic_data_root)],
            env=_env(markers),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    for proc, (_, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
    computed = [int(out.split("runs computed")[0].rsplit(":", 1)[1]) for out, _ in outputs]
    assert min(computed) > 0, outputs  # both processes did part of the work

    manifests = [json.loads(p.read_text()) for p in sorted(shared.glob("manifest-*.json"))]
    assert [m["task"] for m in manifests] == ["gpt", "saddle"]
    keys = {
        k for m in manifests for a in m["arms"] for k in a["reporting"] + [k for t in a["tuning"] for k in t["keys"]]
    }
    counts = computations(markers)
    assert counts == dict.fromkeys(keys, 1)  # every run computed exactly once, by one of the two
    assert sum(computed) == len(keys)
    stored = {p.stem for p in shared.glob("*.json") if not p.name.startswith("manifest-")}
    assert stored == keys
    assert sorted(p.name for p in shared.iterdir() if p.suffix != ".json") == []  # no claim, lock, tmp, corrupt

    # One process alone (in this process, through the same hook) reports the same.
    monkeypatch.setenv(ENV_RUN_FN, "_bench_fakes:marked_fake_record")
    monkeypatch.setenv(ENV_MARKERS, str(markers))
    monkeypatch.setenv(ENV_SLEEP, "0")
    single = tmp_path / "single"
    assert cli.main([*_argv(single, synthetic_data_root), "--no-progress"]) == 0
    report = _report(shared, tmp_path / "shared.md")
    assert report == _report(single, tmp_path / "single.md")
    assert "serial executor, 1 run at once, 1 thread per run (12 runs)" in report
