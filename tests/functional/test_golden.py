"""ANDI against independent oracles: an fp64 numpy Algorithm 1, the script transcription, and torch SGD."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from andi import ANDI
from andi.functional import andi_precondition
from tests._oracles import NumpyANDI, ScriptANDI, numpy_andi_direction

SHAPES = [(40, 24), (24, 40), (16, 64), (17, 17), (32, 4, 3, 3), (8, 3, 3, 3), (10,), (5, 7), ()]


def _grads(seed: int, dtype=torch.float64):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=gen, dtype=dtype) * (0.1 + seed % 3) for s in SHAPES]


@pytest.mark.parametrize("shape", SHAPES)
def test_direction_matches_fp64_oracle(shape):
    g = torch.randn(shape, dtype=torch.float64) * 3
    np.testing.assert_allclose(andi_precondition(g).numpy(), numpy_andi_direction(g.numpy()), rtol=1e-12, atol=0)
    h32 = andi_precondition(g.float()).double().numpy()
    np.testing.assert_allclose(h32, numpy_andi_direction(g.numpy()), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("maximize", [False, True])
def test_paper_mode_steps_match_fp64_oracle(nesterov, weight_decay, foreach, maximize):
    init = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
    params = [p.float().clone().requires_grad_() for p in init]
    opt = ANDI(
        params, lr=0.05, momentum=0.9, nesterov=nesterov, weight_decay=weight_decay, foreach=foreach, maximize=maximize
    )
    oracle = NumpyANDI(
        [p.numpy() for p in init],
        lr=0.05,
        momentum=0.9,
        nesterov=nesterov,
        weight_decay=weight_decay,
        maximize=maximize,
    )
    # start the oracle from the fp32-rounded parameters so only the optimizer's arithmetic differs
    oracle.params = [p.detach().double().numpy().copy() for p in params]
    for step in range(5):
        grads = _grads(step)
        for p, g in zip(params, grads):
            p.grad = g.float()
        opt.step()
        oracle.step([g.float().double().numpy() for g in grads])
    for p, ref in zip(params, oracle.params):
        np.testing.assert_allclose(p.detach().double().numpy(), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("foreach", [False, True])
@pytest.mark.parametrize("compat", ["paper", "reference"])
def test_fp64_steps_match_the_oracle_in_both_compat_modes(nesterov, foreach, compat):
    init = [torch.randn(s, dtype=torch.float64) for s in SHAPES]
    params = [p.clone().requires_grad_() for p in init]
    wd = 0.05 if compat == "paper" else 0.0  # the script has no weight decay (compat="reference" rejects it)
    opt = ANDI(params, lr=0.1, nesterov=nesterov, weight_decay=wd, foreach=foreach, compat=compat)
    oracle = NumpyANDI([p.numpy() for p in init], lr=0.1, nesterov=nesterov, weight_decay=wd, compat=compat)
    for step in range(4):
        grads = _grads(10 + step)
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        oracle.step([g.numpy() for g in grads])
    for p, ref in zip(params, oracle.params):
        np.testing.assert_allclose(p.detach().numpy(), ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("foreach", [False, True])
def test_reference_mode_is_bitwise_the_script(nesterov, foreach):
    torch.manual_seed(3)
    init = [torch.randn(s) for s in SHAPES]
    ours = [p.clone().requires_grad_() for p in init]
    theirs = [p.clone().requires_grad_() for p in init]
    opt = ANDI(ours, lr=0.05, nesterov=nesterov, compat="reference", foreach=foreach)
    script = ScriptANDI(theirs, lr=0.05, nesterov=nesterov)
    for step in range(6):
        for a, b, g in zip(ours, theirs, _grads(step, torch.float32)):
            a.grad, b.grad = g.clone(), g.clone()
        opt.step()
        script.step()
        for a, b in zip(ours, theirs):
            assert torch.equal(a, b), f"step {step}: reference mode drifted from the script"
    for a, b in zip(ours, theirs):
        assert torch.equal(opt.state[a]["momentum_buffer"], script.state[b]["momentum_buffer"])


def test_reference_first_step_is_one_plus_mu_squared_larger():
    # docs/design/algorithm.md (the author's script): first update is H + μ(1+μ)H, the paper's H + μH.
    g = torch.randn(40, 30)
    outs = {}
    for compat in ("paper", "reference"):
        p = torch.zeros(40, 30, requires_grad=True)
        p.grad = g.clone()
        ANDI([p], lr=1.0, momentum=0.9, compat=compat).step()
        outs[compat] = p.detach()
    ratio = outs["reference"].norm() / outs["paper"].norm()
    assert ratio.item() == pytest.approx((1 + 0.9 * 1.9) / 1.9, rel=1e-5)


@pytest.mark.parametrize("nesterov", [True, False])
def test_momentum_part_equals_torch_sgd_on_h(nesterov):
    # docs/design/family.md (SGD-Nesterov): ANDI's paper recursion is torch SGD(momentum, nesterov) applied to H = Φ(G).
    torch.manual_seed(0)
    a = torch.randn(30, 20, requires_grad=True)
    b = a.detach().clone().requires_grad_()
    opt = ANDI([a], lr=0.03, momentum=0.8, nesterov=nesterov)
    sgd = torch.optim.SGD([b], lr=0.03, momentum=0.8, nesterov=nesterov)
    for _ in range(5):
        g = torch.randn(30, 20, dtype=torch.float64)
        a.grad = g.float()
        b.grad = andi_precondition(g).float()
        opt.step()
        sgd.step()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
