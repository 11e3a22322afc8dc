"""One harness every registered optimizer must pass (the optax / pytorch-optimizer pattern).

Each registry entry is built with ``andi.optim.registry.create_optimizer`` on three tiny seeded models — an MLP, a conv
net with BatchNorm and a one-block transformer with embeddings — and must: cut the loss on a fixed batch by at least
1.5x in 25 steps (fp32 and bf16), resume from a saved ``state_dict`` bit-exactly, give the same result with and without
``closure``, skip parameters whose ``grad`` is ``None``, stay finite on all-zero gradients, and leave ``p.grad`` alone.
Adding an optimizer to the registry without adding it here fails :func:`test_every_registered_optimizer_is_covered`.
"""

from __future__ import annotations

import copy
import io
import pickle
from dataclasses import dataclass, field

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from andi.optim.registry import OPTIMIZERS, create_optimizer, list_optimizers

STEPS = 25


@dataclass(frozen=True)
class Case:
    """How the harness drives one registry entry: lr and extra kwargs tuned for the tiny models, capabilities."""

    lr: float
    kwargs: dict = field(default_factory=dict)
    bf16: bool = True  # converges in bf16
    weights_only: bool = True  # state_dict loads with torch.load(weights_only=True)


_AUX = {"aux_lr": 0.01}
CASES: dict[str, Case] = {
    "andi": Case(0.01),
    "andi-reference": Case(0.01),
    "andi-v7": Case(0.01, {"weight_decay": 0.01}),
    "andi-hybrid": Case(0.01, _AUX),
    "adamw": Case(0.01),
    "sgd": Case(0.1),
    "muon": Case(0.02, _AUX),
    "d-muon": Case(0.01, {"weight_decay": 0.01}),
    "d-muon-v7": Case(0.02, {"weight_decay": 0.01}),
    "muon-andi-paper": Case(0.08),
    "sinkgd": Case(0.003, _AUX),
    "rmnp": Case(0.02, _AUX),
    "scion": Case(0.03),
    "normuon": Case(0.02, _AUX),
    "soap": Case(0.01),
    # ScalableShampoo keeps Python preconditioner objects in its state.
    "shampoo": Case(0.003, weights_only=False),
    # Prodigy's distance estimate d does not grow from d0 = 1e-6 when the parameters are bf16 (p - p0 rounds to 0).
    "prodigy": Case(1.0, bf16=False),
    "lion": Case(0.005),
}
NAMES = list(CASES)


def _available(name: str) -> None:
    if name not in list_optimizers():
        pytest.skip(f"{name}: optional package not installed (pip install 'pytorch-optimizer>=4.1')")


pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------------------------------------------- models
class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(20, 48), nn.Tanh(), nn.Linear(48, 48), nn.Tanh(), nn.Linear(48, 4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1, bias=False),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1, bias=False),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(16, 4),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TinyTransformer(nn.Module):
    def __init__(self, vocab: int = 16, block: int = 8, d: int = 40) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(block, d)
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, 2, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 2 * d), nn.GELU(), nn.Linear(2 * d, d))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.register_buffer("mask", torch.triu(torch.full((block, block), float("-inf")), diagonal=1))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(T, device=idx.device))
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=self.mask[:T, :T].to(h.dtype), need_weights=False)[0]
        x = x + self.mlp(self.ln2(x))
        return self.head(self.ln_f(x))


MODELS = {"mlp": MLP, "conv": ConvNet, "transformer": TinyTransformer}


def _batch(kind: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if kind == "mlp":
        return torch.randn(64, 20, generator=g).to(dtype), torch.randint(0, 4, (64,), generator=g)
    if kind == "conv":
        return torch.randn(32, 3, 8, 8, generator=g).to(dtype), torch.randint(0, 4, (32,), generator=g)
    idx = torch.randint(0, 16, (16, 9), generator=g)
    return idx[:, :-1], idx[:, 1:]


def _loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    out = model(x)
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), y.reshape(-1))


def _model(kind: str, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    return MODELS[kind]().to(dtype)


def _make(name: str, model: nn.Module) -> torch.optim.Optimizer:
    case = CASES[name]
    return create_optimizer(name, model, case.lr, **case.kwargs)


def _train(model: nn.Module, opt: torch.optim.Optimizer, batch, steps: int) -> list[float]:
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = _loss(model, batch)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _state_tensors(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    out = []

    def collect(value):
        if isinstance(value, torch.Tensor):
            out.append(value)
        elif isinstance(value, dict):
            for k in sorted(value, key=str):
                collect(value[k])
        elif isinstance(value, (list, tuple)):
            for v in value:
                collect(v)

    sd = opt.state_dict()
    for key in sorted(sd["state"]):
        collect(sd["state"][key])
    return out


# -------------------------------------------------------------------------------------------------------- tests
def test_every_registered_optimizer_is_covered():
    assert set(CASES) == set(list_optimizers(available_only=False)) == set(OPTIMIZERS)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("name", NAMES)
def test_loss_drops(name: str, kind: str, dtype: torch.dtype):
    _available(name)
    if dtype == torch.bfloat16 and not CASES[name].bf16:
        pytest.skip(f"{name} does not train in bf16 (see CASES)")
    model = _model(kind, dtype)
    batch = _batch(kind, dtype)
    opt = _make(name, model)
    assert isinstance(opt, torch.optim.Optimizer)
    first = _loss(model, batch).item()
    _train(model, opt, batch, STEPS)
    last = _loss(model, batch).item()
    assert last == last and first / last >= 1.5, f"{name} on {kind}/{dtype}: loss {first:.4f} -> {last:.4f}"
    assert all(p.dtype == dtype for p in model.parameters()), "optimizer changed a parameter's dtype"
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("name", NAMES)
def test_resume_equals_uninterrupted(name: str, kind: str):
    _available(name)
    k, n = 3, 7
    batch = _batch(kind, torch.float32)

    model_a = _model(kind)
    opt_a = _make(name, model_a)
    _train(model_a, opt_a, batch, n)

    model_b = _model(kind)
    opt_b = _make(name, model_b)
    _train(model_b, opt_b, batch, k)
    buf = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optim": opt_b.state_dict()}, buf)
    del model_b, opt_b
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=CASES[name].weights_only)

    model_c = _model(kind)
    with torch.no_grad():  # scramble first: the checkpoint, not the seed, must restore the weights
        for p in model_c.parameters():
            p.add_(1.0)
    model_c.load_state_dict(ckpt["model"])
    opt_c = _make(name, model_c)
    opt_c.load_state_dict(ckpt["optim"])
    _train(model_c, opt_c, batch, n - k)

    for (pname, pa), pc in zip(model_a.named_parameters(), model_c.parameters()):
        assert torch.equal(pa, pc), f"{name}/{kind}: {pname} differs after resume"
    sa, sc = _state_tensors(opt_a), _state_tensors(opt_c)
    assert len(sa) == len(sc)
    for ta, tc in zip(sa, sc):
        assert torch.equal(ta, tc), f"{name}/{kind}: optimizer state differs after resume"


@pytest.mark.parametrize("name", NAMES)
def test_closure_matches_plain_step(name: str):
    _available(name)
    batch = _batch("transformer", torch.float32)
    model_a, model_b = _model("transformer"), _model("transformer")
    opt_a, opt_b = _make(name, model_a), _make(name, model_b)
    _train(model_a, opt_a, batch, 3)
    for _ in range(3):

        def closure():
            opt_b.zero_grad()
            loss = _loss(model_b, batch)
            loss.backward()
            return loss

        returned = opt_b.step(closure)
        assert isinstance(returned, torch.Tensor) and returned.ndim == 0
    for pa, pb in zip(model_a.parameters(), model_b.parameters()):
        assert torch.equal(pa, pb)


class _WithIdleParts(nn.Module):
    """An MLP plus a Linear the forward never uses (grad stays None) and one whose output is multiplied by 0."""

    def __init__(self) -> None:
        super().__init__()
        self.body = MLP()
        self.unused = nn.Linear(20, 48)
        self.zeroed = nn.Linear(20, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + 0.0 * self.zeroed(x)


@pytest.mark.parametrize("name", NAMES)
def test_none_grad_skipped_zero_grad_finite(name: str):
    _available(name)
    torch.manual_seed(0)
    model = _WithIdleParts()
    case = CASES[name]
    # The idle Linears come last and would be taken for the head; keep the body's output layer the head
    # (single-optimizer arms ignore roles).
    roles = {"unused.weight": "hidden_matrix", "zeroed.weight": "hidden_matrix", "body.net.4.weight": "head"}
    opt = create_optimizer(name, model, case.lr, roles=roles, **case.kwargs)
    idle = {n: p.detach().clone() for n, p in model.unused.named_parameters()}
    batch = _batch("mlp", torch.float32)
    for _ in range(4):
        opt.zero_grad(set_to_none=True)
        _loss(model, batch).backward()
        assert model.unused.weight.grad is None
        assert torch.count_nonzero(model.zeroed.weight.grad) == 0
        opt.step()
    for n, p in model.unused.named_parameters():
        assert torch.equal(p, idle[n]), f"{name} changed {n}, whose grad is None"
        assert p not in opt.state or not opt.state[p], f"{name} created state for a parameter without grad"
    assert all(torch.isfinite(p).all() for p in model.parameters()), f"{name}: zero gradients produced non-finite"


@pytest.mark.parametrize("name", NAMES)
def test_grad_left_untouched(name: str):
    _available(name)
    model = _model("conv")
    opt = _make(name, model)
    batch = _batch("conv", torch.float32)
    for _ in range(2):
        opt.zero_grad()
        _loss(model, batch).backward()
        before = [p.grad.clone() for p in model.parameters()]
        opt.step()
        for g0, p in zip(before, model.parameters()):
            assert torch.equal(g0, p.grad), f"{name} modified p.grad in step()"


@pytest.mark.parametrize("name", NAMES)
def test_scheduler_drives_lr(name: str):
    _available(name)
    model = _model("mlp")
    opt = _make(name, model)
    lrs = [g["lr"] for g in opt.param_groups]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: 0.5**t)
    batch = _batch("mlp", torch.float32)
    for t in range(1, 3):
        _train(model, opt, batch, 1)
        sched.step()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr * 0.5**t for lr in lrs])


@pytest.mark.parametrize("name", NAMES)
def test_deepcopy_continues_identically(name: str):
    _available(name)
    model = _model("mlp")
    opt = _make(name, model)
    batch = _batch("mlp", torch.float32)
    _train(model, opt, batch, 2)
    twin = copy.deepcopy({"model": model, "opt": opt})
    _train(model, opt, batch, 2)
    _train(twin["model"], twin["opt"], batch, 2)
    for pa, pb in zip(model.parameters(), twin["model"].parameters()):
        assert pa is not pb and torch.equal(pa, pb)


@pytest.mark.parametrize("name", NAMES)
def test_pickle_round_trip_continues_identically(name: str):
    """The object pickles with its model (the hybrids hold their factories) and steps bitwise the same after."""
    _available(name)
    model = _model("mlp")
    opt = _make(name, model)
    batch = _batch("mlp", torch.float32)
    _train(model, opt, batch, 2)
    twin = pickle.loads(pickle.dumps({"model": model, "opt": opt}))
    _train(model, opt, batch, 2)
    _train(twin["model"], twin["opt"], batch, 2)
    for pa, pb in zip(model.parameters(), twin["model"].parameters()):
        assert torch.equal(pa, pb)


#: Refused at construction, which the contract allows: the script's D-Muon and the library classes take a float lr.
FLOAT_LR_ONLY = {"d-muon-v7", "soap", "shampoo", "prodigy", "lion"}


@pytest.mark.parametrize("shape", [(1,), (1, 1)])
@pytest.mark.parametrize("name", NAMES)
def test_one_element_tensor_lr_of_any_shape_is_a_scalar(name: str, shape: tuple[int, ...]):
    """A 0-dim parameter in the group must not be broadcast to the lr's shape (nor refused after a partial write)."""
    _available(name)
    torch.manual_seed(0)
    params = [nn.Parameter(torch.randn(24, 24)), nn.Parameter(torch.randn(())), nn.Parameter(torch.randn(5))]
    twins = [nn.Parameter(p.detach().clone()) for p in params]
    case = CASES[name]
    if name in FLOAT_LR_ONLY:
        with pytest.raises(ValueError, match="takes a float lr"):
            create_optimizer(name, params, torch.full(shape, case.lr), **case.kwargs)
        return
    opt = create_optimizer(name, params, torch.full(shape, case.lr), **case.kwargs)
    ref = create_optimizer(name, twins, case.lr, **case.kwargs)
    for _ in range(2):
        for p, q in zip(params, twins):
            p.grad = torch.ones_like(p) * 0.1
            q.grad = p.grad.clone()
        opt.step()
        ref.step()
    for p, q in zip(params, twins):
        assert p.shape == q.shape
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("name", NAMES)
def test_one_cycle_down_to_zero_momentum_runs_to_the_end(name: str):
    """OneCycleLR(base_momentum=0) writes momentum 0 mid-run, with nesterov on: torch's SGD runs on, so must we."""
    _available(name)
    model = _model("mlp")
    opt = _make(name, model)
    if "momentum" not in opt.defaults and "betas" not in opt.defaults:
        pytest.skip(f"{name}: OneCycleLR cycles momentum only where the defaults hold one (a hybrid's groups differ)")
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=CASES[name].lr, total_steps=40, base_momentum=0.0)
    batch = _batch("mlp", torch.float32)
    for _ in range(40):
        _train(model, opt, batch, 1)
        sched.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_meta_device_parameters_step_shape_only(name: str):
    """Models built on the meta device (to shape-check them before materializing) step like torch's own."""
    _available(name)
    if name == "prodigy":
        pytest.skip("prodigy: the library reads its distance estimate with .item() (no values on meta)")
    with torch.device("meta"):
        model = MLP()
    opt = _make(name, model)
    for p in model.parameters():
        p.grad = torch.empty_like(p)
    opt.step()
    opt.step()
    assert all(p.device.type == "meta" for p in model.parameters())
