"""Everyday mistakes on the ``andi-bench`` command line: caught before the first run, one line on stderr.

Every case is an error with exit status 2 (the command line is wrong) or 3 (the machine or its files cannot
serve it), a single ``andi-bench: error: ...`` line on stderr and no traceback, and nothing is written. All
cases run in-process through :func:`andi.bench.cli.main` (milliseconds); one case per kind of check also runs
through the real entry point, ``python -m andi.bench`` in a subprocess, where stray output (logging, warnings)
and the exit status would show. A subprocess costs the torch import (~3 s), so those start together, two at a
time. Runs use a toy task (no data) or an empty data root, so a check that failed to fire could not start
anything long.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from andi.bench import cli

TOY = ["--task", "quadratic", "--size", "smoke", "--no-progress"]  # no dataset, seconds if it ever ran
FMNIST = "FashionMNIST/raw/train-images-idx3-ubyte.gz"

#: case -> (argv, exit status, a fragment of the one-line message); ``{tmp}`` is the case's scratch folder.
ERRORS: dict[str, tuple[list[str], int, str]] = {
    "out-is-a-file": (["run", *TOY, "--out", "{tmp}/a-file"], 3, "--out {tmp}/a-file: is a file"),
    "out-under-a-file": (["run", *TOY, "--out", "{tmp}/a-file/res"], 3, "which is a file, not a directory"),
    "cuda-unavailable": (["run", *TOY, "--device", "cuda"], 3, "--device cuda: CUDA is not available on this machine"),
    "device-bogus": (["run", *TOY, "--device", "bogus"], 2, "--device bogus: not a device name"),
    "task-unknown": (["run", "--task", "nope"], 2, "--task nope: unknown task 'nope'; available: saddle"),
    "task-empty": (["run", "--task", ""], 2, "--task: the list is empty; name at least one of saddle"),
    "optimizers-empty": (["run", *TOY, "--optimizers", ""], 2, "--optimizers: the list is empty"),
    "optimizers-unknown": (["run", *TOY, "--optimizers", "andi,nope"], 2, "unknown arm 'nope'"),
    # 0, negative and too short get one message: the minimum of the fair protocol's WSD schedule
    "steps-0": (["run", *TOY, "--steps", "0"], 2, "--steps 0: too few steps for the wsd schedule"),
    "steps-negative": (["run", *TOY, "--steps", "-5"], 2, "--steps -5: too few steps for the wsd schedule"),
    "steps-1": (["run", *TOY, "--steps", "1"], 2, "--steps 1: too few steps for the wsd schedule"),
    "threads-0": (["quick", "--size", "smoke", "--threads", "0"], 2, "--threads 0: must be >= 1"),
    "data-missing": (
        ["run", "--task", "saddle", "--size", "smoke", "--data-root", "{tmp}/empty-data"],
        3,
        f"{FMNIST} is missing under {{tmp}}/empty-data/FashionMNIST/raw and ANDI_DATA_DOWNLOAD=0 forbids downloads",
    ),
    "data-bad-checksum": (
        ["run", "--task", "saddle", "--size", "smoke", "--data-root", "{tmp}/bad-data"],
        3,
        f"checksum mismatch for {FMNIST}",
    ),
    "report-not-a-directory": (["report", "{tmp}/a-file"], 3, "report {tmp}/a-file: not a directory"),
    "report-no-results": (["report", "{tmp}/empty-data"], 3, "no manifest-*.json in {tmp}/empty-data"),
}
#: One case per check, run through the real entry point as well.
SUBPROCESS_CASES = ("out-is-a-file", "cuda-unavailable", "steps-1", "task-empty", "data-missing")


def _scratch(tmp: Path) -> Path:
    (tmp / "a-file").write_text("not a directory\n")
    (tmp / "empty-data").mkdir()
    (tmp / "bad-data" / FMNIST).parent.mkdir(parents=True)
    (tmp / "bad-data" / FMNIST).write_bytes(b"not the Fashion-MNIST training images")
    return tmp


def _argv(case: str, tmp: Path) -> list[str]:
    argv = [a.format(tmp=tmp) for a in ERRORS[case][0]]
    if argv[0] != "report" and "--out" not in argv:
        argv += ["--out", str(tmp / "out")]
    return argv


def assert_one_line_error(status: int, stderr: str, case: str, tmp: Path) -> None:
    expected_status, fragment = ERRORS[case][1], ERRORS[case][2].format(tmp=tmp)
    assert status == expected_status, stderr
    assert "Traceback" not in stderr, stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("andi-bench: error: "), stderr
    assert fragment in lines[0]
    assert not (tmp / "out").exists()  # checked before the first run: nothing written


@pytest.mark.parametrize("case", list(ERRORS))
def test_mistake_is_one_line_before_any_run(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # also on a machine with a GPU
    tmp = _scratch(tmp_path)
    status = cli.main(_argv(case, tmp))
    assert_one_line_error(status, capsys.readouterr().err, case, tmp)


def test_steps_messages_agree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--steps 0, -5 and 1 get the same explanation and the same fix (the schedule's minimum: 2 steps)."""
    tails = set()
    for case in ("steps-0", "steps-negative", "steps-1"):
        assert cli.main(_argv(case, tmp_path)) == 2
        tails.add(capsys.readouterr().err.split(":", 3)[-1].strip())
    assert tails == {
        "too few steps for the wsd schedule (2% warmup + 40% decay) of protocol 'fair'; use --steps 2 or more"
    }


def test_debug_adds_the_traceback(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert cli.main(["run", *TOY, "--device", "bogus", "--debug", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and "UsageError" in err
    assert err.splitlines()[-1] == "andi-bench: error: --device bogus: not a device name; use cpu, cuda, cuda:N or mps"


def test_argparse_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--size", "huge"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --size: invalid choice: 'huge'" in err and "--help" in err


# ------------------------------------------------------------------------------------ the real entry point
def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("ANDI_DATA_ROOT", "ANDI_DATA_VERIFY")}
    # No GPU (so "cuda" is unavailable everywhere), no downloads (offline), no progress bars.
    env.update(CUDA_VISIBLE_DEVICES="", ANDI_DATA_DOWNLOAD="0", CI="true")
    return env


def _andi_bench(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "andi.bench", *argv], capture_output=True, text=True, env=_env(), cwd=cwd, timeout=300
    )


@pytest.fixture(scope="module")
def entry_point(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, tuple[Path, Future]]]:
    """``{case: (scratch folder, future of the CompletedProcess)}`` for the subprocess cases, started at once."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = {}
        for case in SUBPROCESS_CASES:
            tmp = _scratch(tmp_path_factory.mktemp(case))
            jobs[case] = (tmp, pool.submit(_andi_bench, _argv(case, tmp), tmp))
        try:
            yield jobs
        finally:
            for _, future in jobs.values():
                future.cancel()


@pytest.mark.parametrize("case", SUBPROCESS_CASES)
def test_real_entry_point(entry_point: dict[str, tuple[Path, Future]], case: str) -> None:
    tmp, future = entry_point[case]
    res = future.result()
    assert_one_line_error(res.returncode, res.stderr, case, tmp)


def test_unwritable_out_fails_before_any_run(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes through read-only permissions (test_preflight.py checks the probe)")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        res = _andi_bench(["run", *TOY, "--out", str(ro / "results")], tmp_path)
    finally:
        ro.chmod(0o755)
    assert res.returncode == 3 and "Traceback" not in res.stderr
    assert res.stderr.splitlines() == [
        f"andi-bench: error: --out {ro / 'results'}: cannot write in {ro} (Permission denied); choose a writable --out"
    ]
    assert not (ro / "results").exists()
