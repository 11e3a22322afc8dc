"""The author's v7 classes (``experiments/ANDI.py`` @5cb1d03): ``ANDI(compat="v7")`` and ``ScriptDMuon`` against
transcriptions of their steps written here from the script's text, bit for bit over several steps on a small GPT;
``d-muon`` against an fp64 oracle of its paper's definition."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import andi
from andi.bench.tasks.char_gpt import CharGPT
from andi.optim.script_dmuon import ScriptDMuon

pytestmark = pytest.mark.usefixtures("one_thread")

# The v7 schedule shape at 6 steps: lr 0 at the first step (warmup from 0), then rising, then cooling down.
LR_FACTORS = (0.0, 0.5, 1.0, 1.0, 0.6, 0.2)


def _model() -> CharGPT:
    torch.manual_seed(0)
    return CharGPT(65, block_size=16, n_embd=48, n_head=2, n_layer=1)


def _batches(n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(3)
    out = []
    for _ in range(n):
        idx = torch.randint(0, 65, (4, 17), generator=g)
        out.append((idx[:, :-1], idx[:, 1:]))
    return out


def _train(model, step_fn, groups_lr: list[dict], base_lr: float) -> None:
    for factor, (x, y) in zip(LR_FACTORS, _batches(len(LR_FACTORS))):
        for group in groups_lr:
            group["lr"] = base_lr * factor
        logits = model(x)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        for p in model.parameters():
            p.grad = None
        loss.backward()
        step_fn()


# --------------------------------------------------------------------------------------- transcriptions (ours)
class _V7AndiTranscription:
    """The v7 ``ANDI.step`` written out from the script's text (per group: lr, weight_decay, momentum, nesterov)."""

    def __init__(self, groups: list[dict]) -> None:
        self.param_groups = groups
        self.state: dict[int, torch.Tensor] = {}
        self.one = torch.tensor(1.0)

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd, mom = group["lr"], group["weight_decay"], 0.9
            for p in group["params"]:
                g = p.grad
                if wd > 0:
                    p.data.mul_(1.0 - lr * wd)
                large = False
                if g.ndim > 1:
                    shape = g.shape
                    g_mat = g.view(g.shape[0], -1)
                    large = g_mat.shape[0] >= 17 and g_mat.shape[1] >= 17
                if large:
                    r = g_mat.norm(dim=1, keepdim=True).add_(1e-8)
                    c = g_mat.norm(dim=0, keepdim=True).add_(1e-8)
                    white = g_mat / (r + c)
                    target = torch.hypot(g.norm().add_(1e-8), self.one)
                    h = white.mul_(target / white.norm().add_(1e-8)).view(shape)
                else:
                    g_norm = g.norm().add_(1e-8)
                    h = g.mul(torch.hypot(g_norm, self.one) / g_norm)
                if id(p) not in self.state:
                    self.state[id(p)] = h.clone()
                buf = self.state[id(p)]
                buf.mul_(mom).add_(h)
                p.data.add_(h.add(buf, alpha=mom), alpha=-lr)


def _ns5_transcription(G: torch.Tensor) -> torch.Tensor:
    """The script's ``newton_schulz_5`` on a bf16 copy (its CUDA behaviour), written out."""
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = G.bfloat16()
    X /= X.norm() + 1e-7
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(5):
        A = X @ X.T
        B = b * A + c * A @ A
        X = a * X + B @ X
    if transposed:
        X = X.T
    return X.to(G.dtype)


class _V7DMuonTranscription:
    """The v7 ``DMuon.step`` written out (momentum 0.95, betas (0.8, 0.999), NS on a bf16 copy)."""

    def __init__(self, groups: list[dict]) -> None:
        self.param_groups = groups
        self.state: dict[int, dict] = {}

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr, wd, mom, (b1, b2) = group["lr"], group["weight_decay"], 0.95, (0.8, 0.999)
            for p in group["params"]:
                g = p.grad
                if wd != 0:
                    p.data.mul_(1 - lr * wd)
                st = self.state.setdefault(id(p), {})
                if (p.ndim == 2 and p.size(0) > 32 and p.size(1) > 32) or (p.ndim == 4 and p.size(0) > 32):
                    buf = st.setdefault("buf", torch.zeros_like(p))
                    buf.mul_(mom).add_(g)
                    flat = buf.view(p.size(0), -1)
                    scale = max(1, flat.size(0) / flat.size(1)) ** 0.5
                    p.data.add_(_ns5_transcription(flat).view_as(p), alpha=-lr * scale)
                else:
                    if "step" not in st:
                        st.update(step=0, m=torch.zeros_like(p), v=torch.zeros_like(p))
                    st["step"] += 1
                    st["m"].mul_(b1).add_(g, alpha=1 - b1)
                    st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                    denom = st["v"].sqrt().add_(1e-8)
                    size = lr * math.sqrt(1 - b2 ** st["step"]) / (1 - b1 ** st["step"])
                    p.data.addcdiv_(st["m"], denom, value=-size)


def _assert_same_params(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        assert torch.equal(p, q), f"{name} differs by {(p - q).abs().max().item()}"


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
@pytest.mark.parametrize("backend", ["single", "foreach"])
def test_andi_v7_is_the_v7_class_bit_for_bit(weight_decay, backend):
    ours, theirs = _model(), _model()
    opt = andi.ANDI(andi.weight_decay_groups(ours, weight_decay), lr=0.09, compat="v7", backend=backend)
    ref = _V7AndiTranscription(andi.weight_decay_groups(theirs, weight_decay))
    _train(ours, opt.step, opt.param_groups, 0.09)
    _train(theirs, ref.step, ref.param_groups, 0.09)
    _assert_same_params(ours, theirs)


def test_andi_v7_differs_from_the_29f90fe_script_only_on_the_vector_branch():
    g = torch.tensor([3e-8, 4e-8])  # tiny norm: hypot(ν + 1e-8, 1) and hypot(ν, 1) round apart only here
    big = torch.randn(20, 20)
    for grad in (g, big):
        v7 = andi.andi_precondition(grad, compat="v7")
        ref = andi.andi_precondition(grad, compat="reference")
        if grad.ndim == 2:
            assert torch.equal(v7, ref)
    nu = g.double().norm().item()
    expected = g.double() * math.hypot(nu + 1e-8, 1.0) / (nu + 1e-8)
    torch.testing.assert_close(andi.andi_precondition(g.double(), compat="v7"), expected, rtol=1e-15, atol=0)


def test_andi_v7_matches_an_fp64_oracle():
    """The v7 step on random tensors in fp64 against numpy, with weight decay and the (1+μ)H₁ first buffer."""
    rng = np.random.default_rng(0)
    shapes = [(24, 30), (30,), (5, 40)]
    params = [torch.tensor(rng.standard_normal(s)) for s in shapes]
    grads = [torch.tensor(rng.standard_normal(s)) for s in shapes]
    want = [p.numpy().copy() for p in params]
    opt = andi.ANDI([torch.nn.Parameter(p.clone()) for p in params], lr=0.05, weight_decay=0.1, compat="v7")
    for p, g in zip(opt.param_groups[0]["params"], grads):
        p.grad = g.clone()
    opt.step()
    for k, (w, g) in enumerate(zip(want, grads)):
        g = g.numpy()
        nu = np.linalg.norm(g) + 1e-8
        if g.ndim == 2 and min(g.shape) >= 17:
            white = g / ((np.linalg.norm(g, axis=1, keepdims=True) + 1e-8) + (np.linalg.norm(g, axis=0) + 1e-8))
            h = white * math.hypot(nu, 1.0) / (np.linalg.norm(white) + 1e-8)
        else:
            h = g * math.hypot(nu, 1.0) / nu
        buf = 1.9 * h
        expected = w * (1 - 0.05 * 0.1) - 0.05 * (h + 0.9 * buf)
        np.testing.assert_allclose(opt.param_groups[0]["params"][k].detach().numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_script_dmuon_is_the_v7_class_bit_for_bit(weight_decay):
    ours, theirs = _model(), _model()
    opt = ScriptDMuon(andi.weight_decay_groups(ours, weight_decay), lr=0.02, weight_decay=weight_decay)
    ref = _V7DMuonTranscription(andi.weight_decay_groups(theirs, weight_decay))
    _train(ours, opt.step, opt.param_groups, 0.02)
    _train(theirs, ref.step, ref.param_groups, 0.02)
    _assert_same_params(ours, theirs)
    # The NS branch covers every 2-D tensor with both sides > 32: embeddings and head included.
    ns = [n for n, p in ours.named_parameters() if "momentum_buffer" in opt.state[p]]
    assert {"tok_emb.weight", "head.weight", "blocks.0.1.in_proj_weight"} <= set(ns)
    assert all(p.ndim == 2 for n, p in ours.named_parameters() if n in ns)


def test_script_dmuon_leaves_its_momentum_buffer_unscaled_on_cpu():
    """The script divides the buffer in place on CPU; we keep the CUDA semantics (a bf16 copy)."""
    p = torch.nn.Parameter(torch.zeros(40, 40))
    opt = ScriptDMuon([p], lr=0.1, weight_decay=0.0)
    p.grad = torch.randn(40, 40)
    opt.step()
    assert torch.equal(opt.state[p]["momentum_buffer"], p.grad)


def test_script_dmuon_state_dict_resumes_bit_for_bit():
    model = _model()
    opt = ScriptDMuon(andi.weight_decay_groups(model, 0.01), lr=0.02)
    _train(model, opt.step, opt.param_groups, 0.02)
    clone = copy.deepcopy(model)
    opt2 = ScriptDMuon(andi.weight_decay_groups(clone, 0.01), lr=0.02)
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # a live state_dict shares its tensors
    _train(model, opt.step, opt.param_groups, 0.02)
    _train(clone, opt2.step, opt2.param_groups, 0.02)
    _assert_same_params(model, clone)


def _ns5_fp64(X: np.ndarray) -> np.ndarray:
    a, b, c = (3.4445, -4.7750, 2.0315)
    X = X / (np.linalg.norm(X) + 1e-7)
    transposed = X.shape[0] > X.shape[1]
    if transposed:
        X = X.T
    for _ in range(5):
        A = X @ X.T
        X = a * X + (b * A + c * A @ A) @ X
    return X.T if transposed else X


def test_d_muon_matches_its_definition_on_an_fp64_oracle():
    """Semenov et al.'s D-Muon: decoupled decay on every parameter, Nesterov momentum 0.95 (classic form, equal to
    torch's EMA form after NS's normalization), NS5, update scaled by 0.2·√max(m, n); AdamW (0.8, 0.999), ε 1e-8 on
    the rest at the same lr and decay. Three steps in fp64 (NS in fp64 too)."""
    torch.manual_seed(0)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(12, 20), nn.Tanh(), nn.Linear(20, 24), nn.Linear(24, 3))
    model.double()
    roles = {"0.weight": "hidden_matrix", "2.weight": "hidden_matrix", "3.weight": "head"}
    roles.update({n: "vector" for n, p in model.named_parameters() if p.ndim == 1})
    lr, wd = 0.01, 0.1
    opt = andi.create_optimizer("d-muon", model, lr=lr, weight_decay=wd, roles=roles, ns_dtype=torch.float64)
    ref = {n: p.detach().numpy().copy() for n, p in model.named_parameters()}
    state: dict[str, dict] = {n: {} for n in ref}
    x = torch.randn(16, 12, dtype=torch.float64)
    for t in range(1, 4):
        model.zero_grad()
        model(x).square().mean().backward()
        grads = {n: p.grad.numpy().copy() for n, p in model.named_parameters()}
        opt.step()
        for n, g in grads.items():
            w = ref[n] * (1 - lr * wd)
            st = state[n]
            if roles[n] == "hidden_matrix":
                st["buf"] = 0.95 * st.get("buf", 0.0) + g
                u = _ns5_fp64(g + 0.95 * st["buf"])
                ref[n] = w - lr * 0.2 * math.sqrt(max(g.shape)) * u
            else:
                st["m"] = 0.8 * st.get("m", 0.0) + 0.2 * g
                st["v"] = 0.999 * st.get("v", 0.0) + 0.001 * g * g
                m_hat, v_hat = st["m"] / (1 - 0.8**t), st["v"] / (1 - 0.999**t)
                ref[n] = w - lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    for n, p in model.named_parameters():  # atol: torch's EMA buffer is (1 - μ)× ours, which NS's eps 1e-7 sees
        np.testing.assert_allclose(p.detach().numpy(), ref[n], rtol=1e-6, atol=1e-7, err_msg=n)
