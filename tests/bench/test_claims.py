"""Claims on runs in a shared results directory: stale ones are taken over (by exactly one taker), live ones are
respected, and a sweep waits for a run another process holds instead of computing it twice."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _bench_fakes import CountingRun, fake_record

from andi.bench.errors import Interrupted, stop_signals_deferred, stop_signals_raise
from andi.bench.execution.claims import ClaimInfo, Claims, pid_alive, process_start
from andi.bench.execution.runner import RunConfig
from andi.bench.execution.sweep import Sweep

CONFIG = RunConfig(task="saddle", size="smoke", optimizer="adamw", lr=1e-3, steps=30)


def _write_claim(root: Path, name: str, **fields: object) -> Path:
    info = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "executor": "test", **fields}
    path = root / f"{name}.claim"
    path.write_text(json.dumps(info))
    return path


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    assert not pid_alive(proc.pid)
    return proc.pid


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A process of this host that stays alive during the test (and is ended by it)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_claim_is_exclusive_and_released(tmp_path: Path) -> None:
    a, b = Claims(tmp_path, executor="serial"), Claims(tmp_path)
    assert a.acquire("k") and not b.acquire("k")
    info = ClaimInfo.parse((tmp_path / "k.claim").read_bytes())
    assert info is not None and (info.pid, info.executor) == (os.getpid(), "serial")
    assert info.pid_start == process_start(os.getpid())
    a.release("k")
    assert not (tmp_path / "k.claim").exists() and b.acquire("k")


def test_stale_claim_of_a_dead_process_is_taken_over(tmp_path: Path, dead_pid: int) -> None:
    _write_claim(tmp_path, "k", pid=dead_pid)
    claims = Claims(tmp_path)
    assert claims.acquire("k") and claims.taken_over == ["k"]
    assert ClaimInfo.parse((tmp_path / "k.claim").read_bytes()).pid == os.getpid()


def test_fresh_claim_of_a_live_process_is_respected(tmp_path: Path, live_pid: int) -> None:
    path = _write_claim(tmp_path, "k", pid=live_pid, pid_start=process_start(live_pid))
    before = path.read_bytes()
    assert not Claims(tmp_path).acquire("k")
    assert path.read_bytes() == before


def test_reused_pid_is_not_the_owner(tmp_path: Path, live_pid: int) -> None:
    """A live pid whose process started at another time is a new process that got a dead owner's pid."""
    start = process_start(live_pid)
    if start is None:
        pytest.skip("no /proc on this system")
    _write_claim(tmp_path, "k", pid=live_pid, pid_start=start + 1)
    assert Claims(tmp_path).acquire("k")


def test_claims_without_a_heartbeat_of_other_hosts_go_stale_by_age(tmp_path: Path) -> None:
    _write_claim(tmp_path, "fresh", host="elsewhere", pid=1, started=time.time() - 50)
    _write_claim(tmp_path, "old", host="elsewhere", pid=1, started=time.time() - 200)
    claims = Claims(tmp_path, timeout_s=100)
    assert not claims.acquire("fresh")
    assert claims.acquire("old") and claims.taken_over == ["old"]


def test_a_heartbeat_keeps_a_claim_live_on_any_host_and_missed_beats_free_it(tmp_path: Path) -> None:
    holder = Claims(tmp_path, timeout_s=0.2, heartbeat_s=0.1)  # beats far more often than the age timeout
    assert holder.acquire("k")
    info = ClaimInfo.parse((tmp_path / "k.claim").read_bytes())
    assert info is not None and info.heartbeat_s == 0.1
    other = Claims(tmp_path, timeout_s=0.2)
    other.host = "another-node"  # judged as from a machine that cannot see the holder's pid
    time.sleep(1.0)  # five times the age timeout: only the beats keep it
    assert not other.acquire("k")
    holder._stop_beating.set()  # the holder's node died: its beats stop, its file stays
    holder._beater.join()
    time.sleep(4 * 0.1 + 0.3)
    assert other.acquire("k") and other.taken_over == ["k"]
    other.close()
    assert not (tmp_path / "k.claim").exists()


def test_a_claim_that_cannot_be_written_is_not_left_empty(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def full_disk(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        Claims(tmp_path).acquire("k")
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize("cut_in", ["acquire", "release"])
def test_a_stop_signal_in_the_middle_of_acquire_or_release_leaves_no_claim_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut_in: str
) -> None:
    """The stop arrives between writing the claim file and noting it as held (or between forgetting and removing
    it): the handler's Interrupted waits for the step to finish, so closing the claims removes every file."""
    claims = Claims(tmp_path)
    if cut_in == "release":
        assert claims.acquire("k")
    real_fsync, real_pop = os.fsync, dict.pop

    def fsync_then_stop(fd: int) -> None:
        real_fsync(fd)
        os.kill(os.getpid(), signal.SIGTERM)

    class StoppingDict(dict):
        def pop(self, *args: object) -> object:
            value = real_pop(self, *args)
            os.kill(os.getpid(), signal.SIGTERM)
            return value

    if cut_in == "acquire":
        monkeypatch.setattr(os, "fsync", fsync_then_stop)
    else:
        claims._held = StoppingDict(claims._held)
    with stop_signals_raise(), pytest.raises(Interrupted) as stopped:
        claims.acquire("k") if cut_in == "acquire" else claims.release("k")
    monkeypatch.undo()
    assert stopped.value.signum == signal.SIGTERM
    claims.close()
    assert list(tmp_path.iterdir()) == []


def test_a_stop_signal_inside_a_deferred_block_is_raised_as_the_block_ends() -> None:
    steps = []
    with stop_signals_raise(), pytest.raises(Interrupted):
        with stop_signals_deferred():
            os.kill(os.getpid(), signal.SIGTERM)
            steps.append("finished the step")
        steps.append("after the block")
    assert steps == ["finished the step"]


def test_a_claim_being_written_is_live_for_a_while(tmp_path: Path) -> None:
    path = tmp_path / "k.claim"
    path.write_bytes(b"")
    assert not Claims(tmp_path).acquire("k")
    old = time.time() - 120
    os.utime(path, (old, old))
    assert Claims(tmp_path).acquire("k")


def test_release_leaves_a_takers_claim_alone(tmp_path: Path) -> None:
    mine = Claims(tmp_path)
    assert mine.acquire("k")
    _write_claim(tmp_path, "k", pid=os.getpid() + 1)  # someone judged it stale and took it over
    mine.release("k")
    assert (tmp_path / "k.claim").exists()


def test_takeover_race_has_one_winner(tmp_path: Path, dead_pid: int) -> None:
    """Many takers of one stale claim at once: exactly one holds it afterwards, every round."""
    for round_ in range(20):
        name = f"k{round_}"
        _write_claim(tmp_path, name, pid=dead_pid)
        takers = [Claims(tmp_path) for _ in range(8)]
        barrier = threading.Barrier(len(takers))
        won: list[bool] = []

        def take(claims: Claims, name: str = name, barrier: threading.Barrier = barrier, won: list = won) -> None:
            barrier.wait()
            won.append(claims.acquire(name))

        threads = [threading.Thread(target=take, args=(c,)) for c in takers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert won.count(True) == 1, (round_, won)
        assert not list(tmp_path.glob("*.takeover"))


# --------------------------------------------------------------------------------------------- in a sweep
def test_sweep_takes_over_a_dead_process_claim(tmp_path: Path, dead_pid: int) -> None:
    _write_claim(tmp_path, CONFIG.key(), pid=dead_pid)
    runs = CountingRun()
    sweep = Sweep(tmp_path, run_fn=runs)
    record = sweep.run(CONFIG)
    assert runs.calls == [CONFIG.key()] and record["status"] == "ok"
    assert sweep.claims.taken_over == [CONFIG.key()]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{CONFIG.key()}.json"]


def test_sweep_waits_for_a_live_claim_and_uses_its_record(tmp_path: Path, live_pid: int) -> None:
    """A run claimed by a live process is not computed: the sweep waits for the owner's record and uses it."""
    claim = _write_claim(tmp_path, CONFIG.key(), pid=live_pid, pid_start=process_start(live_pid))
    runs = CountingRun()
    sweep = Sweep(tmp_path, run_fn=runs, poll_s=0.05)
    result: list[dict] = []
    waiter = threading.Thread(target=lambda: result.append(sweep.run(CONFIG)))
    waiter.start()
    time.sleep(1.0)
    assert waiter.is_alive() and runs.calls == []  # still waiting, computing nothing
    (tmp_path / f"{CONFIG.key()}.json").write_text(json.dumps(fake_record(CONFIG)))  # the owner finishes
    claim.unlink()
    waiter.join(timeout=30)
    assert not waiter.is_alive()
    assert runs.calls == [] and (sweep.computed, sweep.reused) == (0, 1)
    assert result[0]["key"] == CONFIG.key()


def test_concurrent_manifest_writes_keep_every_arm(tmp_path: Path) -> None:
    """Two processes finishing different arms of one task merge their manifests instead of overwriting."""
    base = {
        "manifest": 1,
        "kind": "fair",
        "protocol": "p",
        "task": "saddle",
        "size": "smoke",
        "steps": 8,
        "device": "cpu",
        "dtype": "float32",
        "spec": {"name": "p"},
    }

    def write(arm: str) -> None:
        sweep = Sweep(tmp_path)  # its own claims, as another process would have
        for i in range(15):
            sweep.write_manifest({**base, "arms": [{"arm": "adamw", "i": i}, {"arm": arm, "i": i}]})

    threads = [threading.Thread(target=write, args=(arm,)) for arm in ("andi", "muon")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    manifest = json.loads((tmp_path / "manifest-p-saddle-smoke.json").read_text())
    assert sorted(a["arm"] for a in manifest["arms"]) == ["adamw", "andi", "muon"]
    assert not list(tmp_path.glob("*.claim"))
