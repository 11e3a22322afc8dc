"""The machine misbehaving under ``andi-bench``: a full disk, over-long paths, an ASCII-only terminal, a closed pipe.
Each gives one line and exit 3 (or a clean exit), no traceback, no partial file, and no finished record lost."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_shared_results import _argv, _env

from andi.bench import cli
from andi.bench.execution import store as store_module
from andi.bench.execution.executors import ENV_RUN_FN


def _records(out: Path) -> list[Path]:
    return [p for p in out.glob("*.json") if not p.name.startswith("manifest-")]


@contextlib.contextmanager
def _small_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, records_that_fit: int) -> Iterator[Path]:
    """A results folder on which the disk fills after a few records: a real 96 KiB tmpfs where the tests run as root
    and may mount, else a store whose writes fail with ENOSPC after ``records_that_fit`` records."""
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = False
    if hasattr(os, "getuid") and os.getuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(folder)]).returncode == 0
    if not mounted:
        real = store_module._atomic_write_json
        count = {"n": 0}

        def filling(path: Path, obj: object) -> Path:
            count["n"] += 1
            if count["n"] > records_that_fit:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return real(path, obj)

        monkeypatch.setattr(store_module, "_atomic_write_json", filling)
    try:
        yield folder
    finally:
        if mounted:
            subprocess.run(["umount", str(folder)], check=True)


def test_the_preflight_refuses_a_disk_too_small_for_the_sweep(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("shutil.disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10_000, 10_000))
    monkeypatch.setenv(ENV_RUN_FN, "_bench_fakes:fake_record")
    assert cli.main(_argv(tmp_path / "out", synthetic_data_root)) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "MB free, and this sweep's" in err and "need about" in err
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_a_disk_that_fills_during_the_sweep_gives_one_line_and_keeps_every_finished_record(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(ENV_RUN_FN, "_bench_fakes:fake_record")
    monkeypatch.setattr(cli, "check_free_space", lambda *a, **k: None)  # the preflight would refuse this disk
    with _small_disk(tmp_path, monkeypatch, records_that_fit=3) as disk:
        status = cli.main([*_argv(disk / "out", synthetic_data_root), "--executor", "serial"])
        err = capsys.readouterr().err
        assert status == 3, err
        lines = [line for line in err.splitlines() if line.startswith("andi-bench: error:")]
        assert len(lines) == 1 and "No space left on device" in lines[0] and "Traceback" not in err
        assert "finished records are kept" in lines[0]
        out = disk / "out"
        leftovers = [p.name for p in out.iterdir() if p.suffix != ".json"]
        assert leftovers == []  # no claim, no temporary file
        kept = _records(out)
        assert kept
        for path in kept:
            record = json.loads(path.read_text())
            assert record["key"] == path.stem


def test_an_over_long_out_is_one_line(
    tmp_path: Path, synthetic_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for out in (tmp_path / ("x" * 300), tmp_path.joinpath(*["d" * 200] * 25)):
        assert cli.main(_argv(out, synthetic_data_root)) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("andi-bench: error: --out ")
        assert "shorter --out" in err or "File name too long" in err


def test_an_ascii_only_terminal_gets_the_whole_sweep_and_its_report(tmp_path: Path, synthetic_data_root: Path) -> None:
    out, markers = tmp_path / "out", tmp_path / "markers"
    markers.mkdir()
    env = {**_env(markers), "PYTHONIOENCODING": "ascii", "LC_ALL": "C"}
    argv = [a for a in _argv(out, synthetic_data_root) if a != "--no-report"]
    done = subprocess.run(
        [sys.executable, "-m", "andi.bench", *argv, "--workers", "2"], env=env, capture_output=True, timeout=300
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (out / "report.md").exists()
    assert b"Traceback" not in done.stderr
    step = subprocess.run(
        [sys.executable, "-m", "andi.bench", "step", "--shapes", "tiny", "--optimizers", "andi-single", "--repeats",
         "2", "--warmup", "1", "--no-plot", "--out", str(tmp_path / "step")],
        env=env, capture_output=True, timeout=300,
    )  # fmt: skip
    assert step.returncode == 0, step.stderr.decode()


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    """``andi-bench list | head -1``: the reader leaves early; no BrokenPipeError traceback."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "andi.bench", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(5)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_two_sweeps_that_differ_in_steps_share_a_folder_and_both_stay_in_the_report(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_RUN_FN, "_bench_fakes:fake_record")
    out = tmp_path / "out"
    base = [a for a in _argv(out, synthetic_data_root) if a != "saddle,gpt"]
    base[base.index("--task") + 1 : base.index("--task") + 1] = ["saddle"]
    for steps in ("40", "60", "40"):  # the third is the first again: it reuses its manifest
        assert cli.main([*base, "--steps", steps]) == 0
    manifests = sorted(p.name for p in out.glob("manifest-*.json"))
    assert len(manifests) == 2 and "manifest-quick-smoke-saddle-smoke.json" in manifests
    steps = {json.loads((out / name).read_text())["steps"] for name in manifests}
    assert steps == {40, 60}
    assert cli.main(["report", str(out), "--no-figures"]) == 0
    md = (out / "report.md").read_text()
    assert md.count("## Protocol `quick-smoke` — size `smoke` — variant `") == 2
    assert "Every run: 40 steps of batch" in md and "Every run: 60 steps of batch" in md
