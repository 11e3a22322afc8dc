"""Every library implementation we call or compare with, checked against our reference math for a few steps.

pytorch-optimizer's history (swapped ``use_adjusted_lr`` branches in 3.9.0, an LMO that normalized the momentum in
place, a string ``norm_type`` silently meaning "no normalization") is why: a baseline is only as good as its check.
"""

from __future__ import annotations

import math

import pytest
import torch

from andi.functional.normalize import lmo_bias_rms, lmo_colnorm, lmo_rownorm, lmo_sign, lmo_spectral
from andi.optim.muon import Muon
from andi.optim.normuon import NorMuon
from andi.optim.registry import create_optimizer
from andi.optim.scion import Scion

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape: int, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _run(make, W0s: list[torch.Tensor], steps: int = 3, seed: int = 100) -> list[torch.Tensor]:
    params = [torch.nn.Parameter(w.clone()) for w in W0s]
    opt = make(params)
    for t in range(steps):
        for i, p in enumerate(params):
            p.grad = _rand(*p.shape, seed=seed + 10 * t + i, dtype=p.dtype)
        opt.step()
    return [p.detach() for p in params]


# ------------------------------------------------------------------------------------------------- torch
@pytest.mark.parametrize(
    "kw",
    [
        dict(lr=0.02, weight_decay=0.0, momentum=0.95),
        dict(lr=0.01, weight_decay=0.1, momentum=0.9, nesterov=False),
        dict(lr=0.01, weight_decay=0.0, momentum=0.95, adjust_lr_fn="match_rms_adamw", ns_steps=3),
    ],
)
def test_our_muon_equals_torch_muon_on_matrices(kw):
    """With torch's Newton–Schulz dtype (bf16; torch.optim.Muon has no other), ours is torch's Muon on CPU."""
    W0s = [_rand(64, 32, seed=1), _rand(32, 64, seed=2), _rand(48, 48, seed=3)]
    ours = _run(lambda ps: Muon(ps, ns_dtype=torch.bfloat16, **kw), W0s)
    torch_ = _run(lambda ps: torch.optim.Muon(ps, **kw), W0s)
    for a, b in zip(ours, torch_):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def _muon_fp64_oracle(W0: torch.Tensor, grads: list[torch.Tensor], lr: float, mu: float, wd: float) -> torch.Tensor:
    """Nesterov Muon in float64 throughout (NS5 with KellerJordan's coefficients, shape factor sqrt(max(1, m/n)))."""
    W, M = W0.double(), torch.zeros_like(W0, dtype=F64)
    m, n = W0.shape
    for G in grads:
        G = G.double()
        M = mu * M + (1 - mu) * G
        X = (1 - mu) * G + mu * M
        X = X.T if m > n else X
        X = X / max(X.norm().item(), 1e-7)
        for _ in range(5):
            A = X @ X.T
            X = 3.4445 * X + (-4.7750 * A + 2.0315 * A @ A) @ X
        W = W * (1 - lr * wd) - lr * math.sqrt(max(1, m / n)) * (X.T if m > n else X)
    return W


@pytest.mark.parametrize("shape", [(64, 32), (32, 64), (48, 48)])
def test_our_muon_on_cpu_runs_newton_schulz_in_float32(shape):
    """The CPU default (ns_dtype=None) iterates in float32: it agrees with a float64 oracle to float32 rounding,
    far closer than the bf16 setting, which differs from it by bf16 rounding."""
    W0 = _rand(*shape, seed=20)
    grads = [_rand(*shape, seed=200 + 10 * t) for t in range(3)]  # the gradients _run feeds
    want = _muon_fp64_oracle(W0, grads, lr=0.02, mu=0.95, wd=0.1)

    def run(**kw):
        return _run(lambda ps: Muon(ps, lr=0.02, momentum=0.95, weight_decay=0.1, **kw), [W0], seed=200)[0].double()

    fp32, bf16 = run(), run(ns_dtype=torch.bfloat16)
    torch.testing.assert_close(fp32, want, rtol=0, atol=2e-6)
    assert (bf16 - want).abs().max() > 20 * (fp32 - want).abs().max()
    assert torch.equal(run(ns_dtype=torch.float32), fp32)


def test_newton_schulz_runs_in_float32_on_cpu(monkeypatch):
    """What dtype the iteration receives: float32 for CPU gradients by default, bf16 when asked."""
    import sys

    from andi.functional import newton_schulz

    functional_muon = sys.modules["andi.functional.muon"]  # the package re-exports the function under this name
    seen: list[torch.dtype] = []

    def spy(G, *args, dtype=None, **kw):
        seen.append(dtype)
        return newton_schulz.zeropower_via_newtonschulz5(G, *args, dtype=dtype, **kw)

    monkeypatch.setattr(functional_muon, "zeropower_via_newtonschulz5", spy)
    _run(lambda ps: Muon(ps, lr=0.02), [_rand(8, 4)], steps=1)
    _run(lambda ps: Muon(ps, lr=0.02, ns_dtype=torch.bfloat16), [_rand(8, 4)], steps=1)
    assert seen == [torch.float32, torch.bfloat16]
    assert newton_schulz.resolve_ns_dtype(None, "cuda") is torch.bfloat16
    built = create_optimizer("muon", [torch.nn.Parameter(_rand(8, 4))])
    assert type(built.inner["muon"]) is Muon  # CPU parameters: ours (float32 NS), not torch's bf16-only class


def test_muon_arm_handles_conv_filters():
    """torch.optim.Muon rejects conv filters; the registry's muon arm orthogonalizes their (out, in·k·k) view."""
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3), torch.nn.Conv2d(8, 8, 3), torch.nn.Flatten(), torch.nn.Linear(8 * 4 * 4, 10)
    )
    with pytest.raises(ValueError):
        torch.optim.Muon([net[1].weight])
    opt = create_optimizer("muon", net, lr=0.02)
    assert type(opt.inner["muon"]) is Muon
    net(torch.randn(2, 3, 8, 8)).sum().backward()
    w0 = net[1].weight.detach().clone()
    opt.step()
    assert not torch.equal(w0, net[1].weight)


def test_adamw_and_sgd_nesterov_match_their_formulas():
    W0, grads = _rand(6, 5, seed=4, dtype=F64), [_rand(6, 5, seed=50 + t, dtype=F64) for t in range(3)]
    lr, b1, b2, eps, wd = 1e-2, 0.9, 0.95, 1e-10, 0.1
    W, m, v = W0.clone(), torch.zeros_like(W0), torch.zeros_like(W0)
    for t, G in enumerate(grads, 1):  # docs/design/family.md, AdamW
        W = W * (1 - lr * wd)
        m = b1 * m + (1 - b1) * G
        v = b2 * v + (1 - b2) * G * G
        W = W - lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + eps)
    p = torch.nn.Parameter(W0.clone())
    opt = create_optimizer("adamw", [p], lr=lr, betas=(b1, b2), eps=eps, weight_decay=wd)
    for G in grads:
        p.grad = G.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), W, rtol=1e-12, atol=1e-12)

    W, M, mu = W0.clone(), None, 0.9
    for G in grads:  # docs/design/family.md, SGD-Nesterov; weight_decay = 0
        M = G.clone() if M is None else mu * M + G
        W = W - lr * (G + mu * M)
    p = torch.nn.Parameter(W0.clone())
    opt = create_optimizer("sgd", [p], lr=lr)
    for G in grads:
        p.grad = G.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), W, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------ pytorch-optimizer
def test_pytorch_optimizer_normuon_equals_ours():
    po = pytest.importorskip("pytorch_optimizer")
    W0s = [_rand(48, 24, seed=5), _rand(24, 48, seed=6)]
    kw = dict(lr=0.02, momentum=0.95, beta2=0.95, weight_decay=0.01, nesterov=True, eps=1e-8)
    theirs = _run(lambda ps: po.NorMuon([{"params": ps, "use_muon": True}], foreach=False, **kw), W0s)
    ours = _run(lambda ps: NorMuon(ps, **kw), W0s)
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_pytorch_optimizer_scion_lmos_equal_ours():
    po = pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer.optimizer import scion as S

    g = _rand(12, 20, seed=7)
    emb = _rand(30, 6, seed=8)
    v = _rand(9, seed=9)
    torch.testing.assert_close(S.Col(normalized=True).lmo(g), lmo_colnorm(g, normalized=True))
    torch.testing.assert_close(S.Col(transpose=True).lmo(emb), lmo_colnorm(emb, transpose=True))
    torch.testing.assert_close(S.Row().lmo(g), lmo_rownorm(g))
    torch.testing.assert_close(
        S.Row(normalized=False, transpose=True).lmo(emb), lmo_rownorm(emb, normalized=False, transpose=True)
    )
    torch.testing.assert_close(S.Sign().lmo(g), lmo_sign(g))
    torch.testing.assert_close(S.BiasRMS().lmo(v), lmo_bias_rms(v))
    torch.testing.assert_close(S.Spectral().lmo(g.clone()), lmo_spectral(g), rtol=2e-2, atol=2e-2)
    w = _rand(8, 4, 3, 3, seed=10)
    torch.testing.assert_close(S.SpectralConv().lmo(w.clone()), lmo_spectral(w), rtol=2e-2, atol=2e-2)
    assert po.SCION is not None


@pytest.mark.parametrize("constrained", [True, False])
def test_pytorch_optimizer_scion_step_equals_ours(constrained):
    po = pytest.importorskip("pytorch_optimizer")
    from pytorch_optimizer.optimizer.scion import LMONorm

    W0s = [_rand(16, 24, seed=11), _rand(24, 16, seed=12)]
    lr, alpha, scale = 0.05, 0.1, 3.0
    theirs = _run(
        lambda ps: po.SCION(
            ps,
            lr=lr,
            momentum=alpha,
            constraint=constrained,
            norm_type=int(LMONorm.ROW),
            norm_kwargs={"normalized": True},
            scale=scale,
            foreach=False,
        ),
        W0s,
    )
    ours = _run(
        lambda ps: Scion(
            ps,
            lr=lr,
            momentum=alpha,
            norm="rownorm",
            norm_kwargs={"normalized": True},
            scale=scale,
            unconstrained=not constrained,
        ),
        W0s,
    )
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_pytorch_optimizer_lion_matches_formula():
    pytest.importorskip("pytorch_optimizer")
    W0, grads = _rand(6, 5, seed=13, dtype=F64), [_rand(6, 5, seed=60 + t, dtype=F64) for t in range(3)]
    lr, b1, b2, wd = 1e-3, 0.9, 0.99, 0.1
    W, m = W0.clone(), torch.zeros_like(W0)
    for G in grads:  # Chen et al., Alg. 2: decoupled decay, sign of the interpolation, then the EMA
        W = W * (1 - lr * wd)
        W = W - lr * torch.sign(b1 * m + (1 - b1) * G)
        m = b2 * m + (1 - b2) * G
    p = torch.nn.Parameter(W0.clone())
    opt = create_optimizer("lion", [p], lr=lr, weight_decay=wd)
    for G in grads:
        p.grad = G.clone()
        opt.step()
    torch.testing.assert_close(p.detach(), W, rtol=1e-12, atol=1e-12)


def test_library_defaults_we_rely_on():
    """The defaults the README quotes for the library arms are the ones actually built."""
    pytest.importorskip("pytorch_optimizer")
    p = [torch.nn.Parameter(torch.zeros(4, 4))]
    soap = create_optimizer("soap", p)
    g = soap.param_groups[0]
    assert (g["lr"], g["betas"], g["weight_decay"], g["precondition_frequency"]) == (3e-3, (0.95, 0.95), 0.0, 10)
    lion = create_optimizer("lion", p)
    assert lion.param_groups[0]["betas"] == (0.9, 0.99) and lion.param_groups[0]["lr"] == 1e-4
    prodigy = create_optimizer("prodigy", p)
    assert prodigy.param_groups[0]["lr"] == 1.0 and prodigy.param_groups[0]["betas"] == (0.9, 0.999)
    shampoo = create_optimizer("shampoo", p)
    assert shampoo.preconditioning_compute_steps == 10 and shampoo.start_preconditioning_step == 10
    assert math.isclose(create_optimizer("muon", p).param_groups[0]["lr"], 0.02)


def test_muon_checkpoint_without_ns_dtype_loads_with_the_default():
    """A state_dict saved before ``ns_dtype`` existed gets ``ns_dtype=None`` (the device default) when loaded."""
    p = torch.nn.Parameter(_rand(8, 4))
    p.grad = _rand(8, 4, seed=1)
    saved = Muon([p], lr=0.02)
    saved.step()
    old = saved.state_dict()
    del old["param_groups"][0]["ns_dtype"]
    resumed = Muon([p], lr=0.02, ns_dtype=torch.bfloat16)
    resumed.load_state_dict(old)
    assert resumed.param_groups[0]["ns_dtype"] is None
    resumed.step()
