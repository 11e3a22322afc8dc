"""Code-path parity (single-tensor, foreach, compiled), resume after state_dict, and end-to-end training."""

from __future__ import annotations

import copy
import io

import pytest
import torch
from torch import nn

from andi import ANDI


def _mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 48), nn.Tanh(), nn.Linear(48, 32), nn.Tanh(), nn.Linear(32, 8), nn.Tanh(), nn.Linear(8, 1)
    )


def _batch(step: int):
    gen = torch.Generator().manual_seed(1000 + step)
    x = torch.randn(128, 20, generator=gen)
    return x, torch.sin(x[:, :3].sum(1, keepdim=True))


def _train(model, opt, steps: int, start: int = 0, step_fn=None) -> list[float]:
    losses = []
    for i in range(start, start + steps):
        x, y = _batch(i)
        opt.zero_grad(set_to_none=True)
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        (step_fn or opt.step)()
        losses.append(loss.item())
    return losses


def _max_rel_diff(a: nn.Module, b: nn.Module) -> float:
    return max(((p - q).norm() / q.norm().clamp_min(1e-12)).item() for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("kwargs", [{}, {"weight_decay": 0.1, "nesterov": False}, {"maximize": False, "lr": 0.05}])
def test_single_tensor_and_foreach_agree(kwargs):
    a, b = _mlp(), _mlp()
    _train(a, ANDI(a.parameters(), foreach=False, **kwargs), 20)
    _train(b, ANDI(b.parameters(), foreach=True, **kwargs), 20)
    assert _max_rel_diff(a, b) <= 1e-6


@pytest.mark.compile
def test_compiled_step_agrees_and_does_not_recompile_when_lr_changes():
    torch._dynamo.reset()
    a, b = _mlp(), _mlp()
    opt_a = ANDI(a.parameters(), lr=torch.tensor(0.02), foreach=False)
    opt_b = ANDI(b.parameters(), lr=torch.tensor(0.02), foreach=True)
    compiled = torch.compile(opt_b.step)
    _train(a, opt_a, 2)
    _train(b, opt_b, 2, step_fn=compiled)  # step 1 creates state, step 2 compiles the steady-state graph
    with torch._dynamo.config.patch(error_on_recompile=True):
        for i, lr in enumerate((0.01, 0.005, 0.0025)):
            opt_a.param_groups[0]["lr"].fill_(lr)
            opt_b.param_groups[0]["lr"].fill_(lr)
            _train(a, opt_a, 6, start=2 + 6 * i)
            _train(b, opt_b, 6, start=2 + 6 * i, step_fn=compiled)
    assert _max_rel_diff(a, b) <= 1e-6


@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_resume_from_state_dict_is_bitwise_uninterrupted(tmp_path, foreach, compat):
    kwargs = dict(lr=0.02, foreach=foreach, compat=compat)
    if compat == "paper":
        kwargs["weight_decay"] = 0.01
    full = _mlp()
    full_opt = ANDI(full.parameters(), **kwargs)
    sched = torch.optim.lr_scheduler.StepLR(full_opt, step_size=7, gamma=0.5)
    for i in range(20):
        _train(full, full_opt, 1, start=i)
        sched.step()

    first = _mlp()
    first_opt = ANDI(first.parameters(), **kwargs)
    first_sched = torch.optim.lr_scheduler.StepLR(first_opt, step_size=7, gamma=0.5)
    for i in range(10):
        _train(first, first_opt, 1, start=i)
        first_sched.step()
    path = tmp_path / "ckpt.pt"
    torch.save({"model": first.state_dict(), "opt": first_opt.state_dict(), "sched": first_sched.state_dict()}, path)

    ckpt = torch.load(path, weights_only=True)  # plain tensors and containers only
    resumed = _mlp(seed=123)  # different init: everything must come from the checkpoint
    resumed.load_state_dict(ckpt["model"])
    resumed_opt = ANDI(resumed.parameters(), **kwargs)
    resumed_opt.load_state_dict(ckpt["opt"])
    resumed_sched = torch.optim.lr_scheduler.StepLR(resumed_opt, step_size=7, gamma=0.5)
    resumed_sched.load_state_dict(ckpt["sched"])
    for i in range(10, 20):
        _train(resumed, resumed_opt, 1, start=i)
        resumed_sched.step()

    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(p, q)
    for p, q in zip(full.parameters(), resumed.parameters()):
        assert torch.equal(full_opt.state[p]["momentum_buffer"], resumed_opt.state[q]["momentum_buffer"])


def test_fp32_momentum_for_bf16_params_survives_state_dict_round_trip():
    model = _mlp().to(torch.bfloat16)
    opt = ANDI(model.parameters(), momentum_dtype=torch.float32)
    x, y = _batch(0)
    (model(x.bfloat16()).float() - y).pow(2).mean().backward()
    opt.step()
    buf = opt.state[model[0].weight]["momentum_buffer"]
    assert buf.dtype == torch.float32
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    fresh = ANDI(model.parameters(), momentum_dtype=torch.float32)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    restored = fresh.state[model[0].weight]["momentum_buffer"]
    assert restored.dtype == torch.float32 and torch.equal(restored, buf)


def test_deepcopy_and_state_dict_keys():
    model = _mlp()
    opt = ANDI(model.parameters())
    _train(model, opt, 2)
    sd = opt.state_dict()
    assert set(sd["state"][0]) == {"momentum_buffer"}  # one buffer per parameter: the O(N) memory claim
    assert sum(1 for _ in sd["state"]) == len(list(model.parameters()))
    clone = copy.deepcopy(opt)
    assert clone.state_dict()["param_groups"] == sd["param_groups"]


def test_toy_mlp_regression_loss_drops_3x():
    model = _mlp(seed=1)
    losses = _train(model, ANDI(model.parameters(), lr=0.01), 200)
    assert sum(losses[-10:]) / 10 < sum(losses[:10]) / 10 / 3


def test_tiny_conv_net_loss_drops_3x():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 24, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(24, 32, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(32, 4),
    )
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 8, 8, generator=gen)
    y = (x[:, 0].mean((1, 2)) > 0).long() + 2 * (x[:, 1].mean((1, 2)) > 0).long()  # 4 learnable classes
    opt = ANDI(net.parameters(), lr=0.01)
    losses = []
    for _ in range(200):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert min(losses[-10:]) < losses[0] / 3


@pytest.mark.compile
def test_fused_compiled_step_on_cpu_agrees_with_the_loop():
    a, b = _mlp(), _mlp()
    _train(a, ANDI(a.parameters(), foreach=False, weight_decay=0.05), 8)
    _train(b, ANDI(b.parameters(), fused=True, weight_decay=0.05), 8)
    assert _max_rel_diff(a, b) <= 1e-6
