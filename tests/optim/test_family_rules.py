"""Hand-written family members checked against fp64 transcriptions of the formulas in docs/design/family.md (random G).

Each reference below is written from the spec text, independently of the package code, and run in float64; the
optimizer under test runs on float64 parameters too, so agreement must be tight.
"""

from __future__ import annotations

import math

import pytest
import torch

from andi.functional.newton_schulz import (
    NS5_COEFFICIENTS,
    POLAR_EXPRESS_COEFFICIENTS,
    POLAR_EXPRESS_EPS,
    POLAR_EXPRESS_SAFETY,
    zeropower_via_newtonschulz5,
)
from andi.functional.normalize import (
    lmo_bias_rms,
    lmo_colnorm,
    lmo_rownorm,
    lmo_sign,
    lmo_spectral,
    row_normalize,
    scion_lmo,
    sr_sinkhorn,
)
from andi.optim.muon import Muon, make_muon
from andi.optim.normuon import NorMuon
from andi.optim.rmnp import RMNP
from andi.optim.scion import Scion
from andi.optim.script_muon import ScriptMuon
from andi.optim.sinkgd import SinkGD

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _step(opt_cls, W0: torch.Tensor, grads: list[torch.Tensor], **kw) -> torch.Tensor:
    p = torch.nn.Parameter(W0.clone())
    opt = opt_cls([p], **kw)
    for g in grads:
        p.grad = g.clone()
        opt.step()
    return p.detach()


def _ns_reference(G: torch.Tensor, coeffs, steps: int, eps: float = 1e-7, safety: float = 1.0) -> torch.Tensor:
    """docs/design/family.md (Muon), literally: transpose to the short side, X/‖X‖, T quintic steps, transpose back."""
    X = G.clone()
    tall = X.shape[0] > X.shape[1]
    if tall:
        X = X.T
    X = X / max(X.norm().item() * safety, eps)
    table = [coeffs] * steps if len(coeffs) == 3 and not isinstance(coeffs[0], tuple) else list(coeffs)
    for a, b, c in table[:steps]:
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    return X.T if tall else X


# ----------------------------------------------------------------------------------------------- Newton–Schulz
@pytest.mark.parametrize("shape", [(24, 40), (40, 24), (32, 32)])
def test_newton_schulz_matches_fp64_transcription(shape):
    G = _rand(*shape)
    ours = zeropower_via_newtonschulz5(G, 5, NS5_COEFFICIENTS, dtype=None)
    torch.testing.assert_close(ours, _ns_reference(G, NS5_COEFFICIENTS, 5), rtol=1e-10, atol=1e-12)
    # bf16 (the default) is the same iteration up to bf16 rounding
    bf = zeropower_via_newtonschulz5(G.float()).double()
    assert bf.dtype == F64 and (bf - ours).abs().max() < 0.05


def test_newton_schulz_singular_values_and_polar_express():
    G = _rand(64, 96)
    s = torch.linalg.svdvals(zeropower_via_newtonschulz5(G, dtype=None))
    assert s.min() > 0.6 and s.max() < 1.2  # roughly (0.68, 1.13), not the exact polar factor
    pe = zeropower_via_newtonschulz5(
        G, 5, POLAR_EXPRESS_COEFFICIENTS, POLAR_EXPRESS_EPS, safety=POLAR_EXPRESS_SAFETY, dtype=None
    )
    ref = _ns_reference(G, POLAR_EXPRESS_COEFFICIENTS, 5, POLAR_EXPRESS_EPS, POLAR_EXPRESS_SAFETY)
    torch.testing.assert_close(pe, ref, rtol=1e-10, atol=1e-12)
    s_pe = torch.linalg.svdvals(pe)
    assert (s_pe - 1).abs().max() < (s - 1).abs().max()  # Polar Express lands closer to the polar factor


def test_newton_schulz_batched_zero_and_input_untouched():
    G = _rand(3, 20, 12)
    G0 = G.clone()
    batched = zeropower_via_newtonschulz5(G, dtype=None)
    for i in range(3):
        torch.testing.assert_close(batched[i], zeropower_via_newtonschulz5(G[i], dtype=None), rtol=1e-10, atol=1e-12)
    assert torch.equal(G, G0)
    assert torch.count_nonzero(zeropower_via_newtonschulz5(torch.zeros(8, 5))) == 0
    with pytest.raises(ValueError, match="matrix"):
        zeropower_via_newtonschulz5(torch.zeros(5))


# ----------------------------------------------------------------------------------------------------- SinkGD
def _sinkhorn_reference(G: torch.Tensor, L: int, eps: float = 1e-8) -> torch.Tensor:
    X = G.reshape(G.shape[0], -1).clone()
    m, n = X.shape
    for _ in range(L):
        for i in range(m):
            X[i] = math.sqrt(n) * X[i] / max(X[i].norm().item(), eps)
        for j in range(n):
            X[:, j] = math.sqrt(m) * X[:, j] / max(X[:, j].norm().item(), eps)
    return X.reshape(G.shape)


@pytest.mark.parametrize("L", [1, 5])
@pytest.mark.parametrize("shape", [(12, 20), (8, 3, 3, 3)])
def test_sinkgd_step_matches_spec(L, shape):
    W0, G = _rand(*shape, seed=1), _rand(*shape, seed=2)
    lr, wd = 0.01, 0.1
    got = _step(SinkGD, W0, [G], lr=lr, L=L, weight_decay=wd)
    want = W0 * (1 - lr * wd) - lr * _sinkhorn_reference(G, L)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_sinkhorn_l1_closed_form_and_fixed_point():
    G = _rand(10, 14)
    m, n = G.shape
    r = G.norm(dim=1, keepdim=True)
    rho = (G / r).norm(dim=0, keepdim=True)
    torch.testing.assert_close(sr_sinkhorn(G, 1), math.sqrt(m) * G / (r * rho), rtol=1e-12, atol=1e-12)
    X = sr_sinkhorn(G, 200)
    torch.testing.assert_close(X.norm(dim=0), torch.full((n,), math.sqrt(m), dtype=F64))
    torch.testing.assert_close(X.norm(dim=1), torch.full((m,), math.sqrt(n), dtype=F64), rtol=1e-6, atol=1e-6)
    assert torch.count_nonzero(sr_sinkhorn(torch.zeros(4, 6), 5)) == 0


# ------------------------------------------------------------------------------------------------------- RMNP
@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(20, 8), (8, 20), (6, 2, 3, 3)])
def test_rmnp_matches_spec(shape, nesterov):
    W0 = _rand(*shape, seed=3)
    grads = [_rand(*shape, seed=10 + t) for t in range(3)]
    lr, mu, wd = 0.02, 0.95, 0.05
    got = _step(RMNP, W0, grads, lr=lr, momentum=mu, nesterov=nesterov, weight_decay=wd)
    W, buf = W0.clone(), torch.zeros_like(W0)
    m, n = shape[0], math.prod(shape[1:])
    for G in grads:
        buf = mu * buf + G
        U = (G + mu * buf) if nesterov else buf
        U2 = U.reshape(m, n)
        R = torch.stack([row / max(row.norm().item(), 1e-12) for row in U2]).reshape(shape)
        W = W * (1 - lr * wd) - lr * math.sqrt(max(1, m / n)) * R
    torch.testing.assert_close(got, W, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(row_normalize(U), R)


# ------------------------------------------------------------------------------------------------------ Scion
def test_scion_lmos_match_spec():
    g = _rand(12, 20)
    d_out, d_in = g.shape
    col = g.norm(dim=0, keepdim=True)
    row = g.norm(dim=1, keepdim=True)
    torch.testing.assert_close(lmo_colnorm(g), g / (col / math.sqrt(d_out) + 1e-8))
    torch.testing.assert_close(lmo_colnorm(g, normalized=True), g / (col / math.sqrt(d_out) * d_in + 1e-8))
    emb = _rand(30, 6)  # (vocab, d): transpose=True normalizes each embedding dimension over the vocabulary
    want = (emb.T / (emb.T.norm(dim=0, keepdim=True) / math.sqrt(6) + 1e-8)).T
    torch.testing.assert_close(lmo_colnorm(emb, transpose=True), want)
    torch.testing.assert_close(lmo_rownorm(g), g / (row * math.sqrt(d_in) + 1e-8))
    torch.testing.assert_close(lmo_rownorm(g, normalized=False), g / (row + 1e-8))
    torch.testing.assert_close(lmo_sign(g), torch.sign(g) / d_in)
    v = _rand(7)
    torch.testing.assert_close(lmo_bias_rms(v), v / (v.pow(2).mean().sqrt() + 1e-8))
    spec = lmo_spectral(g)
    assert torch.equal(spec, zeropower_via_newtonschulz5(g) * math.sqrt(d_out / d_in))  # bf16, as in scion.py
    assert lmo_spectral(g, max_scale=True).float().norm() > spec.float().norm()  # max(1, s) with s < 1 here
    w = _rand(8, 4, 3, 3)  # SpectralConv: NS5 of the (out, in·k·k) view · sqrt(out/in) / k²
    want = zeropower_via_newtonschulz5(w.reshape(8, -1)).reshape(w.shape) * (math.sqrt(8 / 4) / 9)
    assert torch.equal(lmo_spectral(w), want)
    torch.testing.assert_close(lmo_colnorm(w), lmo_colnorm(w.reshape(8, -1)).reshape(w.shape))
    torch.testing.assert_close(scion_lmo("auto", v), lmo_bias_rms(v))
    with pytest.raises(ValueError, match="Unknown Scion norm"):
        scion_lmo("spectrall", g)


@pytest.mark.parametrize("unconstrained", [False, True])
def test_scion_step_matches_spec(unconstrained):
    W0 = _rand(12, 20, seed=5)
    grads = [_rand(12, 20, seed=20 + t) for t in range(3)]
    lr, alpha, scale = 0.05, 0.1, 3.0
    got = _step(
        Scion,
        W0,
        grads,
        lr=lr,
        momentum=alpha,
        norm="colnorm",
        norm_kwargs={"normalized": True},
        scale=scale,
        unconstrained=unconstrained,
    )
    W, d = W0.clone(), torch.zeros_like(W0)
    for G in grads:
        d = (1 - alpha) * d + alpha * G
        u = scale * lmo_colnorm(d, normalized=True)
        W = (W if unconstrained else (1 - lr) * W) - lr * u
    torch.testing.assert_close(got, W, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="constrained"):
        Scion([torch.nn.Parameter(W0)], weight_decay=0.1)


# ------------------------------------------------------------------------------------------------ script Muon
def _script_reference(W0: torch.Tensor, grads: list[torch.Tensor], lr: float, mu: float = 0.9) -> torch.Tensor:
    """The script's Muon (docs/design/family.md) transcribed: NS on the raw gradient when both sides > 32, classic
    Nesterov momentum, no wd."""
    W, buf = W0.clone(), torch.zeros_like(W0)
    for g in grads:
        gm = g.reshape(g.shape[0], -1)
        if g.ndim > 1 and gm.shape[0] > 32 and gm.shape[1] > 32:
            X = gm / (gm.norm() + 1e-7)
            tall = X.shape[0] > X.shape[1]
            X = X.T if tall else X
            a, b, c = NS5_COEFFICIENTS
            for _ in range(5):
                A = X @ X.T
                X = a * X + (b * A + c * A @ A) @ X
            X = X.T if tall else X
            g_final = X.reshape(g.shape) * math.sqrt(max(1, gm.shape[0] / gm.shape[1]))
        else:
            g_final = g
        buf = mu * buf + g_final
        W = W - lr * (g_final + mu * buf)
    return W


@pytest.mark.parametrize("shape", [(48, 40), (40, 33, 1, 1), (64, 27), (16, 64), (50,)])
def test_script_muon_matches_spec(shape):
    W0 = _rand(*shape, seed=7)
    grads = [_rand(*shape, seed=30 + t) for t in range(3)]
    got = _step(ScriptMuon, W0, grads, lr=0.05)
    torch.testing.assert_close(got, _script_reference(W0, grads, 0.05), rtol=1e-10, atol=1e-12)


# ------------------------------------------------------------------------------------------------ Muon, NorMuon
def _muon_reference(W0, grads, lr, mu, wd, nesterov=True):
    W, M = W0.clone(), torch.zeros_like(W0)
    m, n = W0.shape[0], math.prod(W0.shape[1:])
    for G in grads:
        M = mu * M + (1 - mu) * G
        U = (1 - mu) * G + mu * M if nesterov else M
        O = zeropower_via_newtonschulz5(U.reshape(m, n), dtype=torch.float32).double().reshape(W0.shape)
        W = W * (1 - lr * wd) - lr * math.sqrt(max(1, m / n)) * O
    return W


@pytest.mark.parametrize("nesterov", [True, False])
@pytest.mark.parametrize("shape", [(40, 24), (8, 4, 3, 3)])
def test_muon_reference_form_matches_spec(shape, nesterov):
    W0 = _rand(*shape, seed=8)
    grads = [_rand(*shape, seed=40 + t) for t in range(3)]
    got = _step(Muon, W0, grads, lr=0.02, momentum=0.95, weight_decay=0.1, nesterov=nesterov)
    want = _muon_reference(W0, grads, 0.02, 0.95, 0.1, nesterov)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-5)  # NS in fp32 (CPU) on both sides; momenta in fp64


def test_make_muon_uses_torch_for_matrices_and_reference_form_for_conv():
    lin = [torch.nn.Parameter(torch.randn(8, 4))]
    conv = [torch.nn.Parameter(torch.randn(8, 4, 3, 3)), torch.nn.Parameter(torch.randn(8, 4))]
    # torch.optim.Muon iterates in bf16 only: on CPU (float32 NS by default) the reference form takes the job
    assert type(make_muon(lin, lr=0.02)) is Muon
    assert type(make_muon(lin, lr=0.02, ns_dtype=torch.bfloat16)) is torch.optim.Muon
    assert type(make_muon([{"params": lin, "ns_dtype": torch.bfloat16}], ns_dtype=torch.bfloat16)) is torch.optim.Muon
    assert type(make_muon(conv, lr=0.02, ns_dtype=torch.bfloat16)) is Muon
    # torch.optim.Muon takes one (a, b, c) triple and no safety factor: Polar Express needs the reference form
    assert type(make_muon(lin, ns_coefficients=POLAR_EXPRESS_COEFFICIENTS, ns_safety=1.02)) is Muon
    assert type(make_muon([{"params": lin, "ns_safety": 1.02}], ns_dtype=torch.bfloat16)) is Muon
    W0, G = _rand(16, 24, seed=12), _rand(16, 24, seed=13)
    got = _step(
        Muon,
        W0,
        [G],
        lr=0.1,
        weight_decay=0.0,
        momentum=0.0,
        nesterov=False,
        ns_coefficients=POLAR_EXPRESS_COEFFICIENTS,
        eps=POLAR_EXPRESS_EPS,
        ns_safety=POLAR_EXPRESS_SAFETY,
    )
    want = W0 - 0.1 * _ns_reference(G, POLAR_EXPRESS_COEFFICIENTS, 5, POLAR_EXPRESS_EPS, POLAR_EXPRESS_SAFETY)
    torch.testing.assert_close(got, want, rtol=0, atol=0.1 * 1e-4)  # NS in float32 on CPU
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        Muon([torch.nn.Parameter(torch.randn(4))])


def test_normuon_matches_spec():
    shape = (24, 40)
    W0 = _rand(*shape, seed=9)
    grads = [_rand(*shape, seed=50 + t) for t in range(3)]
    lr, mu, beta2, wd, eps = 0.02, 0.95, 0.95, 0.01, 1e-8
    got = _step(NorMuon, W0, grads, lr=lr, momentum=mu, beta2=beta2, weight_decay=wd, eps=eps)
    W, M, v = W0.clone(), torch.zeros_like(W0), torch.zeros(shape[0], 1, dtype=F64)
    for G in grads:
        M = mu * M + (1 - mu) * G
        U = (1 - mu) * G + mu * M
        O = zeropower_via_newtonschulz5(U).double()
        v = beta2 * v + (1 - beta2) * (O**2).mean(dim=1, keepdim=True)
        Oh = O / (v.sqrt() + eps)
        Oh = Oh * O.norm() / max(Oh.norm().item(), eps)
        W = W * (1 - lr * wd) - lr * math.sqrt(max(1, shape[0] / shape[1])) * Oh
    torch.testing.assert_close(got, W, rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (SinkGD, {}),
        (RMNP, {"weight_decay": 0.1}),
        (Muon, {}),
        (NorMuon, {}),
        (ScriptMuon, {}),
        (Scion, {"momentum": 0.5}),
    ],
)
def test_tensor_lr_equals_float_lr(cls, kw):
    W0, grads = _rand(12, 40, seed=11), [_rand(12, 40, seed=70 + t) for t in range(2)]
    as_float = _step(cls, W0, grads, lr=0.01, **kw)
    as_tensor = _step(cls, W0, grads, lr=torch.tensor(0.01, dtype=F64), **kw)
    torch.testing.assert_close(as_tensor, as_float, rtol=1e-12, atol=1e-12)
