"""The comparison family's pure update rules (``andi.functional.{muon, normuon, rmnp, sinkgd, scion, script_muon}``).

Each optimizer class is a thin loop over one shared step template (``andi.optim._base.FunctionalOptimizer``), so its
step must equal calling its functional directly, bit for bit. A Tensor lr must give the float lr's result without
reading any tensor on the host (no ``.item()``, ``float()``, ``bool()``: every such read is one
``aten._local_scalar_dense`` call, a device sync on an accelerator), and no functional may write into a gradient.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import andi.functional
from andi.functional.muon import muon, muon_shape_scale
from andi.functional.normuon import normuon
from andi.functional.rmnp import rmnp
from andi.functional.scion import scion
from andi.functional.script_muon import script_muon
from andi.functional.sinkgd import sinkgd
from andi.optim.muon import Muon
from andi.optim.normuon import NorMuon
from andi.optim.rmnp import RMNP
from andi.optim.scion import Scion
from andi.optim.script_muon import ScriptMuon
from andi.optim.sinkgd import SinkGD

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILY_MODULES = ["lr", "muon", "normuon", "rmnp", "sinkgd", "scion", "script_muon"]
MATRICES = [(12, 20), (20, 12), (6, 2, 3, 3)]


@dataclass(frozen=True)
class Case:
    cls: type[torch.optim.Optimizer]
    functional: Any
    state_keys: tuple[str, ...]
    kwargs: dict = field(default_factory=dict)
    shapes: list = field(default_factory=lambda: MATRICES)


CASES = {
    "muon": Case(Muon, muon, ("momentum_buffer",), {"weight_decay": 0.1}),
    "muon-nonesterov-moonlight": Case(
        Muon, muon, ("momentum_buffer",), {"nesterov": False, "adjust_lr_fn": "match_rms_adamw", "ns_safety": 1.02}
    ),
    "normuon": Case(NorMuon, normuon, ("momentum_buffer", "second_momentum_buffer"), {"weight_decay": 0.01}),
    "rmnp": Case(RMNP, rmnp, ("momentum_buffer",), {"weight_decay": 0.1}),
    "rmnp-classic": Case(RMNP, rmnp, ("momentum_buffer",), {"nesterov": False}),
    "sinkgd": Case(SinkGD, sinkgd, (), {"weight_decay": 0.1, "L": 2}),
    "scion": Case(Scion, scion, ("momentum_buffer",), {"momentum": 0.5, "norm": "colnorm"}),
    "scion-stateless": Case(Scion, scion, ("momentum_buffer",), {}, [(12, 20), (7,), (6, 2, 3, 3)]),
    "scion-unconstrained": Case(
        Scion,
        scion,
        ("momentum_buffer",),
        {"momentum": 0.3, "norm": "sign", "unconstrained": True, "weight_decay": 0.1},
    ),
    "script-muon": Case(ScriptMuon, script_muon, ("momentum_buffer",), {}, [(40, 36), (36, 40), (12, 20), (5,)]),
}


def _tensors(shapes: list, seed: int, dtype: torch.dtype = torch.float32) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(*shape, generator=generator, dtype=dtype) for shape in shapes]


def _grads(case: Case, steps: int = 3) -> list[list[torch.Tensor]]:
    return [_tensors(case.shapes, seed=100 + t) for t in range(steps)]


def _make(case: Case, lr: float | torch.Tensor) -> tuple[list[torch.nn.Parameter], torch.optim.Optimizer]:
    params = [torch.nn.Parameter(w) for w in _tensors(case.shapes, seed=1)]
    return params, case.cls(params, lr=lr, **case.kwargs)


def _train(params: list[torch.nn.Parameter], opt: torch.optim.Optimizer, grads_per_step: list[list[torch.Tensor]]):
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.clone()
        opt.step()


class ScalarReads(TorchDispatchMode):
    """Counts tensor reads into Python scalars (``.item()``, ``float()``, ``bool()``, ``.tolist()``)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


# ------------------------------------------------------------------------------------------------------ tests
@pytest.mark.parametrize("name", list(CASES))
def test_class_step_equals_functional(name):
    case = CASES[name]
    grads_per_step = _grads(case)
    from_class, opt = _make(case, 0.02)
    _train(from_class, opt, grads_per_step)

    params = _tensors(case.shapes, seed=1)
    state_lists: list[list[torch.Tensor | None]] = [[None] * len(params) for _ in case.state_keys]
    for grads in grads_per_step:
        case.functional(params, grads, *state_lists, lr=0.02, **case.kwargs)

    for a, b in zip(from_class, params):
        assert torch.equal(a.detach(), b)
    for key, values in zip(case.state_keys, state_lists):
        for p, value in zip(from_class, values):
            if value is None:  # the functional kept no state for this tensor: neither may the class
                assert key not in opt.state.get(p, {})
            else:
                assert torch.equal(opt.state[p][key], value)
    if name in ("sinkgd", "scion-stateless"):
        assert len(opt.state) == 0  # no empty state entries for parameters without state


@pytest.mark.parametrize("name", list(CASES))
def test_tensor_lr_equals_float_lr_without_host_sync(name):
    case = CASES[name]
    grads_per_step = _grads(case)
    as_float, opt = _make(case, 0.02)
    _train(as_float, opt, grads_per_step)
    as_tensor, opt = _make(case, torch.tensor(0.02))  # the constructor may read lr (validation); steps may not
    with ScalarReads() as reads:
        _train(as_tensor, opt, grads_per_step)
    assert reads.count == 0
    for a, b in zip(as_tensor, as_float):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-6)


def test_scalar_read_counter_sees_item_float_and_bool():
    x = torch.tensor(2.0)
    with ScalarReads() as reads:
        x.item(), float(x), bool(x)
    assert reads.count == 3


@pytest.mark.parametrize("name", list(CASES))
def test_functional_leaves_grads_untouched(name):
    case = CASES[name]
    params = _tensors(case.shapes, seed=1)
    state_lists: list[list[torch.Tensor | None]] = [[None] * len(params) for _ in case.state_keys]
    for grads in _grads(case, steps=2):
        before = [g.clone() for g in grads]
        case.functional(params, grads, *state_lists, lr=0.02, **case.kwargs)
        assert all(torch.equal(g, g0) for g, g0 in zip(grads, before))


@pytest.mark.parametrize(("cls", "functional"), [(c.cls, c.functional) for c in CASES.values()])
def test_functional_defaults_are_the_class_defaults(cls, functional):
    class_defaults = {
        n: p.default for n, p in inspect.signature(cls).parameters.items() if p.default is not inspect.Parameter.empty
    }
    functional_params = inspect.signature(functional).parameters.values()
    keywords = {p.name: p.default for p in functional_params if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert keywords.pop("lr") is inspect.Parameter.empty  # required, like torch's functionals
    assert keywords == {n: v for n, v in class_defaults.items() if n != "lr"}
    assert cls._hyperparameters == ("lr", *keywords)


def test_rmnp_uses_muons_shape_factor():
    assert muon_shape_scale((64, 16)) == 2.0 and muon_shape_scale((16, 64)) == 1.0
    assert muon_shape_scale((16, 64), "match_rms_adamw") == 0.2 * 8.0
    with pytest.raises(ValueError, match="adjust_lr_fn"):
        muon_shape_scale((4, 4), "bogus")
    p, g = torch.zeros(64, 16), torch.ones(64, 16)
    rmnp([p], [g], [None], lr=0.1, momentum=0.0, nesterov=False)
    torch.testing.assert_close(p, torch.full((64, 16), -0.1 * 2.0 / 4.0))  # rows of norm 4, shape factor 2


def test_muon_refuses_complex_before_writing():
    p, g = torch.zeros(4, 4), torch.ones(4, 4)
    z = torch.zeros(4, 4, dtype=torch.complex64)
    with pytest.raises(RuntimeError, match="complex"):
        muon([p, z], [g, z], [None, None], lr=0.1)
    assert torch.count_nonzero(p) == 0


@pytest.mark.parametrize("module", FAMILY_MODULES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(f"andi.functional.{module}"), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


@pytest.mark.parametrize("module", FAMILY_MODULES)
def test_functional_imports_nothing_from_the_optimizer_layers(module):
    """functional = the math: only torch, the standard library and other functional modules."""
    path = Path(andi.functional.__file__).parent / f"{module}.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            names = [("." * node.level) + (node.module or "")]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            assert not name.startswith(".."), f"{module}.py imports {name}"
            assert not name.startswith("andi.") or name.startswith("andi.functional"), f"{module}.py imports {name}"
