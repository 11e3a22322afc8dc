"""RoutedOptimizer: one torch Optimizer over several inner ones, with shared group dicts and one state_dict."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch
from torch import nn

from andi.optim.muon import Muon
from andi.optim.registry import OPTIMIZERS
from andi.optim.routed import ALGORITHMS, RoutedOptimizer, register_algorithm
from andi.routing import param_groups

pytestmark = pytest.mark.usefixtures("one_thread")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 12)
        self.conv = nn.Conv1d(12, 12, 3, padding=1)
        self.conv2 = nn.Conv1d(12, 12, 3, padding=1)
        self.hidden = nn.Linear(12, 24)
        self.out = nn.Linear(24, 5)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx).transpose(1, 2)
        x = torch.relu(self.conv2(torch.relu(self.conv(x)))).mean(-1)
        return self.out(torch.tanh(self.hidden(x)))


HYPER = {"muon": dict(lr=0.02, weight_decay=0.0), "adamw": dict(lr=1e-2, betas=(0.9, 0.95), eps=1e-10)}


def _net() -> Net:
    torch.manual_seed(0)
    return Net()


def _batch():
    g = torch.Generator().manual_seed(3)
    return torch.randint(0, 10, (8, 6), generator=g), torch.randint(0, 5, (8,), generator=g)


def _train(model, opt, steps):
    x, y = _batch()
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()


def _routed(model, **kw):
    return RoutedOptimizer(param_groups(model, matrix="muon", other="adamw"), hyper=HYPER, **kw)


def test_groups_are_the_inner_dicts_and_follow_schedulers():
    model = _net()
    opt = _routed(model)
    assert set(opt.inner) == {"muon", "adamw"}
    assert type(opt.inner["muon"]) is Muon  # a conv filter among the hidden matrices: reference form
    inner_ids = {id(g) for inner in opt.inner.values() for g in inner.param_groups}
    assert {id(g) for g in opt.param_groups} == inner_ids
    assert [g["role"] for g in opt.param_groups] == ["hidden_matrix", "embedding", "conv_first", "head", "vector"]
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    _train(model, opt, 1)
    sched.step()
    assert opt.inner["muon"].param_groups[0]["lr"] == pytest.approx(0.002)
    assert opt.inner["adamw"].param_groups[0]["lr"] == pytest.approx(1e-3)


def test_routed_equals_the_inner_optimizers_stepped_by_hand():
    model_a, model_b = _net(), _net()
    opt_a = _routed(model_a)
    groups = param_groups(model_b, matrix="muon", other="adamw")
    muon = Muon([g for g in groups if g["algorithm"] == "muon"], **HYPER["muon"])
    adamw = torch.optim.AdamW([g for g in groups if g["algorithm"] == "adamw"], **HYPER["adamw"])
    x, y = _batch()
    for _ in range(4):
        _train(model_a, opt_a, 1)
        muon.zero_grad()
        adamw.zero_grad()
        nn.functional.cross_entropy(model_b(x), y).backward()
        muon.step()
        adamw.step()
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


def test_state_dict_format_round_trip_and_identity():
    model = _net()
    opt = _routed(model)
    _train(model, opt, 2)
    sd = opt.state_dict()
    n_params = sum(1 for _ in model.parameters())
    assert sorted(sd["state"]) == list(range(n_params))  # torch format: every parameter, numbered across groups
    flat = [i for g in sd["param_groups"] for i in g["params"]]
    assert flat == list(range(n_params))
    assert [g["algorithm"] for g in sd["param_groups"]] == [g["algorithm"] for g in opt.param_groups]
    buf = io.BytesIO()
    torch.save(sd, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)

    model2 = _net()
    model2.load_state_dict(model.state_dict())
    opt2 = _routed(model2)
    groups_before = [id(g) for g in opt2.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt2, lambda t: 1.0)
    opt2.load_state_dict(loaded)
    assert [id(g) for g in opt2.param_groups] == groups_before
    assert {id(g) for g in opt2.param_groups} == {id(g) for i in opt2.inner.values() for g in i.param_groups}
    _train(model, opt, 3)
    _train(model2, opt2, 3)
    sched.step()
    for pa, pb in zip(model.parameters(), model2.parameters()):
        assert torch.equal(pa, pb)


def test_state_view():
    model = _net()
    opt = _routed(model)
    assert len(opt.state) == 0
    _train(model, opt, 1)
    n_params = sum(1 for _ in model.parameters())
    assert len(opt.state) == n_params == len(list(opt.state))
    assert "momentum_buffer" in opt.state[model.hidden.weight]
    assert "exp_avg" in opt.state[model.out.weight]
    assert model.hidden.weight in opt.state
    assert torch.zeros(1) not in opt.state


def test_load_rejects_mismatched_layouts():
    model = _net()
    opt = _routed(model)
    _train(model, opt, 1)
    sd = opt.state_dict()
    other = RoutedOptimizer(param_groups(model, matrix="rmnp", other="adamw"), hyper={"adamw": HYPER["adamw"]})
    with pytest.raises(ValueError, match="routes a group"):
        other.load_state_dict(sd)
    fewer = RoutedOptimizer([g for g in param_groups(model, matrix="muon") if g["role"] != "vector"])
    with pytest.raises(ValueError, match="parameter groups"):
        fewer.load_state_dict(sd)


def test_construction_errors():
    model = _net()
    groups = param_groups(model, matrix="muon", other="adamw")
    with pytest.raises(ValueError, match="algorithm="):
        RoutedOptimizer([{"params": list(model.parameters())}])
    with pytest.raises(ValueError, match="Unknown algorithm"):
        RoutedOptimizer([{"params": list(model.parameters()), "algorithm": "adamm"}])
    with pytest.raises(ValueError, match="more than one parameter group"):
        RoutedOptimizer(
            [
                {"params": [model.out.weight], "algorithm": "adamw"},
                {"params": [model.out.weight], "algorithm": "sgd", "lr": 0.1},
            ]
        )
    with pytest.raises(ValueError, match="no group uses"):
        RoutedOptimizer(groups, hyper={**HYPER, "sgd": {"lr": 0.1}})
    with pytest.raises(ValueError, match="empty parameter list"):
        RoutedOptimizer([])


def test_add_param_group_and_custom_algorithms():
    model = _net()
    groups = param_groups(model, matrix="muon", other="adamw")
    vectors = next(g for g in groups if g["role"] == "vector")
    opt = RoutedOptimizer(
        [g for g in groups if g["role"] != "vector"], hyper=HYPER, algorithms={"adagrad": torch.optim.Adagrad}
    )
    vectors["algorithm"] = "adagrad"
    vectors["lr"] = 0.05
    opt.add_param_group(vectors)
    assert type(opt.inner["adagrad"]) is torch.optim.Adagrad and opt.param_groups[-1] is vectors
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [model.out.bias], "algorithm": "adamw"})
    _train(model, opt, 2)
    assert "sum" in opt.state[model.out.bias]

    lin = nn.Linear(4, 4)
    conv = nn.Conv2d(2, 2, 3)
    # bf16 Newton–Schulz asked for: torch's class (on CPU the default float32 NS builds ours)
    bf16 = {"muon": {"lr": 0.02, "ns_dtype": torch.bfloat16}}
    torch_muon = RoutedOptimizer([{"params": [lin.weight], "algorithm": "muon"}], hyper=bf16)
    assert type(torch_muon.inner["muon"]) is torch.optim.Muon
    with pytest.raises(ValueError, match="muon-reference"):
        torch_muon.add_param_group({"params": [conv.weight], "algorithm": "muon"})
    torch_muon.add_param_group({"params": [conv.weight], "algorithm": "muon-reference"})
    assert type(torch_muon.inner["muon-reference"]) is Muon


def test_register_algorithm():
    assert "adagrad_test" not in ALGORITHMS
    register_algorithm("adagrad_test", torch.optim.Adagrad)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_algorithm("adagrad_test", torch.optim.Adagrad)
        opt = RoutedOptimizer([{"params": [nn.Parameter(torch.ones(3))], "algorithm": "adagrad_test"}])
        assert type(opt.inner["adagrad_test"]) is torch.optim.Adagrad
    finally:
        del ALGORITHMS["adagrad_test"]


def test_algorithm_table_is_derived_from_the_registry(monkeypatch):
    """Every registry entry routes by its own factory; an entry added to the registry routes at once."""
    assert set(OPTIMIZERS) <= set(ALGORITHMS)
    for name, spec in OPTIMIZERS.items():
        assert ALGORITHMS[name] is spec.factory, name
    assert set(ALGORITHMS) - set(OPTIMIZERS) == {"muon-reference"}  # the one routing-only built-in

    added = dataclasses.replace(OPTIMIZERS["adamw"], name="adagrad-entry", factory=torch.optim.Adagrad)
    monkeypatch.setitem(OPTIMIZERS, added.name, added)
    assert ALGORITHMS["adagrad-entry"] is torch.optim.Adagrad
    opt = RoutedOptimizer([{"params": [nn.Parameter(torch.ones(3))], "algorithm": "adagrad-entry"}])
    assert type(opt.inner["adagrad-entry"]) is torch.optim.Adagrad

    # register_algorithm(overwrite=True) shadows an entry for routing; deleting the override restores the entry
    register_algorithm("adamw", torch.optim.Adagrad, overwrite=True)
    try:
        assert ALGORITHMS["adamw"] is torch.optim.Adagrad
    finally:
        del ALGORITHMS["adamw"]
    assert ALGORITHMS["adamw"] is OPTIMIZERS["adamw"].factory is torch.optim.AdamW
    with pytest.raises(KeyError):
        del ALGORITHMS["adamw"]


def test_closure_runs_once_and_hooks_fire():
    model = _net()
    opt = _routed(model)
    calls = {"closure": 0, "pre": 0, "post_sd": 0}
    x, y = _batch()

    def closure():
        calls["closure"] += 1
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        return loss

    opt.register_step_pre_hook(lambda *_: calls.__setitem__("pre", calls["pre"] + 1))
    opt.register_state_dict_post_hook(lambda *_: calls.__setitem__("post_sd", calls["post_sd"] + 1))
    loss = opt.step(closure)
    assert calls["closure"] == 1 and calls["pre"] == 1 and loss.ndim == 0
    opt.state_dict()
    assert calls["post_sd"] == 1
    opt.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    assert "RoutedOptimizer(muon:" in repr(opt)
