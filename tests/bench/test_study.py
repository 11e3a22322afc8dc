"""The evidence study's protocols (``study``, ``study-saddle-full``, ``width``), repeated edge extension, the
``andi-hybrid`` arm's routing and the char-GPT width variants. Fake runners and smoke sizes only: seconds."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest
from _bench_fakes import CountingRun, fake_record

import andi.bench.execution.runner as runner_mod
from andi.bench import cli
from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.protocols.plans import fair_plan, planned_runs
from andi.bench.protocols.study import STUDY_FIVE_SEED_ARMS
from andi.bench.tasks import TASKS, get_task

FAIR_ARM_NAMES = (
    "adamw",
    "muon",
    "andi",
    "andi-hybrid",
    "sgd",
    "sinkgd-l1",
    "sinkgd-l5",
    "rmnp",
    "normuon",
    "scion-colnorm",
    "scion-rownorm",
)
TOYS = ("rosenbrock", "quadratic", "rotated-quadratic", "quadratic-noisy", "rotated-quadratic-noisy")
FOUR = {"adamw", "muon", "andi", "andi-hybrid"}


def _drive(plan) -> dict:
    """Run ``plan`` with :func:`fake_record` (no sweep, no files); its manifest."""
    stage = next(plan)
    while True:
        try:
            stage = plan.send([fake_record(c) for c in stage.configs])
        except StopIteration as done:
            return done.value


# ------------------------------------------------------------------------------------------------ declarations
def test_study_declares_arms_tasks_grid_seeds_and_schedule() -> None:
    s = P.get_protocol("study")
    assert s is P.STUDY and s.evidence
    assert {a.name for a in s.arms} == set(FAIR_ARM_NAMES) == {a.name for a in P.FAIR.arms}
    assert set(s.run_arms()) == set(FAIR_ARM_NAMES)  # `run --protocol study` runs every arm
    assert s.tasks == ("saddle", "cifar", "gpt", "cifar-proj", *TOYS) and set(s.tasks) <= set(TASKS)
    for arm, task in itertools.product(s.arms, s.tasks):
        grid = s.grid(arm, task)
        assert len(grid) == 8 and all(b / a == pytest.approx(2.0) for a, b in itertools.pairwise(grid))
        assert grid == P.FAIR.grid(arm.name, task)  # the fair protocol's grids
    assert (s.edge_extension, s.edge_extension_rounds) == (2, 4)
    # 1 tuning seed; 5 reporting seeds for AdamW, Muon, ANDI, ANDI-hybrid and SGD, the first 3 of them for the
    # relatives (the fallback for a 2-core budget); none reused, none reserved for the replay
    assert s.tuning_seeds == (0,) and s.reporting_seeds == (1001, 1002, 1003, 1004, 1005)
    assert set(s.tuning_seeds).isdisjoint(s.reporting_seeds)
    assert not (set(s.tuning_seeds) | set(s.reporting_seeds)) & {42, 1337}
    five = {"adamw", "muon", "andi", "andi-hybrid", "sgd"}
    for arm in s.arms:
        expected = s.reporting_seeds if arm.name in five else s.reporting_seeds[:3]
        assert s.reporting_seeds_for(arm) == expected, arm.name
    assert s.task_steps == () and "study" in s.description  # every task at its CPU size's steps
    # the same warmup + decay schedule for every arm on every task
    configs = [
        s.config(a, t, a.base(t), 1001, split="test", size="cpu", aux_lr=1e-3 if a.hybrid else None)
        for a in s.arms
        for t in s.tasks
    ]
    assert {(c.schedule, c.warmup_frac, c.decay_frac) for c in configs} == {("wsd", 0.02, 0.4)}
    assert {n: planned_runs(s)[n] for n in ("andi", "rmnp")} == {"andi": 8 + 5, "rmnp": 8 + 3}


def test_reporting_seed_counts_shorten_an_arms_reporting() -> None:
    """The lever for a slower machine: arms reported on the first 3 seeds only, recorded in the spec and manifest."""
    s = dataclasses.replace(P.STUDY, reporting_seed_counts=(("rmnp", 3),))
    assert s.reporting_seeds_for("rmnp") == (1001, 1002, 1003) and len(s.reporting_seeds_for("sinkgd-l1")) == 5
    assert planned_runs(s, ["rmnp"]) == {"adamw": 13, "rmnp": 11}
    assert s.to_dict()["reporting_seed_counts"] == (("rmnp", 3),)
    manifest = _drive(fair_plan(s, "quadratic", size="smoke", arms=["rmnp"]))
    rmnp = next(a for a in manifest["arms"] if a["arm"] == "rmnp")
    assert rmnp["seeds"] == [1001, 1002, 1003] and len(rmnp["reporting"]) == 3


def test_saddle_full_and_width_protocols_are_declared() -> None:
    full = P.get_protocol("study-saddle-full")
    assert full.tasks == ("saddle",) and full.default_size == "full"
    assert {a.name for a in full.arms} == set(full.run_arms()) == FOUR
    assert cli.DEFAULT_SIZES["study-saddle-full"] == "full" and "study" not in cli.DEFAULT_SIZES

    w = P.get_protocol("width")
    assert w.tasks == ("gpt-w64", "gpt-w128", "gpt-w256")
    assert {a.name for a in w.arms} == set(w.run_arms()) == FOUR
    assert all(len(w.grid(a, t)) == 8 for a in w.arms for t in w.tasks)
    assert (w.tuning_seeds, w.reporting_seeds, w.edge_extension_rounds) == ((0,), (1001, 1002), 4)
    assert dict(w.task_steps) == dict.fromkeys(w.tasks, 150)
    for task in w.tasks:  # GPT's AdamW β2 = 0.95 on every width, as on `gpt`
        cfg = w.config("adamw", task, 1e-3, 0, split="val", size="cpu")
        assert dict(cfg.optimizer_kwargs)["betas"] == (0.9, 0.95)


def test_fair_and_quick_specs_keep_their_fields() -> None:
    """The study's new fields stay out of the spec while they hold their defaults: old manifests still merge."""
    new = {"edge_extension_rounds", "reporting_seed_counts", "default_arms", "default_size"}
    for proto in (P.FAIR, P.QUICK, P.QUICK_SMOKE):
        assert proto.edge_extension_rounds == 1 and not new & set(proto.to_dict())
    assert {"edge_extension_rounds", "default_arms"} <= set(P.STUDY.to_dict())
    assert "default_size" in P.STUDY_SADDLE_FULL.to_dict()
    assert P.FAIR.run_arms() == ("adamw", "muon", "andi")
    with pytest.raises(ValueError, match="edge_extension_rounds"):
        dataclasses.replace(P.FAIR, edge_extension_rounds=0)
    with pytest.raises(ValueError, match="reporting seeds"):
        dataclasses.replace(P.FAIR, reporting_seed_counts=(("andi", 2),))
    with pytest.raises(ValueError, match="not one of the arms"):
        dataclasses.replace(P.FAIR, reporting_seed_counts=(("nope", 3),))


# ------------------------------------------------------------------------------------------- edge extension
def _far_protocol(rounds: int) -> P.FairProtocol:
    """fake_record's optimum for andi is lr 0.01; this grid is centred on 0.01 · 2^10, so every point of it (and
    of the first extension round) diverges and the optimum lies three rounds below its lower edge."""
    far = P.ArmSpec("andi", "andi", 0.01 * 2**10, roles="all")
    return P.FairProtocol(
        name=f"far-{rounds}",
        arms=(P.CORE_ARMS[0], far),
        reporting_seeds=(1001, 1002, 1003),
        edge_extension_rounds=rounds,
    )


def test_repeated_edge_extension_moves_the_winner_off_the_edge(tmp_path: Path) -> None:
    manifest = run_fair(_far_protocol(4), "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke", steps=30)
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi")
    assert andi["chosen_lr"] == pytest.approx(0.01)
    assert andi["extension_rounds"] == 4 and andi["edge_extended"] is True
    assert andi["at_edge"] is False and andi["edge_capped"] is False
    assert andi["extension"] == pytest.approx([0.32, 0.16, 0.08, 0.04, 0.02, 0.01, 0.005, 0.0025])
    lrs = [t["lr"] for t in andi["tuning"]]
    assert lrs == sorted(lrs) and min(lrs) < andi["chosen_lr"] < max(lrs) and andi["trials"] == 16
    assert json.loads((tmp_path / "manifest-far-4-saddle-smoke.json").read_text())["arms"][1]["edge_capped"] is False


def test_edge_extension_cap_is_recorded(tmp_path: Path) -> None:
    manifest = run_fair(_far_protocol(2), "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke", steps=30)
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi")
    assert andi["extension_rounds"] == 2 and andi["trials"] == 12
    assert andi["chosen_lr"] == pytest.approx(0.04)  # the lowest lr explored: the cap stopped the search
    assert andi["at_edge"] is True and andi["edge_capped"] is True
    assert manifest["spec"]["edge_extension_rounds"] == 2


def test_one_round_is_the_fair_protocols_single_extension() -> None:
    """A winner still at the edge after fair's one round is edge-capped; the rest of the entry is as before."""
    andi = next(a for a in _drive(fair_plan(_far_protocol(1), "saddle", size="smoke"))["arms"] if a["arm"] == "andi")
    assert andi["extension"] == pytest.approx([0.32, 0.16]) and andi["trials"] == 10
    assert (andi["extension_rounds"], andi["at_edge"], andi["edge_capped"]) == (1, True, True)
    quick = _drive(fair_plan(P.QUICK_SMOKE, "saddle", size="smoke"))
    assert all(a["extension_rounds"] == 0 and a["edge_capped"] is False for a in quick["arms"])


# ------------------------------------------------------------------------------------------------- andi-hybrid
@pytest.mark.filterwarnings("ignore:.*approximate CIFAR-10 copy:UserWarning")
@pytest.mark.parametrize("task", ["saddle", "cifar", "gpt"])
def test_andi_hybrid_routes_exactly_like_muon(task: str, synthetic_data_root: Path) -> None:
    """Same roles, same parameters on the matrix optimizer, same aux AdamW on the rest."""
    hybrid, muon = P.FAIR.arm("andi-hybrid"), P.FAIR.arm("muon")
    assert (hybrid.roles, hybrid.hybrid, hybrid.base_lr) == (muon.roles, muon.hybrid, P.FAIR.arm("andi").base_lr)
    t = get_task(task, "smoke", synthetic_data_root)
    routes = {}
    for arm in (hybrid, muon):
        cfg = P.FAIR.config(arm, task, arm.base(task), 0, split="val", size="smoke", aux_lr=3e-3)
        optimizer, roles = runner_mod.build_optimizer(cfg, t.build_model(0), t)
        groups = {
            g["role"]: (
                "matrix" if g["algorithm"] != "adamw" else "adamw",
                tuple(g["param_names"]),
                (g["lr"], g.get("betas"), g.get("eps")) if g["algorithm"] == "adamw" else None,
            )
            for g in optimizer.param_groups
        }
        routes[arm.name] = (roles, groups)
    assert routes["andi-hybrid"] == routes["muon"]
    roles, groups = routes["muon"]
    assert groups["hidden_matrix"][0] == "matrix" and groups["hidden_matrix"][1]
    assert all(
        g[0] == "adamw" and g[2] == (3e-3, (0.9, 0.95), 1e-10) for r, g in groups.items() if r != "hidden_matrix"
    )


def test_fair_protocol_keeps_andi_on_every_parameter() -> None:
    names = [a.name for a in P.FAIR.arms]
    assert "andi" in names and "andi-hybrid" in names
    assert P.FAIR.arm("andi").roles == "all" and not P.FAIR.arm("andi").hybrid
    assert P.FAIR.arm("andi-hybrid").optimizer == "andi-hybrid"


# ------------------------------------------------------------------------------------------------------- width
def _char_gpt_params(vocab: int, block: int, d: int, layers: int) -> int:
    """Embeddings, per block 2 LayerNorms + fused QKV and output projections + the 4d MLP, final LN, head."""
    return 2 * vocab * d + block * d + layers * (12 * d * d + 13 * d) + 2 * d


@pytest.mark.parametrize(("task", "width"), [("gpt-w64", 64), ("gpt-w128", 128), ("gpt-w256", 256)])
def test_width_tasks_build_models_of_their_width(task: str, width: int, synthetic_data_root: Path) -> None:
    t = get_task(task, "cpu", synthetic_data_root)
    model = t.build_model(0)
    assert model.tok_emb.embedding_dim == width
    assert model.blocks[0][1].num_heads == width // 16 and model.blocks[0][1].head_dim == 16
    assert sum(p.numel() for p in model.parameters()) == _char_gpt_params(len(t.vocab), 64, width, 2)
    assert t.describe()["model"]["n_embd"] == width
    # the base `gpt` at CPU size is the width-64 variant; at the paper's size the width-128 one is the paper's model
    assert TASKS["gpt-w64"].sizes["cpu"] == TASKS["gpt"].sizes["cpu"]
    assert TASKS["gpt-w128"].sizes["full"] == TASKS["gpt"].sizes["full"]
    smoke = get_task(task, "smoke", synthetic_data_root).build_model(0)
    assert smoke.tok_emb.embedding_dim == width // 2


def test_width_manifests_hold_width_and_tuning_scores() -> None:
    for task in P.WIDTH.tasks:
        manifest = _drive(fair_plan(P.WIDTH, task, size="cpu", steps=30))
        assert manifest["task_model"]["n_embd"] == int(task.removeprefix("gpt-w"))
        assert {a["arm"] for a in manifest["arms"]} == FOUR
        for arm in manifest["arms"]:
            assert len(arm["tuning"]) >= 8 and all({"lr", "score"} <= set(t) for t in arm["tuning"])
            assert len(arm["reporting"]) == len(P.WIDTH.reporting_seeds)


# --------------------------------------------------------------------------------------------------------- CLI
@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> CountingRun:
    fake = CountingRun()
    monkeypatch.setattr(runner_mod, "run", fake)
    return fake


def test_run_study_runs_every_arm_by_default(
    tmp_path: Path, fake_runner: CountingRun, synthetic_data_root: Path
) -> None:
    common = ["--out", str(tmp_path), "--no-progress", "--no-report", "--data-root", str(synthetic_data_root)]
    common += ["--executor", "serial"]  # the fake runner counts calls in this process
    assert cli.main(["run", "--protocol", "study", "--task", "quadratic", "--size", "smoke", *common]) == 0
    manifest = json.loads((tmp_path / "manifest-study-quadratic-smoke.json").read_text())
    arms = {a["arm"]: a for a in manifest["arms"]}
    assert set(arms) == set(FAIR_ARM_NAMES)
    for name, arm in arms.items():
        seeds = [1001, 1002, 1003, 1004, 1005] if name in STUDY_FIVE_SEED_ARMS else [1001, 1002, 1003]
        assert arm["seeds"] == seeds and len(arm["reporting"]) == len(seeds), name
    assert len(fake_runner.calls) == sum(a["trials"] + len(a["reporting"]) for a in arms.values())

    assert cli.main(["run", "--protocol", "study-saddle-full", "--steps", "30", *common]) == 0  # size: full
    full = json.loads((tmp_path / "manifest-study-saddle-full-saddle-full.json").read_text())
    assert {a["arm"] for a in full["arms"]} == FOUR and full["size"] == "full"


def test_list_shows_the_study_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("study", "study-saddle-full", "width", "gpt-w128"):
        assert word in out
