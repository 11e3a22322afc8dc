"""The launcher of the multi-process tests: which worker failures earn one retry."""

from __future__ import annotations

from pathlib import Path

import _launch
import pytest
import torch


def _fake_runs(monkeypatch: pytest.MonkeyPatch, runs: list[tuple[list[int | None], list[str]]]) -> list[int]:
    calls: list[int] = []

    def run_once(world_size: int, args: list[str], timeout: float) -> tuple[list[int | None], list[str]]:
        calls.append(world_size)
        return runs[len(calls) - 1]

    monkeypatch.setattr(_launch, "_run_once", run_once)
    return calls


def _results(out: Path) -> None:
    for r in range(2):
        torch.save({"scenario": {"rank": r}}, out / f"rank{r}.pt")


def test_a_rank_killed_by_its_own_signal_is_retried_once(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    crash = ([1, -6], ["Connection reset by peer", "free(): invalid pointer"])
    calls = _fake_runs(monkeypatch, [crash, ([0, 0], ["", ""])])
    _results(tmp_path)
    with pytest.warns(UserWarning, match="free\\(\\): invalid pointer"):
        results = _launch.launch(2, ["x"], tmp_path)
    assert len(calls) == 2 and [r["scenario"]["rank"] for r in results] == [0, 1]


def test_a_second_crash_fails(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    crash = ([1, -6], ["", "free(): invalid pointer"])
    calls = _fake_runs(monkeypatch, [crash, crash])
    with pytest.warns(UserWarning), pytest.raises(RuntimeError, match="exit -6"):
        _launch.launch(2, ["x"], tmp_path)
    assert len(calls) == 2


@pytest.mark.parametrize(
    "failure",
    [
        ([1, 1], ["AssertionError", "AssertionError"]),  # a Python error of ours: no retry
        ([-9, -9], ["[launch] killed after 120 s", "[launch] killed after 120 s"]),  # a timeout: no retry
    ],
)
def test_errors_and_timeouts_are_not_retried(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, failure: tuple[list[int | None], list[str]]
) -> None:
    calls = _fake_runs(monkeypatch, [failure])
    with pytest.raises(RuntimeError, match="distributed workers failed"):
        _launch.launch(2, ["x"], tmp_path)
    assert len(calls) == 1
