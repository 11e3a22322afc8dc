"""``andi-bench`` without the ``[bench]`` extra: one line naming the extra, exit 3 (the wheel check in ``.ci/run``
runs the same entry point from a fresh virtual environment)."""

from __future__ import annotations

import importlib.util

import pytest

from andi.bench import launcher


def test_missing_bench_packages_are_named_with_the_extra(monkeypatch, capsys) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "numpy" else real(name, *a))
    assert launcher.main(["list"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "numpy" in err and "pip install numpy matplotlib tqdm" in err


def test_with_the_extra_installed_the_cli_runs(capsys) -> None:
    pytest.importorskip("numpy")
    assert launcher.missing_requirements() == []
    assert launcher.main(["list"]) == 0
    assert "tasks:" in capsys.readouterr().out
