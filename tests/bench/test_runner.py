"""The single-run runner: config hashing, record schema, determinism, divergence, schedules."""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

import andi
from andi.bench.execution import runner
from andi.bench.execution.runner import RunConfig, run
from andi.bench.execution.store import validate_record
from andi.bench.protocols.schedules import lr_scheduler, make_schedule


# ------------------------------------------------------------------------------------------------ fakes
class _NaNAfter(torch.optim.SGD):
    """SGD that writes NaN into the parameters at its ``k``-th step (a stand-in for a blow-up)."""

    def __init__(self, params, lr: float, k: int) -> None:
        super().__init__(params, lr=lr)
        self.k, self.calls = k, 0

    @torch.no_grad()
    def step(self, closure=None):
        self.calls += 1
        super().step(closure)
        if self.calls == self.k:
            for group in self.param_groups:
                for p in group["params"]:
                    p.fill_(float("nan"))


class _RefuseAt(torch.optim.SGD):
    """SGD whose ``k``-th step raises like ANDI on a non-finite gradient."""

    def __init__(self, params, lr: float, k: int) -> None:
        super().__init__(params, lr=lr)
        self.k, self.calls = k, 0

    def step(self, closure=None):
        self.calls += 1
        if self.calls == self.k:
            raise FloatingPointError("non-finite gradient")
        return super().step(closure)


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Deterministic stand-ins for ``andi.create_optimizer`` / ``andi.param_roles``; returns the call log."""
    calls: list[dict] = []

    def param_roles(model: nn.Module, overrides=None) -> dict[str, str]:
        roles = {n: "vector" if p.ndim < 2 else "hidden_matrix" for n, p in model.named_parameters()}
        for pattern, role in (overrides or {}).items():
            for name in fnmatch.filter(roles, pattern):
                roles[name] = role
        return roles

    def create_optimizer(name, model_or_params, lr, *, roles=None, weight_decay=0.0, **kw):
        calls.append({"name": name, "lr": lr, "roles": roles, "weight_decay": weight_decay, **kw})
        params = list(model_or_params.parameters())
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr, momentum=kw.get("momentum", 0.9), weight_decay=weight_decay)
        if name == "adamw":
            return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        if name == "nan-at-2":
            return _NaNAfter(params, lr=lr, k=2)
        if name == "refuse-at-3":
            return _RefuseAt(params, lr=lr, k=3)
        raise ValueError(f"unknown optimizer {name!r}")

    monkeypatch.setattr(andi, "param_roles", param_roles, raising=False)
    monkeypatch.setattr(andi, "create_optimizer", create_optimizer, raising=False)
    return calls


def _smoke(**kw) -> RunConfig:
    return RunConfig(**{"task": "saddle", "size": "smoke", "optimizer": "adamw", "lr": 1e-3, **kw})


# ------------------------------------------------------------------------------------------- RunConfig
def test_config_key_is_stable_canonical_and_round_trips() -> None:
    kwargs = (("aux_lr", 1e-3), ("aux_betas", (0.9, 0.95)))
    a = RunConfig(task="gpt", optimizer="muon", lr=0.02, optimizer_kwargs=kwargs)
    b = RunConfig(task="gpt", optimizer="muon", lr=0.02, optimizer_kwargs={"aux_betas": [0.9, 0.95], "aux_lr": 1e-3})
    assert a == b and a.key() == b.key() and len(a.key()) == 64
    d = json.loads(json.dumps(a.to_dict()))
    assert RunConfig.from_dict(d) == a and RunConfig.from_dict(d).key() == a.key()
    assert d["optimizer_kwargs"] == {"aux_betas": [0.9, 0.95], "aux_lr": 0.001}
    assert RunConfig(task="gpt", lr=1).key() == RunConfig(task="gpt", lr=1.0).key()
    assert a.key() != RunConfig(task="gpt", optimizer="muon", lr=0.02).key()
    assert RunConfig(task="gpt", data_seed=1).key() != RunConfig(task="gpt", init_seed=1).key()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"size": "large"}, "size"),
        ({"schedule": "step"}, "schedule"),
        ({"eval_split": "train"}, "eval_split"),
        ({"roles": "hidden"}, "roles"),
        ({"lr": -1.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
        ({"steps": 0}, "positive"),
        ({"train_record_every": 0}, "train_record_every"),
        ({"optimizer_kwargs": (("lr", 1.0),)}, "may not set"),
        ({"optimizer_kwargs": (("fn", object()),)}, "JSON"),
        ({"dtype": "int8"}, "dtype"),
    ],
)
def test_config_validation(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RunConfig(task="saddle", **kwargs)
    with pytest.raises(ValueError, match="unknown RunConfig fields"):
        RunConfig.from_dict({"task": "saddle", "colour": "red"})


# -------------------------------------------------------------------------------------------- schedules
def test_schedule_values() -> None:
    wsd = make_schedule("wsd", 100, warmup_frac=0.05, decay_frac=0.4)
    assert [wsd(s) for s in range(5)] == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert wsd(5) == wsd(59) == 1.0
    assert wsd(60) == 1.0 and wsd(80) == pytest.approx(0.5) and wsd(99) == pytest.approx(1 / 40)
    paper = make_schedule("wsd", 2500)  # protocol: 2 % warmup = 50 steps, 40 % decay = 1000 steps
    assert paper(48) < 1.0 and paper(49) == 1.0 and paper(1499) == 1.0 and paper(1500) == 1.0
    assert paper(1501) < 1.0 and paper(2499) == pytest.approx(1e-3)
    cos = make_schedule("cosine", 110, warmup_frac=10 / 110)
    assert cos(0) == pytest.approx(0.1) and cos(9) == 1.0 and cos(10) == 1.0
    assert cos(60) == pytest.approx(0.5) and cos(109) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert make_schedule("constant", 10)(7) == 1.0
    assert make_schedule("wsd", 10, warmup_frac=0.0, decay_frac=0.0)(0) == 1.0
    with pytest.raises(ValueError, match="exceed"):
        make_schedule("wsd", 10, warmup_frac=0.5, decay_frac=0.6)
    with pytest.raises(ValueError, match="unknown schedule"):
        make_schedule("linear", 10)


def test_lr_scheduler_scales_every_param_group() -> None:
    a, b = nn.Parameter(torch.zeros(2)), nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    sched = lr_scheduler(opt, "wsd", 10, warmup_frac=0.2, decay_frac=0.5)
    seen = []
    for _ in range(10):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    expected = [make_schedule("wsd", 10, warmup_frac=0.2, decay_frac=0.5)(s) for s in range(10)]
    assert [pytest.approx([e, 0.1 * e]) == s for e, s in zip(expected, seen)] == [True] * 10


# ----------------------------------------------------------------------------------------------- runner
def test_record_schema(registry: list[dict], synthetic_data_root: Path) -> None:
    config = _smoke(
        steps=20, eval_every=10, train_record_every=5, optimizer_kwargs=(("momentum", 0.5),), weight_decay=0.01
    )
    record = run(config, data_root=synthetic_data_root)
    json.dumps(record, allow_nan=False)  # strict JSON
    assert record["schema"] == 1 and record["key"] == config.key() and record["config"] == config.to_dict()
    assert record["status"] == "ok" and record["diverged_at"] is None
    assert set(record["versions"]) >= {"andi", "torch", "python", "numpy"}
    assert record["device"]["type"] == "cpu" and record["device"]["threads"] >= 1
    assert record["train"]["steps"] == [0, 5, 10, 15] and len(record["train"]["loss"]) == 4
    assert record["eval"]["steps"] == [0, 10, 20] and len(record["eval"]["loss"]) == 3
    final = record["final"]
    assert final["metric"] == "loss" and final["higher_is_better"] is False
    assert final["value"] == record["eval"]["loss"][-1] == final["metrics"]["loss"]
    assert final["train_loss_last100"] > 0
    timing = record["timing"]
    assert len(timing["cumulative_train_s"]) == 3 and timing["cumulative_train_s"][0] == 0.0
    assert timing["cumulative_train_s"] == sorted(timing["cumulative_train_s"])
    assert 0 < timing["optimizer_step_median_s"] < timing["train_s"] <= timing["total_s"]
    # AdamW keeps exp_avg and exp_avg_sq (+ a scalar step) per parameter
    params = sum(p.numel() * 4 for p in get_params(config, synthetic_data_root))
    assert 2 * params <= record["memory"]["state_bytes"] <= 2 * params + 4 * 8 * 12
    assert record["memory"]["peak_kind"] == "rss" and record["memory"]["peak_bytes"] > 0
    # the optimizer got the task's roles and the config's knobs
    (call,) = registry
    assert call["name"] == "adamw" and call["lr"] == 1e-3 and call["weight_decay"] == 0.01 and call["momentum"] == 0.5
    assert call["roles"]["encoder.0.weight"] == "conv_first" and call["roles"]["decoder.4.weight"] == "head"
    assert call["roles"]["encoder.2.weight"] == "hidden_matrix" and call["roles"]["encoder.0.bias"] == "vector"
    assert record["optimizer_info"]["roles"] == call["roles"]


def get_params(config: RunConfig, data_root: Path) -> list[torch.Tensor]:
    from andi.bench.tasks import get_task

    return list(get_task(config.task, config.size, data_root).build_model(0).parameters())


def test_roles_all_sends_every_parameter_to_the_optimizer(registry, synthetic_data_root: Path) -> None:
    run(_smoke(steps=2, roles="all", eval_every=0), data_root=synthetic_data_root)
    assert set(registry[0]["roles"].values()) == {"hidden_matrix"}


def test_same_config_twice_gives_identical_records(registry, synthetic_data_root: Path) -> None:
    config = _smoke(task="gpt", optimizer="sgd", lr=0.05, steps=12, eval_every=6)
    a, b = run(config, data_root=synthetic_data_root), run(config, data_root=synthetic_data_root)
    assert a["train"] == b["train"] and a["eval"] == b["eval"]


def test_init_and_data_seeds_are_independent(registry, synthetic_data_root: Path) -> None:
    base = run(_smoke(steps=6, eval_every=3), data_root=synthetic_data_root)
    other_data = run(_smoke(steps=6, eval_every=3, data_seed=1), data_root=synthetic_data_root)
    other_init = run(_smoke(steps=6, eval_every=3, init_seed=1), data_root=synthetic_data_root)
    # step-0 evaluation sees only the initial model: it depends on init_seed, not on data_seed
    assert base["eval"]["loss"][0] == other_data["eval"]["loss"][0] != other_init["eval"]["loss"][0]
    assert base["train"]["loss"] != other_data["train"]["loss"]


def test_schedule_is_applied(registry, synthetic_data_root: Path, monkeypatch) -> None:
    seen: list[float] = []
    original = torch.optim.SGD.step

    def spy(self, closure=None):
        seen.append(self.param_groups[0]["lr"])
        return original(self, closure)

    monkeypatch.setattr(torch.optim.SGD, "step", spy)
    run(
        _smoke(optimizer="sgd", lr=0.1, steps=10, warmup_frac=0.2, decay_frac=0.5, eval_every=0),
        data_root=synthetic_data_root,
    )
    lam = make_schedule("wsd", 10, warmup_frac=0.2, decay_frac=0.5)
    assert seen == pytest.approx([0.1 * lam(s) for s in range(10)])


def test_divergence_is_recorded_and_stops_the_run(registry, synthetic_data_root: Path) -> None:
    record = run(_smoke(optimizer="nan-at-2", lr=0.1, steps=10, eval_every=0), data_root=synthetic_data_root)
    assert record["status"] == "diverged" and record["diverged_at"] == 2  # the loss of step 2 is NaN
    assert record["train"]["steps"] == [0, 1] and all(math.isfinite(v) for v in record["train"]["loss"])
    assert record["final"]["value"] is None and record["final"]["metrics"] == {}
    json.dumps(record, allow_nan=False)


def test_optimizer_refusing_a_step_counts_as_divergence(registry, synthetic_data_root: Path) -> None:
    record = run(_smoke(optimizer="refuse-at-3", lr=0.01, steps=10, eval_every=0), data_root=synthetic_data_root)
    assert record["status"] == "diverged" and record["diverged_at"] == 2  # the third step (index 2) was refused
    assert record["train"]["steps"] == [0, 1]


def test_divergence_on_a_real_blow_up(registry) -> None:
    record = run(RunConfig(task="rosenbrock", size="smoke", optimizer="sgd", lr=10.0, steps=50, schedule="constant"))
    assert record["status"] == "diverged" and 0 < record["diverged_at"] < 50


def test_eval_split_none_is_the_replay_data(registry, synthetic_data_root: Path) -> None:
    config = _smoke(eval_split="none", schedule="constant", train_record_every=3, steps=7)
    record = run(config, data_root=synthetic_data_root)
    assert record["resolved"]["split_mode"] == "paper"
    assert record["eval"] == {"steps": []} and record["timing"]["cumulative_train_s"] == []
    assert record["final"]["value"] is None and record["train"]["steps"] == [0, 3, 6]


def test_test_split_and_classification_metrics(registry, synthetic_data_root: Path) -> None:
    record = run(
        RunConfig(
            task="cifar-proj", size="smoke", optimizer="adamw", lr=1e-3, steps=4, eval_every=2, eval_split="test"
        ),
        data_root=synthetic_data_root,
    )
    assert record["final"]["metric"] == "accuracy" and record["final"]["higher_is_better"] is True
    assert set(record["eval"]) == {"steps", "loss", "accuracy"} and 0 <= record["final"]["value"] <= 1


def test_progress_bar_does_not_change_results(registry, synthetic_data_root: Path) -> None:
    config = _smoke(steps=4, eval_every=0)
    quiet = run(config, data_root=synthetic_data_root)
    assert run(config, data_root=synthetic_data_root, progress=True)["train"] == quiet["train"]


def test_with_the_real_registry(synthetic_data_root: Path) -> None:
    if not hasattr(andi, "create_optimizer") or not hasattr(andi, "param_roles"):
        pytest.skip("andi.create_optimizer / andi.param_roles are not exported yet")
    record = run(_smoke(optimizer="andi", lr=0.02, steps=5, eval_every=0), data_root=synthetic_data_root)
    assert record["status"] == "ok" and math.isfinite(record["final"]["value"])
    # ANDI keeps one momentum buffer per parameter
    assert record["memory"]["state_bytes"] == sum(p.numel() * 4 for p in get_params(_smoke(), synthetic_data_root))


def test_median_skips_warmup_steps() -> None:
    times = [10.0] * 50 + [1.0] * 60
    assert runner._median_after_warmup(times) == 1.0
    assert runner._median_after_warmup([5.0, 1.0, 2.0, 3.0]) == 2.5
    assert runner._median_after_warmup([]) is None


# ------------------------------------------------------------------------------------------ gradient norm
def test_grad_norm_is_recorded_before_every_evaluation(registry, synthetic_data_root: Path) -> None:
    config = _smoke(steps=10, eval_every=5)
    record = run(config, data_root=synthetic_data_root)
    assert record["eval"]["steps"] == [0, 5, 10]
    train = record["train"]
    # the last update before each eval at k > 0 is step k - 1
    assert train["grad_norm_steps"] == [4, 9] and len(train["grad_norm"]) == 2
    assert all(math.isfinite(v) and v > 0 for v in train["grad_norm"])
    json.dumps(record, allow_nan=False)
    assert validate_record(record, config.key(), config.to_dict()) == []


def test_grad_norm_of_the_first_step_matches_an_independent_computation(registry, synthetic_data_root: Path) -> None:
    config = _smoke(steps=3, eval_every=1)
    record = run(config, data_root=synthetic_data_root)
    assert record["train"]["grad_norm_steps"] == [0, 1, 2]
    prepared = runner._prepare_run(config, synthetic_data_root)  # the same model, data stream and seeds
    loss = prepared.task.loss(prepared.model, next(prepared.batches))
    assert loss.item() == record["train"]["loss"][0]
    loss.backward()
    expected = math.sqrt(sum(float(p.grad.double().pow(2).sum()) for p in prepared.model.parameters()))
    assert record["train"]["grad_norm"][0] == pytest.approx(expected, rel=1e-5)


def test_no_grad_norm_without_evaluations(registry, synthetic_data_root: Path) -> None:
    record = run(_smoke(eval_split="none", schedule="constant", steps=4), data_root=synthetic_data_root)
    assert record["train"]["grad_norm_steps"] == [] and record["train"]["grad_norm"] == []


def test_global_grad_norm_accumulates_in_float32_over_mixed_dtypes() -> None:
    a = nn.Parameter(torch.zeros(3, dtype=torch.bfloat16))
    b, c = nn.Parameter(torch.zeros(2, 2)), nn.Parameter(torch.zeros(4))
    a.grad, b.grad = torch.tensor([1.0, 2.0, 2.0], dtype=torch.bfloat16), torch.full((2, 2), 1.0)
    norm = runner.global_grad_norm([a, b, c])  # c has no gradient
    assert norm.dtype == torch.float32 and norm.item() == pytest.approx(math.sqrt(9.0 + 4.0))
    assert runner.global_grad_norm([c]) is None


def test_records_without_grad_norm_stay_valid(registry, synthetic_data_root: Path) -> None:
    config = _smoke(steps=4, eval_every=2)
    record = run(config, data_root=synthetic_data_root)
    old = json.loads(json.dumps(record))
    del old["train"]["grad_norm_steps"], old["train"]["grad_norm"]  # written before the field existed
    assert validate_record(old, config.key(), config.to_dict()) == []
    bad = json.loads(json.dumps(record))
    bad["train"]["grad_norm"] = bad["train"]["grad_norm"][:-1]
    assert any("grad_norm" in p for p in validate_record(bad))
    bad["train"]["grad_norm"] = ["large"] * len(bad["train"]["grad_norm_steps"])
    assert any("grad_norm" in p for p in validate_record(bad))
