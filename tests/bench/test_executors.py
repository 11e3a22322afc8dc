"""Executors: the same records whoever computes them, a killed worker's run recomputed once, a raising run
retried once and then stored as failed while the sweep goes on, and the CLI's checks of the execution options."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from _bench_fakes import ENV_FAIL, ENV_KILL, ENV_MARKERS, ENV_SLEEP, computations, marked_fake_record

from andi.bench import cli, preflight
from andi.bench import protocols as P
from andi.bench.execution.claims import pid_alive
from andi.bench.execution.executors import LocalExecutor, SerialExecutor
from andi.bench.execution.sweep import Sweep, run_protocol
from andi.bench.report import generate_report

#: The fields a run's numbers live in; timing, memory peaks (RSS of the process) and execution may differ.
METRIC_FIELDS = ("key", "config", "status", "diverged_at", "train", "eval", "final", "resolved", "optimizer_info")
SMOKE = P.QUICK_SMOKE


def records(root: Path) -> dict[str, dict]:
    out = {}
    for path in root.glob("*.json"):
        if not path.name.startswith("manifest-") and path.name != "results.json":
            record = json.loads(path.read_text())
            out[record["key"]] = record
    return out


def leftovers(root: Path) -> list[str]:
    """Files a finished sweep must not leave behind: claims, locks, temporary and quarantined files."""
    return sorted(p.name for p in root.iterdir() if not (p.suffix == ".json" or p.name.startswith("report")))


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv(ENV_MARKERS, str(folder))
    monkeypatch.setenv(ENV_SLEEP, "0.1")
    return folder


# ------------------------------------------------------------------------------------------ same numbers
@pytest.mark.filterwarnings("ignore:ANDI_DATA_VERIFY=0:UserWarning")
def test_local_workers_write_the_records_of_serial(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """A smoke fair sweep with the real runner: `--workers 2` (1 thread each) equals serial (1 thread), bitwise."""
    monkeypatch.setenv("ANDI_DATA_VERIFY", "0")  # the workers do not see the fixture's trusted checksums
    common = [
        "run",
        "--protocol",
        "fair",
        "--task",
        "saddle",
        "--size",
        "smoke",
        "--steps",
        "8",
        "--reporting-seeds",
        "1001,1002,1003",
        "--threads",
        "1",
        "--data-root",
        str(synthetic_data_root),
        "--no-report",
        "--no-progress",
    ]
    assert cli.main([*common, "--out", str(tmp_path / "serial")]) == 0
    assert cli.main([*common, "--out", str(tmp_path / "local"), "--executor", "local", "--workers", "2"]) == 0
    serial, local = records(tmp_path / "serial"), records(tmp_path / "local")
    assert len(serial) >= 3 * (8 + 3) and serial.keys() == local.keys()
    for key, record in serial.items():
        for name in METRIC_FIELDS:
            assert local[key][name] == record[name], (key, name)
        assert record["execution"] == {
            "executor": "serial",
            "workers": 1,
            "host": record["execution"]["host"],
            "threads": 1,
            "packed": None,
        }
        assert local[key]["execution"]["executor"] == "local" and local[key]["execution"]["workers"] == 2
        assert local[key]["execution"]["threads"] == local[key]["device"]["threads"] == 1
    manifest = "manifest-fair-saddle-smoke.json"
    assert (tmp_path / "serial" / manifest).read_text() == (tmp_path / "local" / manifest).read_text()
    assert leftovers(tmp_path / "serial") == leftovers(tmp_path / "local") == []


# ---------------------------------------------------------------------------------------------- kill -9
def _tuning_key(arm: str, index: int) -> str:
    lr = SMOKE.grid(arm, "saddle")[index]
    return SMOKE.config(
        arm, "saddle", lr, SMOKE.tuning_seeds[0], split="val", size="smoke", steps=SMOKE.steps_for("saddle")
    ).key()


def test_killed_worker_run_is_recomputed_once(tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """kill -9 of a worker mid-run: the sweep finishes, that run is computed once more, the others once; every
    record is written once and whole."""
    victim = _tuning_key("andi", 1)
    monkeypatch.setenv(ENV_KILL, victim)
    out = tmp_path / "out"
    sweep = Sweep(out, run_fn=marked_fake_record, executor=LocalExecutor(2, threads=1))
    saves: Counter[str] = Counter()
    save = sweep.store.save
    sweep.store.save = lambda record: saves.update([record["key"]]) or save(record)  # type: ignore[method-assign]
    with sweep:
        (manifest,) = run_protocol(SMOKE, sweep, tasks=["saddle"], size="smoke")
    assert (markers / f"{victim}.killed").exists()
    counts = computations(markers)
    assert counts.pop(victim) == 2  # the killed attempt and its recomputation
    assert set(counts.values()) == {1}  # the other worker's runs were not disturbed
    stored = records(out)
    assert set(saves.values()) == {1} and set(saves) == set(stored)  # no record written twice
    assert stored[victim]["status"] == "ok" and sweep.failed == []
    assert len(stored) == sweep.computed == len(SMOKE.arms) * (len(SMOKE.ks) + len(SMOKE.reporting_seeds))
    assert [a["arm"] for a in manifest["arms"]] == ["adamw", "muon", "andi"]
    assert leftovers(out) == []


# ------------------------------------------------------------------------------------------- a run raises
@pytest.mark.parametrize("executor", ["serial", "local"])
def test_raising_run_is_retried_once_then_reported(
    tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    """A run that raises every time: retried once, stored as failed with its traceback; the sweep goes on, the
    protocol scores it like a diverged run, the report says so, and the next sweep computes it again."""
    monkeypatch.setenv(ENV_SLEEP, "0")
    baseline = Sweep(tmp_path / "baseline", run_fn=marked_fake_record)
    (expected,) = run_protocol(SMOKE, baseline, tasks=["saddle"], size="smoke")
    muon = next(a for a in expected["arms"] if a["arm"] == "muon")
    andi = next(a for a in expected["arms"] if a["arm"] == "andi")
    tuning = next(t["keys"][0] for t in andi["tuning"] if t["lr"] != andi["chosen_lr"])  # not the winner
    reporting = muon["reporting"][0]
    monkeypatch.setenv(ENV_FAIL, f"{tuning},{reporting}")
    for path in markers.iterdir():
        path.unlink()

    out = tmp_path / "out"
    runner = SerialExecutor() if executor == "serial" else LocalExecutor(2, threads=1)
    with Sweep(out, run_fn=marked_fake_record, executor=runner) as sweep:
        (manifest,) = run_protocol(SMOKE, sweep, tasks=["saddle"], size="smoke")
    counts = computations(markers)
    assert counts[tuning] == counts[reporting] == 2 and sorted(sweep.failed) == sorted([tuning, reporting])
    stored = records(out)
    for key in (tuning, reporting):
        assert stored[key]["status"] == "failed" and stored[key]["attempts"] == 2
        assert f"RuntimeError: injected failure of {key[:12]}" in stored[key]["error"]
    assert all(r["status"] != "failed" for k, r in stored.items() if k not in (tuning, reporting))
    # The protocol went on: same choices, the failed grid point scored like a diverged one.
    assert [a["chosen_lr"] for a in manifest["arms"]] == [a["chosen_lr"] for a in expected["arms"]]
    failed_point = next(t for a in manifest["arms"] for t in a["tuning"] if t["keys"] == [tuning])
    assert failed_point["score"] is None
    assert leftovers(out) == []

    md = generate_report(out, figures=False).read_text()
    assert "2 run(s) failed with an error" in md and "injected failure" in md
    muon_row = next(line for line in md.splitlines() if line.startswith("| Muon |"))
    assert "2/2, 0/2 diverged, 1 failed" in muon_row  # the failed seed counts at the penalty

    monkeypatch.delenv(ENV_FAIL)
    with Sweep(out, run_fn=marked_fake_record) as again:
        run_protocol(SMOKE, again, tasks=["saddle"], size="smoke")
    assert again.computed == 2 and again.failed == []  # failed records are retried by the next invocation
    assert all(r["status"] == "ok" for r in records(out).values())


def test_run_failing_once_succeeds_on_the_retry(tmp_path: Path, markers: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = _tuning_key("adamw", 0)
    calls: Counter[str] = Counter()

    def flaky(config, **kw):
        calls[config.key()] += 1
        if config.key() == victim and calls[victim] == 1:
            raise OSError("transient")
        return marked_fake_record(config, **kw)

    sweep = Sweep(tmp_path, run_fn=flaky)
    run_protocol(SMOKE, sweep, tasks=["saddle"], size="smoke")
    assert calls[victim] == 2 and sweep.failed == [] and records(tmp_path)[victim]["status"] == "ok"


def test_missing_data_stops_the_sweep(tmp_path: Path) -> None:
    """A dataset that vanished is the machine's problem, not the run's: no retry, no failed record, exit 3."""
    from andi.bench.tasks.data import DataMissingError

    def no_data(config, **kw):
        raise DataMissingError("FashionMNIST is missing")

    with pytest.raises(Exception, match="FashionMNIST is missing") as exc:
        Sweep(tmp_path, run_fn=no_data).run(P.QUICK_SMOKE.config("adamw", "saddle", 1e-3, 0, split="val", size="smoke"))
    assert getattr(exc.value, "exit_code", None) == 3
    assert list(tmp_path.iterdir()) == []


def test_interrupt_releases_claims_and_stops_workers(tmp_path: Path, markers: Path) -> None:
    executor = LocalExecutor(2, threads=1)
    out = tmp_path / "out"
    sweep = Sweep(out, run_fn=marked_fake_record, executor=executor)
    configs = [
        P.QUICK_SMOKE.config("adamw", "saddle", 1e-3 * 2**i, 0, split="val", size="smoke", steps=8) for i in range(6)
    ]
    seen = []
    original = sweep._store_record

    def interrupt_after_first(outcome):
        seen.append(original(outcome))
        raise KeyboardInterrupt

    sweep._store_record = interrupt_after_first  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        sweep.run_many(configs)
    pids = [w.process.pid for w in executor._pool]
    sweep.close()
    assert len(seen) == 1 and leftovers(out) == []  # no claim left behind
    assert not any(pid_alive(pid) for pid in pids)


# ------------------------------------------------------------------------------------- the CLI's options
@pytest.mark.parametrize(
    ("options", "status", "message"),
    [
        (["--workers", "0"], 2, "--workers 0: must be >= 1"),
        (["--executor", "serial", "--workers", "2"], 2, "the serial executor runs one run at a time"),
        (["--executor", "local", "--ray-address", "auto"], 2, "--ray-address: only the ray executor"),
        (["--executor", "ray", "--workers", "2"], 2, "set the CPUs of each run with --threads"),
        (["--workers-per-gpu", "2"], 2, "--workers-per-gpu: packs runs onto GPUs, but --device is cpu"),
        (["--workers", "2", "--workers-per-gpu", "2", "--device", "cuda"], 2, "give one"),
        (["--claim-timeout", "0"], 2, "--claim-timeout 0: must be a positive number of seconds"),
    ],
)
def test_execution_options_are_checked_first(
    tmp_path: Path, options: list[str], status: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--task", "quadratic", "--size", "smoke", "--out", str(tmp_path / "out"), *options]
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out").exists()


def test_ray_missing_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(preflight, "_ray_installed", lambda: False)
    assert cli.main(["quick", "--size", "smoke", "--executor", "ray", "--out", str(tmp_path / "out")]) == 3
    assert "Ray is not installed; pip install 'ray>=2.9'" in capsys.readouterr().err
    monkeypatch.setitem(__import__("sys").modules, "ray", None)  # and the executor itself, used from Python
    from andi.bench.errors import SetupError
    from andi.bench.execution.executors import RayExecutor

    with pytest.raises(SetupError, match=r"pip install 'ray>=2.9' \(the 'ray' extra\)"):
        RayExecutor()


def test_workers_imply_the_local_executor() -> None:
    assert preflight.check_execution(None, workers=2) == "local"
    assert preflight.check_execution(None, workers_per_gpu=2, device="cuda") == "local"
    assert preflight.check_execution(None) == "serial"
    assert preflight.check_execution("local") == "local"
