"""Resume by config key: a killed sweep restarts without recomputing finished runs; corrupt files are redone."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest
from _bench_fakes import CountingRun, fake_record

from andi.bench import protocols as P
from andi.bench.execution.runner import RunConfig
from andi.bench.execution.sweep import ResultStore, Sweep, run_fair, run_replay, validate_record


def _configs(n: int = 3) -> list[RunConfig]:
    return [RunConfig(task="saddle", size="smoke", optimizer="adamw", lr=1e-3 * 2**i, steps=30) for i in range(n)]


def test_kill_after_one_run_then_resume_skips_it(tmp_path: Path) -> None:
    cfgs = _configs()
    killed = CountingRun(fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        Sweep(tmp_path, run_fn=killed).run_many(cfgs)
    assert killed.calls == [cfgs[0].key()]
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{cfgs[0].key()}.json"]  # no partial files

    resumed = CountingRun()
    sweep = Sweep(tmp_path, run_fn=resumed)
    records = sweep.run_many(cfgs)
    assert resumed.calls == [cfgs[1].key(), cfgs[2].key()]  # the first is not recomputed
    assert (sweep.computed, sweep.reused) == (2, 1)
    assert [r["key"] for r in records] == [c.key() for c in cfgs]
    # The reused record is the stored one, field for field.
    assert records[0] == json.loads((tmp_path / f"{cfgs[0].key()}.json").read_text())

    again = CountingRun()
    Sweep(tmp_path, run_fn=again).run_many(cfgs)
    assert again.calls == []


@pytest.mark.parametrize(
    "corrupt",
    [
        lambda rec: '{"schema": 1, "key": "abc", "status": "ok", "train": {"steps": [0, 1',  # truncated write
        lambda rec: "not json at all",
        lambda rec: json.dumps({**rec, "schema": 99}),  # wrong schema
        lambda rec: json.dumps({**rec, "key": "0" * 64}),  # key mismatch
        lambda rec: json.dumps({**rec, "config": {**rec["config"], "lr": 123.0}}),  # config mismatch
        lambda rec: json.dumps({k: v for k, v in rec.items() if k != "timing"}),  # missing field
        lambda rec: json.dumps({**rec, "train": {"steps": [0, 1], "loss": [1.0]}}),  # misaligned curve
    ],
    ids=["truncated", "garbage", "schema", "key", "config", "missing-field", "misaligned"],
)
def test_corrupt_record_is_reported_and_recomputed(tmp_path: Path, caplog: pytest.LogCaptureFixture, corrupt) -> None:
    cfg = _configs(1)[0]
    Sweep(tmp_path, run_fn=CountingRun()).run(cfg)
    path = tmp_path / f"{cfg.key()}.json"
    good = json.loads(path.read_text())
    path.write_text(corrupt(good))

    rerun = CountingRun()
    sweep = Sweep(tmp_path, run_fn=rerun)
    with caplog.at_level(logging.WARNING, logger="andi.bench"):
        record = sweep.run(cfg)
    assert sweep.store.corrupt == [path] and (sweep.computed, sweep.reused) == (1, 0)
    assert rerun.calls == [cfg.key()]  # recomputed, not used
    messages = [r.getMessage() for r in caplog.records]
    assert any(str(path) in m and "corrupt" in m and m.endswith("the run will be recomputed") for m in messages)
    assert record == good
    assert validate_record(json.loads(path.read_text()), cfg.key(), cfg.to_dict()) == []
    assert (tmp_path / f"{cfg.key()}.json.corrupt").exists()  # kept aside for inspection


def test_invalid_record_from_runner_is_an_error(tmp_path: Path) -> None:
    def bad_run(config, **kw):
        rec = fake_record(config)
        rec["key"] = "f" * 64
        return rec

    with pytest.raises(RuntimeError, match="invalid record"):
        Sweep(tmp_path, run_fn=bad_run).run(_configs(1)[0])
    assert list(tmp_path.glob("*.json")) == []


def test_store_scans_only_valid_records(tmp_path: Path) -> None:
    cfgs = _configs(2)
    Sweep(tmp_path, run_fn=CountingRun()).run_many(cfgs)
    (tmp_path / f"{cfgs[1].key()}.json").write_text("{")
    (tmp_path / "leftover.json.123.tmp").write_text("partial")
    keys = [r["key"] for r in ResultStore(tmp_path).records()]
    assert keys == [cfgs[0].key()]


def test_fair_protocol_resumes_mid_protocol(tmp_path: Path) -> None:
    proto = P.QUICK_SMOKE
    first = CountingRun(fail_on_call=5)  # dies while tuning the second arm
    with pytest.raises(KeyboardInterrupt):
        run_fair(proto, "saddle", Sweep(tmp_path, run_fn=first), size="smoke")
    done = set(first.calls)
    assert len(done) == 4

    second = CountingRun()
    manifest = run_fair(proto, "saddle", Sweep(tmp_path, run_fn=second), size="smoke")
    assert done.isdisjoint(second.calls)
    n_runs = len(proto.arms) * (len(proto.ks) * len(proto.tuning_seeds) + len(proto.reporting_seeds))
    assert len(done) + len(second.calls) == n_runs
    assert [a["arm"] for a in manifest["arms"]] == ["adamw", "muon", "andi"]
    adamw, muon = manifest["arms"][0], manifest["arms"][1]
    assert muon["aux_lr"] == adamw["chosen_lr"]  # hybrid aux lr = tuned AdamW lr
    for arm in manifest["arms"]:
        assert arm["trials"] == 3 and len(arm["reporting"]) == 2
        scores = [t["score"] for t in arm["tuning"]]
        assert arm["chosen_lr"] == arm["tuning"][scores.index(min(scores))]["lr"]


def test_fair_edge_extension_runs_two_more_points(tmp_path: Path) -> None:
    # fake_record's optimum for andi is 0.01; a grid centred on 0.16 puts the winner on its lower edge.
    arms = tuple(a if a.name != "andi" else P.ArmSpec("andi", "andi", 0.16, roles="all") for a in P.CORE_ARMS)
    proto = P.FairProtocol(name="edge", arms=arms, ks=(-1, 0, 1), reporting_seeds=(1001, 1002, 1003))
    manifest = run_fair(proto, "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke", arms=["andi"])
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi")
    assert andi["edge_extended"] is True and andi["trials"] == 5
    assert andi["extension"] == pytest.approx([0.04, 0.02])
    assert andi["chosen_lr"] == pytest.approx(0.02)
    assert [a["arm"] for a in manifest["arms"]] == ["adamw", "andi"]  # adamw added for the target


def test_replay_protocol_reuses_the_search_run(tmp_path: Path) -> None:
    runs = CountingRun()
    manifest = run_replay(P.REPLAY, "gpt", Sweep(tmp_path, run_fn=runs), size="smoke", steps=40)
    # 6 grid points on seed 42 + the winner on seed 1337 + 2 fixed arms x 2 seeds.
    assert len(runs.calls) == 6 + 1 + 4
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi-reference")
    assert andi["chosen_lr"] == 0.05  # fake optimum for andi-reference
    assert andi["tuning"][P.ANDI_GRID.index(0.05)]["keys"][0] == andi["reporting"][0]
    assert manifest["record_every"] == 1 and manifest["steps"] == 40


def test_second_corruption_keeps_the_first_corrupt_file(tmp_path: Path) -> None:
    cfg = _configs(1)[0]
    path = tmp_path / f"{cfg.key()}.json"
    for garbage in ("first garbage", "second garbage", "third garbage"):
        Sweep(tmp_path, run_fn=CountingRun()).run(cfg)
        path.write_text(garbage)
    Sweep(tmp_path, run_fn=CountingRun()).run(cfg)
    kept = {p.name: p.read_text() for p in tmp_path.glob("*.corrupt*")}
    assert kept == {
        f"{path.name}.corrupt": "first garbage",
        f"{path.name}.corrupt.1": "second garbage",
        f"{path.name}.corrupt.2": "third garbage",
    }


def test_records_and_manifests_follow_the_umask(tmp_path: Path) -> None:
    """Everyone who may read the report may read the results: 0644 under the usual umask, not mkstemp's 0600."""
    old = os.umask(0o022)
    try:
        run_fair(P.QUICK_SMOKE, "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke")
    finally:
        os.umask(old)
    files = list(tmp_path.glob("*.json"))
    assert len(files) > 1 and any(p.name.startswith("manifest-") for p in files)
    assert {stat.S_IMODE(p.stat().st_mode) for p in files} == {0o644}
