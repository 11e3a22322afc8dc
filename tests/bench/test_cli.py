"""The ``andi-bench`` command line: argument handling with a fake runner, and ``quick`` for real at smoke size."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _bench_fakes import CountingRun

import andi.bench.execution.runner as runner_mod
from andi.bench import cli


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> CountingRun:
    """Counts runs in this process, so the sweeps that use it say ``--executor serial``."""
    fake = CountingRun()
    monkeypatch.setattr(runner_mod, "run", fake)
    return fake


def test_run_fair_with_fake_runner_then_report(
    tmp_path: Path, fake_runner: CountingRun, synthetic_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "res"
    argv = [
        "run",
        "--executor",
        "serial",
        "--protocol",
        "fair",
        "--task",
        "saddle",
        "--optimizers",
        "andi,muon",
        "--size",
        "smoke",
        "--steps",
        "30",
        "--out",
        str(out),
        "--no-progress",
        "--data-root",
        str(synthetic_data_root),
    ]
    assert cli.main(argv) == 0
    # adamw is added; 8-point grid on 1 tuning seed (+2 if an edge winner) and 5 reporting seeds per arm
    manifest = json.loads((out / "manifest-fair-saddle-smoke.json").read_text())
    assert [a["arm"] for a in manifest["arms"]] == ["adamw", "andi", "muon"]
    assert len(fake_runner.calls) == sum(a["trials"] + 5 for a in manifest["arms"])
    assert (out / "report.md").exists()
    assert "report:" in capsys.readouterr().out

    fake_runner.calls.clear()
    assert cli.main(argv) == 0  # resumed: nothing recomputed
    assert fake_runner.calls == []
    assert cli.main(["report", str(out), "--no-figures", "--out", str(tmp_path / "r.md")]) == 0
    assert (tmp_path / "r.md").read_text().startswith("# andi-bench report")


def test_run_replay_with_fake_runner(tmp_path: Path, fake_runner: CountingRun, synthetic_data_root: Path) -> None:
    argv = [
        "run",
        "--executor",
        "serial",
        "--protocol",
        "replay",
        "--task",
        "gpt",
        "--size",
        "smoke",
        "--steps",
        "20",
        "--out",
        str(tmp_path),
        "--no-report",
        "--data-root",
        str(synthetic_data_root),
    ]
    assert cli.main(argv) == 0
    assert len(fake_runner.calls) == 6 + 1 + 4
    assert not (tmp_path / "report.md").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--protocol", "replay", "--optimizers", "andi"], "fixed arms"),
        (["run", "--protocol", "fair", "--reporting-seeds", "0,1001,1002"], "disjoint"),
        (["run", "--protocol", "fair", "--reporting-seeds", "1001,1002"], "at least 3"),
        (["run", "--protocol", "fair", "--optimizers", "andi,nope"], "unknown arm"),
        (["quick", "--threads", "0"], ">= 1"),
    ],
)
def test_run_rejects_bad_arguments(
    tmp_path: Path, argv: list[str], message: str, fake_runner: CountingRun, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main([*argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert fake_runner.calls == []


def test_report_on_missing_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["report", str(tmp_path)]) == 3
    assert "no manifest" in capsys.readouterr().err
    assert cli.main(["report", str(tmp_path / "nope")]) == 3
    assert "not a directory" in capsys.readouterr().err


def test_quick_and_quick_smoke_keep_their_own_manifests(
    tmp_path: Path, fake_runner: CountingRun, synthetic_data_root: Path
) -> None:
    """Both protocols in one directory: each has its own manifest, and the report shows both."""
    common = ["--task", "saddle", "--out", str(tmp_path), "--no-progress", "--data-root", str(synthetic_data_root)]
    assert cli.main(["run", "--protocol", "quick", *common, "--no-report"]) == 0
    assert cli.main(["run", "--protocol", "quick-smoke", *common, "--no-report"]) == 0  # smoke size by default
    assert cli.main(["report", str(tmp_path), "--no-figures"]) == 0
    names = sorted(p.name for p in tmp_path.glob("manifest-*.json"))
    assert names == ["manifest-quick-saddle-cpu.json", "manifest-quick-smoke-saddle-smoke.json"]
    smoke = json.loads((tmp_path / names[1]).read_text())
    assert (smoke["protocol"], smoke["size"]) == ("quick-smoke", "smoke")
    keys = [k for a in smoke["arms"] for k in a["reporting"]]
    assert {json.loads((tmp_path / f"{k}.json").read_text())["config"]["size"] for k in keys} == {"smoke"}
    md = (tmp_path / "report.md").read_text()
    assert "## Protocol `quick` — size `cpu`" in md and "## Protocol `quick-smoke` — size `smoke`" in md


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("tasks:", "saddle", "cifar", "gpt", "optimizers:", "protocols:", "replay", "fair", "quick"):
        assert word in out


def test_step_forwards_argv(monkeypatch: pytest.MonkeyPatch) -> None:
    import andi.bench.stepbench as stepbench

    seen = []
    monkeypatch.setattr(stepbench, "cli_main", lambda argv: seen.append(argv) or 3)
    assert cli.main(["step", "--help", "--x", "1"]) == 3
    assert seen == [["--help", "--x", "1"]]


def test_python_dash_m_help() -> None:
    res = subprocess.run([sys.executable, "-m", "andi.bench", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "quick" in res.stdout and "report" in res.stdout


@pytest.mark.filterwarnings("ignore:.*approximate CIFAR-10 copy:UserWarning")
def test_quick_smoke_end_to_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """The real runner and tasks at smoke size: the CI path of ``andi-bench quick``."""
    monkeypatch.setenv("CI", "true")
    t0 = time.perf_counter()
    assert cli.main(["quick", "--size", "smoke", "--out", str(tmp_path)]) == 0
    elapsed = time.perf_counter() - t0
    printed = capsys.readouterr().out
    assert "docs/results/index.md" in printed and "--protocol study" in printed  # where the evidence is
    assert (Path(__file__).parents[2] / "docs" / "results" / "index.md").is_file()
    md = (tmp_path / "report.md").read_text()
    for task in ("saddle", "cifar", "gpt"):
        assert f"### {task}" in md
        manifest = json.loads((tmp_path / f"manifest-quick-smoke-{task}-smoke.json").read_text())
        assert [a["arm"] for a in manifest["arms"]] == ["adamw", "muon", "andi"]
        assert all(a["trials"] == 3 and len(a["reporting"]) == 2 for a in manifest["arms"])
    assert (tmp_path / "figures" / "quick-smoke-smoke-figure1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert elapsed < 120, f"quick --size smoke took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*approximate CIFAR-10 copy:UserWarning")
def test_quick_cpu_within_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None) -> None:
    """The default ``andi-bench quick``: within 5 minutes on 2 cores, even with one effective thread."""
    monkeypatch.setenv("CI", "true")
    t0 = time.perf_counter()
    assert cli.main(["quick", "--out", str(tmp_path)]) == 0
    assert time.perf_counter() - t0 < 300
    assert (tmp_path / "figures" / "quick-cpu-figure1.png").exists()
