"""Stop signals sent to a real ``python -m andi.bench run``: SIGTERM (SLURM, Kubernetes, systemd, ``timeout``), SIGHUP
and Ctrl-C's SIGINT stop the workers, release the claims, keep every finished record, print one line and exit with
128 + the signal; the same command then resumes."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bench_fakes import ENV_SLEEP
from test_shared_results import _argv, _env

from andi.bench.execution.claims import pid_alive

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _records(out: Path) -> set[str]:
    return {p.stem for p in out.glob("*.json") if not p.name.startswith("manifest-")}


def _wait_for(predicate, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.parametrize(
    ("executor", "signum"),
    [
        ("serial", signal.SIGTERM),
        ("local", signal.SIGTERM),
        ("local", signal.SIGHUP),
        ("serial", signal.SIGINT),
    ],
)
def test_a_stop_signal_keeps_finished_runs_and_the_same_command_resumes(
    tmp_path: Path, synthetic_data_root: Path, executor: str, signum: int
) -> None:
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    env = {**_env(markers), ENV_SLEEP: "0.4"}
    argv = [sys.executable, "-m", "andi.bench", *_argv(out, synthetic_data_root)]
    argv += ["--workers", "2"] if executor == "local" else ["--executor", "serial"]
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for(lambda: len(_records(out)) >= 2 and any(out.glob("*.claim")))
        proc.send_signal(signum)
        _stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    kept = _records(out)
    assert proc.returncode == 128 + signum, stderr
    assert "Traceback" not in stderr, stderr
    assert f"andi-bench: stopped by {signal.Signals(signum).name}; finished runs are kept in {out}" in stderr
    assert not list(out.glob("*.claim*")), "claims left behind"
    workers = {int(p.name.split(".")[1]) for p in markers.glob("*.start")} - {proc.pid}
    _wait_for(lambda: not any(pid_alive(pid) for pid in workers), timeout=10)  # no worker computes on for nobody

    resumed = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=180)
    assert resumed.returncode == 0, resumed.stderr
    assert kept < _records(out)  # the first process's records were kept, and the rest computed
    reused = int(resumed.stdout.split(" reused")[0].rsplit(",", 1)[1])
    assert reused >= len(kept)
