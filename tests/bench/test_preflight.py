"""The checks ``andi-bench`` makes before the first run, in-process (the CLI tests run them end to end)."""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path

import pytest

from andi.bench import preflight
from andi.bench.errors import SetupError, UsageError, one_line
from andi.bench.protocols import FAIR, REPLAY


def test_unwritable_directory_is_a_setup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What a read-only directory does for a non-root user (root writes through permission bits)."""

    def denied(*args: object, **kwargs: object) -> str:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkdtemp", denied)
    with pytest.raises(SetupError, match=r"--out .*/results: cannot write in .* \(Permission denied\)"):
        preflight.check_writable_dir(tmp_path / "results", "--out")


def test_writable_directory_check_leaves_nothing(tmp_path: Path) -> None:
    preflight.check_writable_dir(tmp_path / "a" / "b", "--out")
    assert list(tmp_path.iterdir()) == []


def test_min_steps_of_the_schedules() -> None:
    assert preflight.min_steps("wsd", 0.02, 0.4) == 2
    assert preflight.min_steps("constant") == 1
    preflight.check_steps(FAIR, 2)
    preflight.check_steps(REPLAY, 1)
    with pytest.raises(UsageError, match="use --steps 1 or more"):
        preflight.check_steps(REPLAY, 0)


def test_one_line_joins_multi_line_messages() -> None:
    text = "checksum mismatch for x at /p:\n  expected sha256 a\n  actual   sha256 b\nFix: delete it."
    assert one_line(text) == "checksum mismatch for x at /p; expected sha256 a; actual sha256 b; Fix: delete it."
    assert str(UsageError("a\nb")) == "a; b"
