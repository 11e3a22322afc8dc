"""The fused ANDI step equals the single-tensor reference loop.

* ``compile``-marked tests run the ``torch.compile`` graph on CPU (inductor's C++ backend), so the fused math and its
  no-recompile contract are checked in CI without a GPU.
* The Triton kernels are checked on CPU through Triton's interpreter when ``triton`` is importable.
* ``gpu``-marked tests run both backends on CUDA and skip without it.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

import pytest
import torch

from andi.functional import andi
from andi.functional.fused import FUSED_BY_DEFAULT_ON, default_fused, fused_backends

# Each backend through the public switch, as users select it.
run_single = functools.partial(andi, backend="single")
run_compiled = functools.partial(andi, backend="compiled")
run_triton = functools.partial(andi, backend="triton")
run_fused = functools.partial(andi, fused=True)
BACKEND_CALLS = {"run_compiled": run_compiled, "run_triton": run_triton, "run_fused": run_fused}

# Both branches of Φ, a conv filter, a scalar, a small matrix and an empty tensor.
SHAPES = [(64, 48), (48,), (8, 8), (6, 3, 3, 3), (96, 32), (), (0, 5), (40, 200)]
GPU_SHAPES = [(1000, 64), (192, 64), (64,), (64, 256), (256, 64), (3, 16, 3, 3), (300,), (5, 7), (2048, 96)]
HYPER = dict(
    lr=0.02,
    momentum=0.9,
    nesterov=True,
    weight_decay=0.1,
    eps=1e-8,
    min_dim=16,
    compat="paper",
    maximize=False,
    skip_nonfinite=False,
    momentum_dtype=None,
)


def _problem(shapes, device="cpu", dtype=torch.float32, seed=0):
    gen = torch.Generator(device=device).manual_seed(seed)
    params = [torch.randn(s, generator=gen, device=device, dtype=dtype) for s in shapes]
    grads = [[torch.randn(s, generator=gen, device=device, dtype=dtype) for s in shapes] for _ in range(4)]
    return params, grads


def _run(impl: Callable, params, grads_per_step, **overrides):
    params = [p.clone() for p in params]
    bufs: list = [None] * len(params)
    kw = {**HYPER, **overrides}
    skipped = [impl(params, grads, bufs, **kw) for grads in grads_per_step]
    return params, bufs, skipped


def _assert_same(actual: list, expected: list, rtol: float = 1e-6) -> None:
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        if e is None:
            assert a is None
            continue
        scale = e.abs().max().item() if e.numel() else 0.0
        torch.testing.assert_close(a, e, rtol=rtol, atol=rtol * scale)


# ------------------------------------------------------------------------------------------- CPU (compiled graph)
@pytest.mark.compile
def test_compiled_equals_single_tensor_and_never_recompiles() -> None:
    params, grads = _problem(SHAPES)
    lr = torch.tensor(0.02)
    got = _run(run_compiled, params, grads[:2], lr=lr)
    want = _run(run_single, params, grads[:2], lr=lr)
    _assert_same(got[0], want[0])
    _assert_same(got[1], want[1])
    assert got[1][6].shape == (0, 5)  # the empty tensor still gets its (empty) buffer

    # New hyperparameters, float or Tensor lr: same graph (error_on_recompile), still equal to the reference.
    p_got, b_got = got[0], got[1]
    p_want, b_want = want[0], want[1]
    with torch._dynamo.config.patch(error_on_recompile=True):
        for step, hyper in enumerate(
            [
                dict(lr=torch.tensor(0.005)),
                dict(lr=0.01, momentum=0.5, weight_decay=0.0),
                dict(lr=0.03, eps=1e-6, weight_decay=0.3),
            ]
        ):
            kw = {**HYPER, **hyper}
            run_compiled(p_got, grads[2 + step % 2], b_got, **kw)
            run_single(p_want, grads[2 + step % 2], b_want, **kw)
            _assert_same(p_got, p_want)
            _assert_same(b_got, b_want)


@pytest.mark.compile
def test_fused_on_cpu_is_the_compiled_graph() -> None:
    assert fused_backends("cpu") in (["compile"], [])  # [] under TORCH_COMPILE_DISABLE
    params, grads = _problem(SHAPES, seed=1)
    _assert_same(_run(run_fused, params, grads[:2])[0], _run(run_single, params, grads[:2])[0])


@pytest.mark.compile
def test_nonfinite_gradients_refuse_or_skip_without_writing() -> None:
    params, grads = _problem(SHAPES, seed=2)
    p, b, _ = _run(run_compiled, params, grads[:1])
    bad = [g.clone() for g in grads[1]]
    bad[4][3, 5] = float("nan")
    before = [t.clone() for t in (*p, *b)]
    with pytest.raises(FloatingPointError, match="parameter 4"):
        run_compiled(p, bad, b, **HYPER)
    for t, t0 in zip((*p, *b), before):
        assert torch.equal(t, t0)  # a refused step changed nothing

    p_ref = [t.clone() for t in p]
    b_ref = [t.clone() for t in b]
    assert run_compiled(p, bad, b, **{**HYPER, "skip_nonfinite": True}) == 1
    assert run_single(p_ref, bad, b_ref, **{**HYPER, "skip_nonfinite": True}) == 1
    assert torch.equal(p[4], before[4]) and torch.equal(b[4], before[len(p) + 4])
    _assert_same(p, p_ref)
    _assert_same(b, b_ref)
    assert all(torch.isfinite(t).all() for t in (*p, *b))


@pytest.mark.compile
def test_compiled_float64_scalars_are_written_back() -> None:
    # Regression: inductor's CPU backend dropped the in-place write into 0-dim float64 inputs (torch 2.13).
    params, grads = _problem([(), (3,)], dtype=torch.float64, seed=6)
    got = _run(run_compiled, params, grads[:2])
    want = _run(run_single, params, grads[:2])
    _assert_same(got[0] + got[1], want[0] + want[1], rtol=1e-12)


def test_reference_mode_and_defaults_need_no_compiler() -> None:
    params, grads = _problem(SHAPES, seed=3)
    got = _run(run_compiled, params, grads[:2], compat="reference", weight_decay=0.0)
    want = _run(run_single, params, grads[:2], compat="reference", weight_decay=0.0)
    for a, e in zip(got[0] + got[1], want[0] + want[1]):
        assert torch.equal(a, e)  # delegated to the script's op-by-op path
    assert not default_fused([torch.zeros(3)])  # CPU keeps foreach under fused=None
    assert not default_fused([])
    assert run_compiled([], [], [], **HYPER) == 0
    with pytest.raises(ValueError, match="same length"):
        run_compiled([torch.zeros(2)], [], [], **HYPER)
    with pytest.raises(RuntimeError, match="sparse"):
        run_compiled([torch.zeros(3)], [torch.zeros(3).to_sparse()], [None], **HYPER)


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize(
    "overrides",
    [dict(momentum=0.0, nesterov=False), dict(nesterov=False, maximize=True), dict(min_dim=100)],
    ids=["no-momentum", "heavy-ball-maximize", "all-global-branch"],
)
def test_compiled_variants(overrides: dict) -> None:
    params, grads = _problem(SHAPES, seed=4)
    got = _run(run_compiled, params, grads[:3], **overrides)
    want = _run(run_single, params, grads[:3], **overrides)
    _assert_same(got[0], want[0])
    _assert_same(got[1], want[1])


@pytest.mark.compile
@pytest.mark.slow
@pytest.mark.parametrize(("dtype", "momentum_dtype"), [(torch.bfloat16, torch.float32), (torch.float64, None)])
def test_compiled_low_and_high_precision(dtype: torch.dtype, momentum_dtype: torch.dtype | None) -> None:
    params, grads = _problem(SHAPES, dtype=dtype, seed=5)
    got = _run(run_compiled, params, grads[:3], momentum_dtype=momentum_dtype)
    want = _run(run_single, params, grads[:3], momentum_dtype=momentum_dtype)
    assert all(p.dtype == dtype for p in got[0])
    assert all(b.dtype == (momentum_dtype or dtype) for b in got[1])
    # bf16: the fused update rounds once, the loop after every op — equal to a few bf16 ulps.
    _assert_same(got[0], want[0], rtol=2e-2 if dtype == torch.bfloat16 else 1e-12)
    _assert_same(got[1], want[1], rtol=1e-5 if dtype == torch.bfloat16 else 1e-12)


# ----------------------------------------------------------------------------- Triton kernels, interpreted on CPU
_INTERPRETED = textwrap.dedent(
    """
    import torch
    from andi.functional import andi
    from andi.functional._triton import triton_andi_step
    from andi.functional.matrix import uses_equilibration

    shapes, dtype, rtol = {shapes!r}, torch.{dtype}, {rtol!r}
    eq = tuple(uses_equilibration(s, 16) for s in shapes)
    gen = torch.Generator().manual_seed(0)
    p1 = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    p2 = [p.clone() for p in p1]
    b1, b2 = [None] * len(shapes), [torch.zeros(s, dtype=dtype) for s in shapes]
    for nesterov, maximize, lr in ((True, False, 0.02), (False, True, torch.tensor(0.01))):
        grads = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
        kw = dict(lr=lr, momentum=0.9, nesterov=nesterov, weight_decay=0.1, eps=1e-8)
        andi(p1, grads, b1, min_dim=16, compat="paper", maximize=maximize, skip_nonfinite=False,
             momentum_dtype=None, backend="single", **kw)
        ok = triton_andi_step(p2, grads, b2, equilibrate=eq, maximize=maximize, per_tensor_gate=False, **kw)
        assert ok.all()
    for a, b in zip(p1 + b1, p2 + b2):
        torch.testing.assert_close(b, a, rtol=rtol, atol=rtol * a.float().abs().max().item())
    grads[1][0] = float("nan")
    before = [t.clone() for t in p2 + b2]
    kw = dict(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, maximize=False)
    ok = triton_andi_step(p2, grads, b2, equilibrate=eq, per_tensor_gate=False, **kw)
    assert ok.tolist() == [i != 1 for i in range(len(shapes))]
    assert all(torch.equal(t, t0) for t, t0 in zip(p2 + b2, before))
    triton_andi_step(p2, grads, b2, equilibrate=eq, per_tensor_gate=True, **kw)
    assert torch.equal(p2[1], before[1]) and not torch.equal(p2[0], before[0])
    print("OK")
    """
)


# Every kernel of the triton backend runs in each call (_rowcol_sumsq and _col_reduce on the equilibrated matrices,
# _sumsq_partials, _scales and _apply on all), once per storage dtype the backend accepts. The half types are
# compared with the tolerance of one rounding of the stored result.
@pytest.mark.parametrize(("dtype", "rtol"), [("float32", 1e-6), ("bfloat16", 2e-2), ("float16", 2e-3)])
def test_triton_kernels_interpreted_on_cpu(dtype: str, rtol: float) -> None:
    pytest.importorskip("triton")
    shapes = [(64, 48), (48,), (8, 8), (6, 3, 3, 3), (40, 200), (), (1500,)]
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    code = _INTERPRETED.format(shapes=shapes, dtype=dtype, rtol=rtol)
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]


# --------------------------------------------------------------------------------------------------------- CUDA
@pytest.mark.gpu
@pytest.mark.compile
@pytest.mark.parametrize("impl_name", ["run_compiled", "run_triton", "run_fused"])
@pytest.mark.parametrize("nesterov", [True, False])
def test_cuda_paths_equal_single_tensor(impl_name: str, nesterov: bool) -> None:

    if impl_name == "run_triton" and "triton" not in fused_backends("cuda"):
        pytest.skip("triton is not installed")
    params, grads = _problem(GPU_SHAPES, device="cuda")
    got = _run(BACKEND_CALLS[impl_name], params, grads, nesterov=nesterov, lr=torch.tensor(0.02, device="cuda"))
    want = _run(run_single, params, grads, nesterov=nesterov, lr=torch.tensor(0.02, device="cuda"))
    _assert_same(got[0], want[0])
    _assert_same(got[1], want[1])


@pytest.mark.gpu
@pytest.mark.compile
@pytest.mark.parametrize("impl_name", ["run_compiled", "run_triton"])
def test_cuda_nonfinite_and_bf16(impl_name: str) -> None:

    if impl_name == "run_triton" and "triton" not in fused_backends("cuda"):
        pytest.skip("triton is not installed")
    impl = BACKEND_CALLS[impl_name]
    params, grads = _problem(GPU_SHAPES, device="cuda", seed=1)
    p, b, _ = _run(impl, params, grads[:1])
    bad = [g.clone() for g in grads[1]]
    bad[2][0] = float("inf")
    before = [t.clone() for t in (*p, *b)]
    with pytest.raises(FloatingPointError, match="parameter 2"):
        impl(p, bad, b, **HYPER)
    assert all(torch.equal(t, t0) for t, t0 in zip((*p, *b), before))
    assert impl(p, bad, b, **{**HYPER, "skip_nonfinite": True}) == 1
    assert torch.equal(p[2], before[2]) and not torch.equal(p[0], before[0])

    params16, grads16 = _problem(GPU_SHAPES, device="cuda", dtype=torch.bfloat16, seed=2)
    got = _run(impl, params16, grads16[:2], momentum_dtype=torch.float32)
    want = _run(run_single, params16, grads16[:2], momentum_dtype=torch.float32)
    _assert_same(got[0], want[0], rtol=2e-2)
    _assert_same(got[1], want[1], rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.compile
def test_cuda_no_recompile_and_default() -> None:
    params, grads = _problem(GPU_SHAPES, device="cuda", seed=3)
    assert default_fused(params) == ("cuda" in FUSED_BY_DEFAULT_ON)  # off until proven on a GPU
    p, b, _ = _run(run_compiled, params, grads[:1])
    with torch._dynamo.config.patch(error_on_recompile=True):
        for lr in (0.01, torch.tensor(0.003, device="cuda"), 0.02):
            run_compiled(p, grads[1], b, **{**HYPER, "lr": lr, "momentum": 0.8})


@pytest.mark.gpu
def test_optimizer_dispatches_to_fused() -> None:
    from andi import ANDI

    params, grads = _problem(GPU_SHAPES, device="cuda", seed=4)
    results = []
    for fused in (True, False):
        ps = [torch.nn.Parameter(p.clone()) for p in params]
        opt = ANDI(ps, lr=0.02, weight_decay=0.1, fused=fused, foreach=False if not fused else None)
        for gs in grads:
            for p, g in zip(ps, gs):
                p.grad = g
            opt.step()
        results.append([p.detach() for p in ps])
    _assert_same(results[0], results[1])
