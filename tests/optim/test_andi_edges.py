"""Edges of ANDI's contract: one validation at every entry point, refusals that change nothing, finite is finite.

Each test guards a defect a user found (issue 14): it fails on the code before the fix. "Unchanged" always means
bitwise: every parameter, every momentum buffer, every group value.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from andi import ANDI
from andi.functional import andi as andi_functional
from tests._oracles import numpy_andi_direction

# Both branches of Φ: an equilibrated matrix (min side 24 > 16), a vector, and a matrix last in the group.
SHAPES = [(32, 24), (24,), (20, 18)]
PATHS = {
    "single": {"foreach": False, "fused": False},
    "foreach": {"foreach": True, "fused": False},
    "compiled": {"foreach": False, "fused": True},
}
FUNCTIONAL = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)


def _path_params(path: str):
    marks = [pytest.mark.compile] if path == "compiled" else []
    return pytest.param(path, marks=marks, id=path)


ALL_PATHS = [_path_params(p) for p in PATHS]


def _params(seed: int = 0, shapes=SHAPES) -> list[torch.nn.Parameter]:
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in shapes]


def _fill_grads(params, seed: int = 1) -> None:
    gen = torch.Generator().manual_seed(seed)
    for p in params:
        p.grad = torch.randn(p.shape, generator=gen)


def _stepped(groups: int = 1, **kwargs) -> tuple[list[torch.nn.Parameter], ANDI]:
    """An optimizer over SHAPES (in one group, or two) after one step, so every parameter has a buffer."""
    params = _params()
    spec = [{"params": params}] if groups == 1 else [{"params": params[:2]}, {"params": params[2:], "lr": 0.01}]
    opt = ANDI(spec, lr=0.05, **kwargs)
    _fill_grads(params)
    opt.step()
    _fill_grads(params, seed=2)
    return params, opt


def _snapshot(params, opt: ANDI) -> dict:
    return {
        "params": [p.detach().clone() for p in params],
        "bufs": [opt.state[p]["momentum_buffer"].clone() if p in opt.state else None for p in params],
        "groups": [{k: v for k, v in g.items() if k != "params"} for g in opt.param_groups],
        "skips": opt.nonfinite_skips,
    }


def _assert_unchanged(before: dict, params, opt: ANDI) -> None:
    after = _snapshot(params, opt)
    for a, b in zip(after["params"], before["params"]):
        assert torch.equal(a, b), "a parameter changed although the step was refused"
    for a, b in zip(after["bufs"], before["bufs"]):
        assert (a is None and b is None) or (
            a is not None and b is not None and a.shape == b.shape and torch.equal(a, b)
        ), "a momentum buffer changed although the step was refused"
    assert after["groups"] == before["groups"]
    assert after["skips"] == before["skips"]


# ------------------------------------------------------------------------------ a refused step changes nothing
def _break_last(kind: str, params, opt: ANDI) -> type[Exception]:
    """Make the last tensor of the (last) group unusable in one way; return the exception the step must raise."""
    last = params[-1]
    if kind == "nan-gradient":
        last.grad[-1, -1] = float("nan")
        return FloatingPointError
    if kind == "wrong-shape-buffer":
        opt.state[last]["momentum_buffer"] = torch.zeros(last.shape[1], last.shape[0])
        return ValueError
    if kind == "integer-buffer":
        opt.state[last]["momentum_buffer"] = torch.zeros(last.shape, dtype=torch.int64)
        return TypeError
    if kind == "sparse-gradient":
        last.grad = last.grad.to_sparse()
        return RuntimeError
    if kind == "overflowing-gradient":
        last.grad = torch.full(last.shape, 3e38)  # finite, but ‖G‖ ≈ 5.7e40 > float32's 3.4e38
        return FloatingPointError
    raise AssertionError(kind)


FAILURES = [
    "nan-gradient",
    "wrong-shape-buffer",
    "integer-buffer",
    "sparse-gradient",
    "overflowing-gradient",
]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("kind", FAILURES)
def test_failure_on_the_last_tensor_changes_nothing(path: str, groups: int, kind: str) -> None:
    params, opt = _stepped(groups=groups, **PATHS[path])
    expected = _break_last(kind, params, opt)
    before = _snapshot(params, opt)
    with pytest.raises(expected):
        opt.step()
    _assert_unchanged(before, params, opt)


def test_wrong_shape_buffer_in_a_loaded_state_dict_is_refused_at_load() -> None:
    _, opt = _stepped()
    state = copy.deepcopy(opt.state_dict())
    state["state"][2]["momentum_buffer"] = torch.zeros(18, 20)
    fresh_params, fresh = _stepped()
    before = _snapshot(fresh_params, fresh)
    with pytest.raises(ValueError, match=r"momentum buffer of param_groups\[0\] parameter 2 has shape \(18, 20\)"):
        fresh.load_state_dict(state)
    _assert_unchanged(before, fresh_params, fresh)


def test_named_parameters_are_named_in_the_refusal() -> None:
    params = _params()
    opt = ANDI([("w1", params[0]), ("b1", params[1]), ("w2", params[2])], lr=0.05)
    _fill_grads(params)
    opt.step()
    state = copy.deepcopy(opt.state_dict())
    state["state"][1]["momentum_buffer"] = torch.zeros(3)
    with pytest.raises(ValueError, match=r"parameter 1 \('b1'\)"):
        opt.load_state_dict(state)


# --------------------------------------------------------------------------- load_state_dict: foreign and invalid
def _foreign_state_dict(kind: str, params) -> dict:
    clones = [torch.nn.Parameter(p.detach().clone()) for p in params]
    other = torch.optim.AdamW(clones, lr=1e-3) if kind == "adamw" else torch.optim.SGD(clones, lr=0.1, momentum=0.9)
    _fill_grads(clones)
    other.step()
    return other.state_dict()


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_another_optimizers_state_dict_is_refused_at_load(kind: str) -> None:
    params, opt = _stepped()
    foreign = _foreign_state_dict(kind, params)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="not an ANDI state dict"):
        opt.load_state_dict(foreign)
    _assert_unchanged(before, params, opt)
    opt.step()  # still usable


def test_state_with_other_keys_is_refused_even_when_the_groups_look_like_andis() -> None:
    params, opt = _stepped()
    state = copy.deepcopy(opt.state_dict())
    state["state"][0]["exp_avg"] = torch.zeros(32, 24)
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match="ANDI keeps only 'momentum_buffer'"):
        opt.load_state_dict(state)
    _assert_unchanged(before, params, opt)


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("eps", 0.0, "Invalid epsilon value: 0.0"),
        ("momentum", 1.5, "Invalid momentum value: 1.5"),
        ("momentum", 1.0, "Invalid momentum value: 1.0"),
        ("compat", "papr", "Invalid compat mode: 'papr'"),
        ("lr", -0.1, "Invalid learning rate"),
        ("min_dim", -3, "Invalid min_dim value"),
    ],
)
def test_invalid_hyperparameters_in_a_state_dict_are_refused_at_load(key: str, value, message: str) -> None:
    params, opt = _stepped()
    state = copy.deepcopy(opt.state_dict())
    state["param_groups"][0][key] = value
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=message):
        opt.load_state_dict(state)
    _assert_unchanged(before, params, opt)


def test_older_state_dicts_without_the_later_keys_still_load() -> None:
    _, opt = _stepped()
    state = copy.deepcopy(opt.state_dict())
    for key in ("compat", "foreach", "fused", "maximize", "momentum_dtype", "skip_nonfinite", "weight_decay"):
        del state["param_groups"][0][key]
    _, fresh = _stepped()
    fresh.load_state_dict(state)
    assert fresh.param_groups[0]["compat"] == "paper" and fresh.param_groups[0]["weight_decay"] == 0.0


# ------------------------------------------------------------------------------ groups edited by hand
@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("eps", 0.0, "Invalid epsilon value"),
        ("momentum", 1.5, "Invalid momentum value"),
        ("compat", "papr", "Invalid compat mode"),
        ("lr", float("nan"), "Invalid learning rate"),
        ("weight_decay", -1.0, "Invalid weight_decay value"),
    ],
)
def test_a_group_edited_to_an_invalid_value_is_refused_before_anything_is_written(key, value, message) -> None:
    params, opt = _stepped(groups=2)
    opt.param_groups[1][key] = value
    before = _snapshot(params, opt)
    with pytest.raises(ValueError, match=rf"param_groups\[1\]: {message}"):
        opt.step()
    _assert_unchanged(before, params, opt)


def test_eps_zero_can_no_longer_write_nan_for_a_zero_gradient() -> None:
    params, opt = _stepped()
    opt.param_groups[0]["eps"] = 0.0
    for p in params:
        p.grad = torch.zeros_like(p)
    with pytest.raises(ValueError, match="Invalid epsilon value"):
        opt.step()
    assert all(torch.isfinite(p).all() for p in params)


# ------------------------------------------------------------------------------ the functional entry point
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"compat": "papr"}, "Invalid compat mode: 'papr'"),
        ({"eps": 0.0}, "Invalid epsilon value"),
        ({"momentum": 1.0}, "Invalid momentum value"),
        ({"lr": -1.0}, "Invalid learning rate"),
        ({"compat": "reference", "weight_decay": 0.1}, "no weight decay"),
        ({"foreach": "yes"}, "Invalid foreach value"),
        ({"backend": "bogus"}, "Invalid backend"),
        ({"backend": "single", "foreach": True}, "already names the implementation"),
    ],
)
def test_functional_andi_validates_its_hyperparameters(override: dict, message: str) -> None:
    params = [p.detach() for p in _params()]
    grads = [torch.randn_like(p) for p in params]
    before = [p.clone() for p in params]
    with pytest.raises(ValueError, match=message):
        andi_functional(params, grads, [None] * len(params), **{**FUNCTIONAL, **override})
    assert all(torch.equal(p, b) for p, b in zip(params, before))


def test_functional_andi_refuses_a_wrong_shape_buffer_before_writing() -> None:
    params = [p.detach() for p in _params()]
    grads = [torch.randn_like(p) for p in params]
    bufs = [torch.zeros_like(p) for p in params]
    bufs[-1] = torch.zeros(3)
    before = [p.clone() for p in params]
    with pytest.raises(ValueError, match="momentum buffer of parameter 2 has shape"):
        andi_functional(params, grads, bufs, **FUNCTIONAL)
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert all(torch.equal(b, torch.zeros_like(b)) for b in bufs)


# ------------------------------------------------------------------------------ finite is finite
def _oracle_step(params, grads, lr: float = 0.05, mu: float = 0.9) -> list[np.ndarray]:
    """First Nesterov step in float64: θ − η(1 + μ)Φ(G)."""
    return [
        p.detach().double().numpy() - lr * (1 + mu) * numpy_andi_direction(g.double().numpy())
        for p, g in zip(params, grads)
    ]


@pytest.mark.parametrize("path", ALL_PATHS)
@pytest.mark.parametrize("magnitude", [1e18, 1e20, 1e30, 1e36])
def test_large_finite_gradients_are_updated_not_refused(path: str, magnitude: float) -> None:
    params = _params()
    gen = torch.Generator().manual_seed(4)
    grads = [torch.randn(p.shape, generator=gen) * magnitude for p in params]
    want = _oracle_step(params, grads)
    for p, g in zip(params, grads):
        p.grad = g.clone()
    opt = ANDI(params, lr=0.05, **PATHS[path])
    opt.step()
    assert opt.nonfinite_skips == 0
    for p, w in zip(params, want):
        np.testing.assert_allclose(p.detach().double().numpy(), w, rtol=2e-5, atol=2e-5 * np.abs(w).max())
    assert all(torch.isfinite(opt.state[p]["momentum_buffer"]).all() for p in params)


def test_large_finite_gradients_in_bfloat16_use_float32_limits() -> None:
    p = torch.nn.Parameter(torch.randn(32, 24).bfloat16())
    p.grad = (torch.randn(32, 24) * 1e30).bfloat16()
    want = _oracle_step([p.float()], [p.grad.float()])[0]
    ANDI([p], lr=0.05).step()
    np.testing.assert_allclose(p.detach().double().numpy(), want, rtol=2e-2, atol=2e-2 * np.abs(want).max())


@pytest.mark.parametrize("path", ALL_PATHS)
def test_a_norm_beyond_float32_is_refused_as_an_overflow_not_as_nan(path: str) -> None:
    params = _params()
    _fill_grads(params)
    params[0].grad = torch.full((32, 24), 3e38)
    opt = ANDI(params, lr=0.05, **PATHS[path])
    before = [p.detach().clone() for p in params]
    with pytest.raises(FloatingPointError) as info:
        opt.step()
    message = str(info.value)
    assert "overflows float32" in message and "NaN or Inf" not in message and "parameter 0" in message
    assert all(torch.equal(p, b) for p, b in zip(params, before))
    assert not any("momentum_buffer" in s for s in opt.state.values())
    skipping = ANDI(params, lr=0.05, skip_nonfinite=True, **PATHS[path])
    skipping.step()
    assert skipping.nonfinite_skips == 1 and torch.equal(params[0], before[0])
    assert not torch.equal(params[2], before[2])


def test_reference_mode_names_an_overflow_as_such() -> None:
    p = torch.nn.Parameter(torch.randn(32, 24))
    p.grad = torch.full((32, 24), 1e20)  # the script's ‖G‖ overflows float32 in its own arithmetic
    with pytest.raises(FloatingPointError, match="overflows float32"):
        ANDI([p], compat="reference").step()


def test_two_groups_screen_overflow_like_a_single_group() -> None:
    params, opt = _stepped(groups=2)
    params[0].grad = torch.randn(32, 24) * 1e20  # rescued
    opt.step()
    assert all(torch.isfinite(p).all() for p in params)
    params[2].grad = torch.full((20, 18), 3e38)  # refused
    before = _snapshot(params, opt)
    with pytest.raises(FloatingPointError, match="overflows float32"):
        opt.step()
    _assert_unchanged(before, params, opt)


# ------------------------------------------------------------------------------ named parameters
def test_named_complex_parameter_is_refused() -> None:
    with pytest.raises(RuntimeError, match="complex"):
        ANDI([("w", torch.nn.Parameter(torch.randn(4, 4, dtype=torch.complex64)))])


def test_the_same_tensor_under_two_names_is_refused() -> None:
    r = torch.nn.Parameter(torch.randn(4))
    with pytest.raises(ValueError, match="same tensor twice"):
        ANDI([("a", r), ("b", r)])


def test_named_parameters_still_train() -> None:
    model = torch.nn.Linear(20, 24)
    opt = ANDI(model.named_parameters(), lr=0.05)
    before = model.weight.detach().clone()
    model(torch.randn(4, 20)).sum().backward()
    opt.step()
    assert not torch.equal(before, model.weight)
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["weight", "bias"]
