"""ANDI as a torch.optim.Optimizer: validation, refusals, dtypes, closure, AMP."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from andi import ANDI


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(24, 32), nn.Tanh(), nn.Linear(32, 20), nn.Tanh(), nn.Linear(20, 1))


def _snapshot(model: nn.Module, opt: torch.optim.Optimizer):
    params = [p.detach().clone() for p in model.parameters()]
    state = {id(p): {k: v.clone() for k, v in s.items()} for p, s in opt.state.items()}
    return params, state


def _assert_unchanged(model, opt, snap) -> None:
    params, state = snap
    for p, before in zip(model.parameters(), params):
        assert torch.equal(p.detach(), before)
    assert {id(p) for p in opt.state} == set(state)
    for p, s in opt.state.items():
        for k, v in s.items():
            assert torch.equal(v, state[id(p)][k])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": -1.0}, "Invalid learning rate: -1.0"),
        ({"lr": float("nan")}, "Invalid learning rate: nan"),
        ({"lr": torch.tensor([0.1, 0.2])}, "Tensor lr must be 1-element"),
        ({"momentum": 1.0}, "Invalid momentum value: 1.0"),
        ({"momentum": -0.1}, "Invalid momentum value: -0.1"),
        ({"weight_decay": -1e-3}, "Invalid weight_decay value"),
        ({"eps": -1e-8}, "Invalid epsilon value"),
        ({"eps": 0.0}, "Invalid epsilon value"),
        ({"min_dim": -1}, "Invalid min_dim value"),
        ({"min_dim": 2.5}, "Invalid min_dim value"),
        ({"compat": "paperish"}, "Invalid compat mode: 'paperish'"),
        ({"compat": "reference", "weight_decay": 0.1}, "no weight decay"),
        ({"foreach": "yes"}, "Invalid foreach value"),
        ({"momentum_dtype": torch.int32}, "Invalid momentum_dtype"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        ANDI(_model().parameters(), **kwargs)


def test_bad_hyperparameter_in_a_param_group_raises():
    model = _model()
    with pytest.raises(ValueError, match="Invalid learning rate"):
        ANDI([{"params": model[0].parameters(), "lr": -3.0}, {"params": model[2].parameters()}])


def test_empty_and_duplicate_params_raise():
    with pytest.raises(ValueError, match="empty parameter list"):
        ANDI([])
    p = nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="same tensor twice"):
        ANDI([p, p])
    q = nn.Parameter(torch.randn(3))
    with pytest.raises(ValueError, match="more than one parameter group"):
        ANDI([{"params": [p]}, {"params": [p, q]}])


def test_complex_params_raise():
    with pytest.raises(RuntimeError, match="complex"):
        ANDI([nn.Parameter(torch.randn(3, dtype=torch.complex64))])


def test_sparse_gradient_raises_and_changes_nothing():
    emb = nn.Embedding(50, 20, sparse=True)
    opt = ANDI(emb.parameters())
    emb(torch.tensor([1, 2, 3])).sum().backward()
    before = emb.weight.detach().clone()
    with pytest.raises(RuntimeError, match="ANDI does not support sparse gradients"):
        opt.step()
    assert torch.equal(emb.weight, before) and len(opt.state) == 0


def _loss(model, seed=1):
    torch.manual_seed(seed)
    x = torch.randn(64, 24)
    return (model(x) - x[:, :1]).pow(2).mean()


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("groups", [1, 2])
def test_nonfinite_gradient_raises_and_changes_nothing(foreach, bad, groups):
    model = _model()
    params = (
        list(model.parameters())
        if groups == 1
        else [
            {"params": model[0].parameters()},
            {"params": list(model[2].parameters()) + list(model[4].parameters()), "lr": 0.01},
        ]
    )
    opt = ANDI(params, foreach=foreach)
    _loss(model).backward()
    opt.step()  # create state
    opt.zero_grad()
    _loss(model, 2).backward()
    model[2].weight.grad[3, 4] = bad  # a tensor in the second group when groups == 2
    snap = _snapshot(model, opt)
    with pytest.raises(FloatingPointError, match="non-finite gradient"):
        opt.step()
    _assert_unchanged(model, opt, snap)


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_skip_nonfinite_skips_only_that_tensor_and_counts(foreach, compat):
    model = _model()
    opt = ANDI(model.parameters(), foreach=foreach, skip_nonfinite=True, compat=compat)
    _loss(model).backward()
    opt.step()
    opt.zero_grad()
    _loss(model, 2).backward()
    model[2].weight.grad[0, 0] = float("nan")
    w_before = model[2].weight.detach().clone()
    buf_before = opt.state[model[2].weight]["momentum_buffer"].clone()
    other_before = model[0].weight.detach().clone()
    opt.step()
    assert opt.nonfinite_skips == 1
    assert torch.equal(model[2].weight, w_before)
    assert torch.equal(opt.state[model[2].weight]["momentum_buffer"], buf_before)
    assert not torch.equal(model[0].weight, other_before)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_params_without_grad_are_skipped_and_get_no_state():
    model = _model()
    model[0].weight.requires_grad_(False)
    opt = ANDI(model.parameters())
    frozen = model[0].weight.detach().clone()
    _loss(model).backward()
    opt.step()
    assert torch.equal(model[0].weight, frozen)
    assert model[0].weight not in opt.state
    assert model[2].weight in opt.state


def test_gradients_are_not_modified():
    model = _model()
    opt = ANDI(model.parameters(), maximize=True)
    _loss(model).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    opt.step()
    for p, g in zip(model.parameters(), grads):
        assert torch.equal(p.grad, g)


def test_closure_returns_loss_and_steps():
    model = _model()
    opt = ANDI(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]

    def closure():
        opt.zero_grad()
        loss = _loss(model)
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert isinstance(loss, torch.Tensor) and math.isfinite(loss.item())
    assert any(not torch.equal(p, b) for p, b in zip(model.parameters(), before))


def test_maximize_equals_minimizing_the_negation():
    a, b = _model(), _model()
    oa, ob = ANDI(a.parameters(), maximize=True), ANDI(b.parameters())
    for step in range(3):
        oa.zero_grad(), ob.zero_grad()
        (-_loss(a, step)).backward()
        _loss(b, step).backward()
        oa.step(), ob.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)


def test_tensor_lr_equals_float_lr():
    a, b = _model(), _model()
    oa = ANDI(a.parameters(), lr=torch.tensor(0.03), weight_decay=0.1)
    ob = ANDI(b.parameters(), lr=0.03, weight_decay=0.1)
    for step in range(4):
        for m, o in ((a, oa), (b, ob)):
            o.zero_grad()
            _loss(m, step).backward()
            o.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


def test_decoupled_weight_decay_alone_shrinks_by_one_minus_lr_lambda():
    p = nn.Parameter(torch.full((4,), 2.0))
    opt = ANDI([p], lr=0.1, weight_decay=0.5, momentum=0.0, nesterov=False)
    p.grad = torch.zeros(4)
    opt.step()
    torch.testing.assert_close(p.detach(), torch.full((4,), 2.0 * (1 - 0.05)))


def test_setstate_fills_defaults_for_old_pickles():
    opt = ANDI(_model().parameters())
    state = opt.__getstate__()
    for group in state["param_groups"]:
        for key in ("compat", "foreach", "maximize", "momentum_dtype", "skip_nonfinite"):
            group.pop(key)
    fresh = ANDI.__new__(ANDI)
    fresh.__setstate__(state)
    group = fresh.param_groups[0]
    assert group["compat"] == "paper" and group["skip_nonfinite"] is False and group["foreach"] is None
    assert fresh.nonfinite_skips == 0


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("momentum_dtype", [None, torch.float32])
def test_low_precision_params_train(dtype, momentum_dtype):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(32, 64), nn.Tanh(), nn.Linear(64, 1)).to(dtype)
    opt = ANDI(model.parameters(), lr=0.01, momentum_dtype=momentum_dtype)
    x = torch.randn(256, 32, dtype=dtype)
    y = torch.sin(x.float().sum(1, keepdim=True)).to(dtype)
    losses = []
    for _ in range(60):
        opt.zero_grad()
        loss = (model(x) - y).float().pow(2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(torch.isfinite(p).all() for p in model.parameters())
    buf = opt.state[model[0].weight]["momentum_buffer"]
    assert buf.dtype == (momentum_dtype or dtype)
    assert losses[-1] < 0.5 * losses[0]


def test_low_precision_direction_uses_fp32_reductions(monkeypatch):
    # If the norms ran in fp16, ‖G‖² = 64·48·300² overflows to inf and the update would be NaN or refused.
    p = nn.Parameter(torch.zeros(64, 48, dtype=torch.float16))
    p.grad = torch.full((64, 48), 300.0, dtype=torch.float16)
    ANDI([p], lr=1e-3).step()
    assert torch.isfinite(p).all() and p.abs().sum() > 0


def test_grad_scaler_unscale_gives_the_unscaled_update():
    torch.manual_seed(0)
    a, b = _model(), _model()
    oa, ob = ANDI(a.parameters()), ANDI(b.parameters())
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**12)
    for step in range(3):
        oa.zero_grad(), ob.zero_grad()
        scaler.scale(_loss(a, step)).backward()
        scaler.unscale_(oa)
        scaler.step(oa)
        scaler.update()
        _loss(b, step).backward()
        ob.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_without_unscale_the_step_differs():
    # The documented pitfall: ANDI is not scale-invariant, so a scaled gradient gives a different update.
    a, b = _model(), _model()
    oa, ob = ANDI(a.parameters()), ANDI(b.parameters())
    (1024.0 * _loss(a)).backward()
    _loss(b).backward()
    oa.step(), ob.step()
    assert not torch.allclose(a[0].weight, b[0].weight, rtol=1e-3)


def test_fused_and_foreach_together_raise():
    with pytest.raises(ValueError, match="cannot be `True` together"):
        ANDI(_model().parameters(), fused=True, foreach=True)
    with pytest.raises(ValueError, match="Invalid fused value"):
        ANDI(_model().parameters(), fused="auto")


def test_default_foreach_policy():
    from andi.functional.andi import default_foreach

    big = [torch.zeros(1024, 1024) for _ in range(4)]
    small = [torch.zeros(64, 64) for _ in range(50)]
    assert default_foreach(big) is False  # CPU, large tensors: the loop stays in cache
    assert default_foreach(small) is True  # CPU, many small tensors: fewer Python dispatches
    assert default_foreach([nn.Parameter(t) for t in small]) is True
