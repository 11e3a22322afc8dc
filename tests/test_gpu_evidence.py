"""``scripts/gpu_evidence.sh`` end to end at smoke size on CPU: the script a GPU session runs once must work there.

It runs every part (the GPU tests, the two paper-size GPT studies, the step benchmark, the packed replay and the fair
GPT study) with
``--device cpu --size smoke`` and must leave exactly two files: ``summary.md`` and ``evidence.tar.gz``.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "gpu_evidence.sh"


def _shared_data() -> Path | None:
    for root in (REPO.parent / "shared" / "data", Path(os.environ.get("ANDI_DATA_ROOT", "/nonexistent"))):
        if (root / "FashionMNIST").is_dir() and (root / "tinyshakespeare").is_dir():
            return root
    return None


def test_the_script_runs_end_to_end_at_smoke_size(tmp_path: Path) -> None:
    data = _shared_data()
    if data is None:
        pytest.skip("FashionMNIST and TinyShakespeare are not in ../shared/data (tests never download)")
    out = tmp_path / "evidence-run"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(
        [
            "bash",
            str(SCRIPT),
            "--device",
            "cpu",
            "--size",
            "smoke",
            "--data-root",
            str(data),
            "--out",
            str(out),
            "--budget",
            "400",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert sorted(p.name for p in out.iterdir()) == ["evidence.tar.gz", "summary.md"]
    summary = (out / "summary.md").read_text()
    rows = [line for line in summary.splitlines() if line.startswith("| ") and not line.startswith("| part")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "gpu-tests",
        "replay-v7",
        "gpt-paper-size",
        "step-bench",
        "replay",
        "fair-gpt",
    ]
    assert all(r.split("|")[3].strip() == "ok" for r in rows), summary
    with tarfile.open(out / "evidence.tar.gz") as tar:
        names = set(tar.getnames())
    for wanted in (
        "evidence/replay/report.md",
        "evidence/fair-gpt/report.md",
        "evidence/step/step_bench.md",
        "evidence/env.txt",
        "evidence/logs/gpu-tests.log",
    ):
        assert wanted in names, sorted(names)[:40]


def test_unknown_arguments_are_one_line_errors(tmp_path: Path) -> None:
    done = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "unknown argument --bogus" in done.stderr
