"""The declared protocols: the replay equals the paper's script, the fair protocol's budgets and seeds."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from andi.bench import protocols as P


# ------------------------------------------------------------------------------------------------ replay
def test_replay_constants_equal_the_script() -> None:
    r = P.REPLAY
    assert (P.TRAIN_STEPS, P.BATCH_SIZE, P.EVAL_INTERVAL) == (2500, 128, 50)
    assert (r.steps, r.batch_size, r.train_record_every) == (2500, 128, 50)
    assert r.seeds == (42, 1337) and r.search_seed == 42
    assert r.andi_grid == (0.2, 0.1, 0.05, 0.02, 0.01, 0.005)
    assert r.andi_optimizer == "andi-reference" and r.muon_optimizer == "muon-andi-paper"
    assert (r.schedule, r.roles, r.eval_split) == ("constant", "all", "none")
    assert r.fixed_lr("adamw", "gpt") == 3e-4
    assert r.fixed_lr("adamw", "saddle") == r.fixed_lr("adamw", "cifar") == 1e-3
    assert r.fixed_lr("muon-andi-paper", "gpt") == 0.02
    assert r.fixed_lr("muon-andi-paper", "saddle") == r.fixed_lr("muon-andi-paper", "cifar") == 0.05
    assert r.label("muon-andi-paper") == "ANDI-script Muon"
    assert dict(r.paper_andi_lr) == {"saddle": 0.1, "cifar": 0.005, "gpt": 0.05}
    with pytest.raises(KeyError, match="only ANDI is searched"):
        r.fixed_lr("andi-reference", "gpt")


def test_replay_run_configs_at_full_size() -> None:
    r = P.REPLAY
    steps, every = r.resolve("full", None)
    assert (steps, every) == (2500, 50)
    adamw = r.config("adamw", "gpt", 3e-4, 1337, size="full", steps=steps, record_every=every)
    assert (adamw.optimizer, adamw.lr, adamw.steps, adamw.batch_size) == ("adamw", 3e-4, 2500, 128)
    assert (adamw.init_seed, adamw.data_seed) == (1337, 1337)
    assert adamw.weight_decay == 0.01  # torch AdamW default, kept by the script
    assert (adamw.schedule, adamw.roles, adamw.eval_split, adamw.train_record_every) == ("constant", "all", "none", 50)
    andi = r.config("andi-reference", "cifar", 0.005, 42, size="full", steps=steps, record_every=every)
    assert andi.weight_decay == 0.0 and andi.optimizer == "andi-reference"
    # Smaller sizes keep 50 recorded points over the task's default step count.
    assert r.resolve("cpu", 300) == (300, 6)
    assert r.resolve("smoke", 20) == (20, 1)
    with pytest.raises(ValueError, match="step count"):
        r.resolve("cpu", None)


@pytest.mark.parametrize(
    ("losses", "expected"),
    [
        ([0.5, 0.3, 0.4, 0.9, 1.0, 2.0], 1),  # lowest
        ([0.5, 0.3, 0.3, 0.2, 0.2, 2.0], 3),  # tie keeps the earlier value
        ([math.nan, 0.7, math.nan, 0.6, 0.9, 1.0], 3),  # NaN skipped
        ([math.nan] * 6, 0),  # all NaN -> the first grid value (0.2)
        ([math.nan, math.nan, 0.9, math.nan, math.nan, math.nan], 2),
    ],
)
def test_replay_selection_rule(losses: list[float], expected: int) -> None:
    assert P.select_replay_lr(losses) == expected
    records = [{"train": {"loss": [9.0, v]}} for v in losses]
    assert P.REPLAY.select(records) == expected


def test_replay_selection_treats_missing_records_as_nan() -> None:
    records = [{"train": {"loss": []}}, {"train": {"loss": [1.0, None]}}, {"train": {"loss": [2.0, 0.4]}}]
    assert P.REPLAY.select(records) == 2


# -------------------------------------------------------------------------------------------------- fair
def test_fair_grids_are_declared_and_equal_in_size() -> None:
    f = P.FAIR
    assert f.ks == tuple(range(-4, 4)) and f.factor == 2.0
    bases = {"adamw": 1e-3, "muon": 0.02, "andi": 0.02}
    for arm in f.arms:
        grid = f.grid(arm, "gpt")
        assert len(grid) == 8, arm.name
        assert max(grid) / min(grid) == pytest.approx(128.0)
        assert all(b / a == pytest.approx(2.0) for a, b in itertools.pairwise(grid))
        if arm.name in bases:
            assert grid[4] == pytest.approx(bases[arm.name])
    # ANDI's grid covers the paper's winners (0.005 ... 0.1).
    andi = f.grid("andi", "cifar")
    assert min(andi) == pytest.approx(0.00125) and max(andi) == pytest.approx(0.16)
    assert f.budget() == 8


def test_fair_seeds_disjoint_enforced() -> None:
    assert set(P.FAIR.tuning_seeds).isdisjoint(P.FAIR.reporting_seeds)
    assert P.FAIR.tuning_seeds == (0,) and P.FAIR.reporting_seeds == (1001, 1002, 1003, 1004, 1005)
    with pytest.raises(ValueError, match="disjoint"):
        dataclasses.replace(P.FAIR, tuning_seeds=(0, 1001))
    with pytest.raises(ValueError, match="at least 3"):
        dataclasses.replace(P.FAIR, reporting_seeds=(1001, 1002))
    with pytest.raises(ValueError, match="reserved for the replay"):
        dataclasses.replace(P.FAIR, reporting_seeds=(42, 1001, 1002))


def test_edge_rule() -> None:
    f = P.FAIR
    grid = f.grid("andi", "gpt")
    assert f.extension(grid, grid[3]) == ()
    assert f.extension(grid, grid[0]) == pytest.approx((grid[0] / 2, grid[0] / 4))
    assert f.extension(grid, grid[-1]) == pytest.approx((grid[-1] * 2, grid[-1] * 4))
    assert dataclasses.replace(f, edge_extension=0).extension(grid, grid[0]) == ()


def test_fair_selection_respects_direction_and_failures() -> None:
    assert P.select_fair_lr([0.5, 0.3, None, 0.3], higher_is_better=False) == 1
    assert P.select_fair_lr([0.5, 0.9, math.nan, 0.95], higher_is_better=True) == 3
    assert P.select_fair_lr([None, math.inf, math.nan], higher_is_better=False) == 0


def test_fair_configs_use_one_schedule_and_split_by_stage() -> None:
    f = P.FAIR
    adamw = f.config("adamw", "gpt", 1e-3, 0, split="val", size="cpu")
    muon = f.config("muon", "gpt", 0.02, 1001, split="test", size="cpu", aux_lr=5e-4)
    andi = f.config("andi", "saddle", 0.02, 1001, split="test", size="cpu")
    for c in (adamw, muon, andi):
        assert (c.schedule, c.warmup_frac, c.decay_frac) == ("wsd", 0.02, 0.4)
        assert c.weight_decay == 0.0
    assert adamw.eval_split == "val" and muon.eval_split == "test"
    assert (muon.init_seed, muon.data_seed) == (1001, 1001)
    assert dict(adamw.optimizer_kwargs)["betas"] == (0.9, 0.95)  # GPT
    assert dict(f.config("adamw", "cifar", 1e-3, 0, split="val", size="cpu").optimizer_kwargs)["betas"] == (0.9, 0.999)
    kw = dict(muon.optimizer_kwargs)
    assert (kw["aux_lr"], kw["aux_betas"], kw["aux_eps"]) == (5e-4, (0.9, 0.95), 1e-10)
    assert (andi.roles, adamw.roles, muon.roles) == ("all", "all", "standard")
    with pytest.raises(ValueError, match="aux_lr"):
        f.config("muon", "gpt", 0.02, 0, split="val", size="cpu")
    with pytest.raises(ValueError, match="'val'"):
        f.config("andi", "gpt", 0.02, 0, split="none", size="cpu")


def test_adamw_is_tuned_first() -> None:
    order = P.FAIR.ordered_arms(["andi", "muon"])
    assert [a.name for a in order] == ["adamw", "andi", "muon"]


def test_quick_protocols_equal_budget() -> None:
    for q in (P.QUICK, P.QUICK_SMOKE):
        assert [a.name for a in q.arms] == ["adamw", "muon", "andi"]
        assert q.ks == (-1, 0, 1) and q.factor == 4.0
        assert q.grid("andi", "gpt") == pytest.approx((0.005, 0.02, 0.08))
        sizes = {len(q.grid(a, t)) for a in q.arms for t in q.tasks}
        assert sizes == {3}
        assert q.tuning_seeds == (0,) and len(q.reporting_seeds) == 2
        assert set(q.tuning_seeds).isdisjoint(q.reporting_seeds)
        assert q.evidence is False and q.tasks == ("saddle", "cifar", "gpt")
    assert P.get_protocol("quick") is P.QUICK
    with pytest.raises(KeyError, match="unknown protocol"):
        P.get_protocol("nope")


def test_protocols_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.FAIR.ks = (0,)  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        P.REPLAY.steps = 10  # type: ignore[misc]


@pytest.mark.filterwarnings("ignore:.*approximate CIFAR-10 copy:UserWarning")
@pytest.mark.parametrize("arm", [a.name for a in P.FAIR.arms])
def test_every_fair_arm_runs_through_the_registry(arm: str) -> None:
    """Each declared arm's optimizer name and fixed kwargs are accepted by andi.create_optimizer."""
    import andi
    from andi.bench.execution.runner import run

    spec = P.FAIR.arm(arm)
    if spec.optimizer not in andi.list_optimizers():
        pytest.skip(f"{spec.optimizer} is not installed")
    cfg = dataclasses.replace(
        P.FAIR.config(
            spec,
            "saddle",
            spec.base("saddle"),
            0,
            split="val",
            size="smoke",
            aux_lr=1e-3 if spec.hybrid else None,
            steps=2,
        ),
        eval_every=0,
    )
    record = run(cfg)
    assert record["status"] == "ok" and record["final"]["value"] is not None
