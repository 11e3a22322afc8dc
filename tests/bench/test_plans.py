"""Plans are pure generators: stages of configs out, records in, the manifest at the end; stages are wide, and
the sweep runs every task's stages together."""

from __future__ import annotations

from pathlib import Path

import pytest
from _bench_fakes import CountingRun, fake_record

from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_protocol
from andi.bench.protocols.plans import Stage, fair_plan, planned_runs, replay_plan


def _drive(plan) -> tuple[list[Stage], dict]:
    """Run ``plan`` with the fake runner, no sweep, no files: its stages and its manifest."""
    stages = []
    stage = next(plan)
    while True:
        stages.append(stage)
        try:
            stage = plan.send([fake_record(c) for c in stage.configs])
        except StopIteration as done:
            return stages, done.value


def test_fair_plan_stages_are_wide_and_respect_the_aux_lr() -> None:
    stages, manifest = _drive(fair_plan(P.QUICK_SMOKE, "saddle", size="smoke"))
    # AdamW and ANDI tune at once; Muon (hybrid) starts with AdamW's reporting runs, once AdamW's lr is chosen.
    assert [sorted(set(s.arms)) for s in stages] == [["adamw", "andi"], ["adamw", "andi", "muon"], ["muon"]]
    assert [len(s.configs) for s in stages] == [6, 7, 2]
    adamw = next(a for a in manifest["arms"] if a["arm"] == "adamw")
    muon_configs = [c for s in stages for c, arm in zip(s.configs, s.arms) if arm == "muon"]
    assert {dict(c.optimizer_kwargs)["aux_lr"] for c in muon_configs} == {adamw["chosen_lr"]}
    assert [a["arm"] for a in manifest["arms"]] == ["adamw", "muon", "andi"]


def test_replay_plan_runs_the_search_with_the_fixed_arms() -> None:
    stages, manifest = _drive(replay_plan(P.REPLAY, "gpt", size="smoke", steps=40))
    assert [len(s.configs) for s in stages] == [6 + 4, 2]
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi-reference")
    assert andi["reporting"][0] == andi["tuning"][P.ANDI_GRID.index(andi["chosen_lr"])]["keys"][0]


def test_planned_runs() -> None:
    assert planned_runs(P.QUICK_SMOKE) == {"adamw": 5, "muon": 5, "andi": 5}
    assert planned_runs(P.FAIR, ["andi"]) == {"adamw": 13, "andi": 13}
    assert planned_runs(P.REPLAY) == {"adamw": 2, "muon-andi-paper": 2, "andi-reference": 8}


def test_tasks_run_together(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each round executes the union of every task's current stage, so several tasks fill the workers."""
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    batches = []
    run_many = sweep.run_many
    monkeypatch.setattr(sweep, "run_many", lambda configs, **kw: batches.append(configs) or run_many(configs, **kw))
    manifests = run_protocol(P.QUICK_SMOKE, sweep, tasks=["saddle", "gpt", "cifar"], size="smoke")
    assert [m["task"] for m in manifests] == ["saddle", "gpt", "cifar"]
    assert [len(b) for b in batches] == [18, 21, 6]
    assert [sorted({c.task for c in b}) for b in batches] == [["cifar", "gpt", "saddle"]] * 3
