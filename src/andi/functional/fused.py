r"""The fused ANDI step: one compiled graph (or a handful of Triton kernels) for every tensor of a call.

Same update as the eager backends (``H = Φ(G)``, Nesterov momentum on ``H``, decoupled weight decay), selected with
``andi(..., backend="compiled" | "triton")`` or the optimizer's ``fused=True``:

.. math::
    \begin{aligned}
    \text{pass 1}&:\ r_i^2 = \textstyle\sum_j M_{ij}^2,\ c_j^2 = \sum_i M_{ij}^2,\ \nu^2 = \sum_i r_i^2 \\
    \text{pass 2}&:\ \|\hat G\|_F^2 = \textstyle\sum_{ij} \big(M_{ij} / (r_i + c_j + \epsilon)\big)^2,\quad
        s = \sqrt{\nu^2 + 1} / (\|\hat G\|_F + \epsilon) \\
    \text{pass 3}&:\ H = s\,\hat G,\ M_t = \mu M_{t-1} + H,\ U = H + \mu M_t,\
        \theta \leftarrow \theta(1 - \eta\lambda) - \eta U
    \end{aligned}

Memory traffic. ``‖Ĝ‖_F`` depends on every ``r_i`` and ``c_j``, so it needs its own read of ``G``: the equilibration
branch reads ``G`` three times and reads and writes the momentum buffer and the parameter once each, **7·N
elements**, the same as fused AdamW (``G, m, v`` read, ``m, v, θ`` written, ``θ`` read). The global branch (vectors,
small matrices) needs two reads of ``G``: 6·N. Every intermediate other than the ``O(m + n)`` norms stays in
registers.

Two implementations (``fused=True`` takes Triton where it applies, else the graph):

* ``backend="compiled"`` — a ``torch.compile``'d graph over all the tensors of one call (CPU and CUDA). Hyperparameters
  enter as 0-dim tensors, so changing ``lr``, ``momentum``, ``weight_decay`` or ``eps`` never recompiles; the graph
  structure (shapes, dtypes, branch of each tensor, ``nesterov``, ``maximize``) is compiled once per distinct
  layout, each layout in its own dynamo cache so many parameter groups do not exhaust the recompile limit.
* ``backend="triton"`` (:mod:`andi.functional._triton`, imported only when Triton and CUDA are present) — at most
  eight launches per storage dtype whatever the number and shapes of the tensors (tile tables over all tensors,
  pointer tables instead of stacking).

Non-finite gradients follow the optimizer's contract without a mid-step host sync: the graph computes a finite
flag per tensor from ``ν`` and gates every store on it (all tensors on the global flag unless
``skip_nonfinite``), then a single sync at the end finds the tensors that were not written and hands them to the
single-tensor backend, which raises ``FloatingPointError`` (nothing was modified), skips and counts them, or rescues
a finite gradient whose squares overflowed. The script modes (``compat="reference"``/``"v7"``, op by op) and groups
spanning several devices use the single-tensor backend, as the foreach backend does.

Precision: reductions and the update run in fp32 for fp16/bf16 tensors (in fp64 for fp64) and are rounded once
when stored, so for low-precision parameters the fused result is at least as accurate as the foreach path (which
rounds after each operation); in fp32 every path agrees to 1e-6 relative (tests).
"""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable, Sequence
from typing import Literal

import torch
from torch import Tensor

from .eager import _single_tensor_andi
from .matrix import as_matrix, uses_equilibration
from .precondition import compute_dtype
from .validation import SCRIPT_COMPAT_MODES, AndiHyperparameters

__all__ = ["FUSED_BY_DEFAULT_ON", "FusedBackend", "default_fused", "fused_backends", "triton_available"]

FusedBackend = Literal["auto", "compile", "triton"]

#: Layouts (shapes, dtypes, flags) compiled at most this many times per process before the oldest is dropped.
_MAX_CACHED_LAYOUTS = 64
#: Storage dtypes the Triton kernels take (their arithmetic is fp32); fp64 goes to the compiled graph.
_TRITON_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


# ----------------------------------------------------------------------------------------------------------------
# Availability and the default selection
# ----------------------------------------------------------------------------------------------------------------
def _compile_disabled() -> bool:
    return os.environ.get("TORCH_COMPILE_DISABLE", "0") not in ("", "0")


@functools.cache
def triton_available() -> bool:
    """Whether Triton can be imported and a CUDA device is present (the Triton kernels need both)."""
    if not torch.cuda.is_available():
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def fused_backends(device: torch.device | str) -> list[str]:
    """The fused implementations usable on ``device``, preferred first (``[]`` when none is)."""
    device = torch.device(device)
    backends = []
    if device.type == "cuda" and triton_available():
        backends.append("triton")
    # Inductor generates Triton for CUDA and C++ for CPU; TORCH_COMPILE_DISABLE turns torch.compile into eager.
    if not _compile_disabled() and (device.type == "cpu" or (device.type == "cuda" and triton_available())):
        backends.append("compile")
    return backends


#: Device types on which ``fused=None`` picks the fused path. Empty until the fused kernels have passed
#: ``tests/gpu`` and the step benchmark on a real GPU (torch's own policy: fused becomes a default only once proven);
#: until then CUDA takes the foreach path by default and ``fused=True`` (or ``backend="triton"``) opts in.
FUSED_BY_DEFAULT_ON: frozenset[str] = frozenset()


def default_fused(params: Sequence[Tensor]) -> bool:
    """What ``fused=None`` means: the fused path for plain dense tensors on one device whose type is in
    :data:`FUSED_BY_DEFAULT_ON` and has a usable fused backend; otherwise the eager paths.

    CPU is not in the set: the compiled CPU graph is correct, but its first call compiles C++ for tens of seconds,
    which users of ``fused=None`` did not ask for.
    """
    if not params:
        return False
    devices = {p.device for p in params}
    if len(devices) != 1:
        return False
    (device,) = devices
    if device.type not in FUSED_BY_DEFAULT_ON or not fused_backends(device):
        return False
    return all(type(p) in (Tensor, torch.nn.Parameter) and p.layout == torch.strided for p in params)


# ----------------------------------------------------------------------------------------------------------------
# The graph: pure tensor code, traced once per layout by dynamo
# ----------------------------------------------------------------------------------------------------------------
def _andi_graph(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    hyper: Tensor,
    lr: Tensor,
    *,
    equilibrate: tuple[bool, ...],
    nesterov: bool,
    maximize: bool,
    has_momentum: bool,
) -> Tensor:
    """Update ``params`` (and ``bufs`` when ``has_momentum``) in place; return the per-tensor finite flags.

    ``hyper`` is ``[momentum, weight_decay, eps, skip_nonfinite]`` and ``lr`` a 0-dim tensor, both float64 (cast per
    tensor to its compute dtype inside the graph, which is free). ``skip_nonfinite`` (1 or 0) gates each tensor on
    its own finite flag, or every tensor on all of them.
    """
    norms: list[Tensor] = []
    stats: list[tuple[Tensor, Tensor] | None] = []
    for grad, eq in zip(grads, equilibrate):
        g = grad.to(compute_dtype(grad.dtype))
        if eq:
            mat = as_matrix(g)
            row = torch.linalg.vector_norm(mat, dim=1, keepdim=True)
            col = torch.linalg.vector_norm(mat, dim=0, keepdim=True)
            norms.append(torch.linalg.vector_norm(row))
            stats.append((row, col))
        else:
            norms.append(torch.linalg.vector_norm(g))
            stats.append(None)
    finite = torch.stack([n.isfinite() for n in norms])
    all_finite = finite.all()
    per_tensor_gate = hyper[3] != 0

    for i, (param, grad) in enumerate(zip(params, grads)):
        work = compute_dtype(grad.dtype)
        momentum, weight_decay, eps = hyper[:3].to(work).unbind()
        step = lr.to(work)
        nu = norms[i]
        target = torch.hypot(nu, torch.ones_like(nu))
        g = grad.to(work)
        st = stats[i]
        if st is None:
            h = g * (target / (nu + eps))
        else:
            row, col = st
            g_hat = (as_matrix(g) / ((row + eps) + col)).view(g.shape)
            h = g_hat * (target / (torch.linalg.vector_norm(g_hat) + eps))
        if maximize:
            h = -h
        ok = torch.where(per_tensor_gate, finite[i], all_finite)
        if has_momentum:
            buf = bufs[i]
            # The foreach path casts H to the buffer dtype before the momentum update; so do we.
            h = h.to(buf.dtype).to(work)
            new_buf = buf.to(work) * momentum + h
            update = h + momentum * new_buf if nesterov else new_buf
            buf.copy_(torch.where(ok, new_buf.to(buf.dtype), buf))
        else:
            update = h
        new_param = param.to(work) * (1 - step * weight_decay) - step * update
        param.copy_(torch.where(ok, new_param.to(param.dtype), param))
    return finite


@functools.lru_cache(maxsize=_MAX_CACHED_LAYOUTS)
def _compiled_graph(layout: tuple) -> Callable[..., Tensor]:
    """A compiled copy of :func:`_andi_graph` for one layout.

    Dynamo keeps its compiled variants per *code object* and stops compiling after ``recompile_limit`` (8) of them;
    an optimizer with many parameter groups has many layouts. Each layout therefore gets its own copy of the code
    object, hence its own cache holding exactly one graph: a layout never recompiles, and hyperparameters are
    tensors, so nothing else can trigger a recompile.
    """
    del layout  # only the cache key
    code = _andi_graph.__code__.replace()
    fn = types.FunctionType(code, _andi_graph.__globals__, _andi_graph.__name__, _andi_graph.__defaults__)
    fn.__kwdefaults__ = _andi_graph.__kwdefaults__
    return torch.compile(fn, fullgraph=True, dynamic=False)


def _hyper_tensors(
    device: torch.device,
    lr: float | Tensor,
    momentum: float,
    weight_decay: float,
    eps: float,
    skip_nonfinite: bool,
) -> tuple[Tensor, Tensor]:
    """Hyperparameters as float64 tensors on ``device``; a host->device copy without a sync on CUDA."""
    hyper = torch.tensor([momentum, weight_decay, eps, float(skip_nonfinite)], dtype=torch.float64)
    if isinstance(lr, Tensor):
        lr_t = lr.detach().reshape(()).to(torch.float64)
    else:
        lr_t = torch.tensor(lr, dtype=torch.float64)
    if device.type == "cuda":
        hyper = hyper.pin_memory().to(device, non_blocking=True)
        if lr_t.device != device:
            lr_t = (lr_t.pin_memory() if lr_t.device.type == "cpu" else lr_t).to(device, non_blocking=True)
    elif lr_t.device != device:
        lr_t = lr_t.to(device)
    return hyper, lr_t


# ----------------------------------------------------------------------------------------------------------------
# The backends (same signature as the eager ones; :func:`andi.functional.andi` dispatches with backend=...)
# ----------------------------------------------------------------------------------------------------------------
def _prepare(params: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters) -> list[int]:
    """Create zero buffers where missing (``M_0 = 0`` gives ``M_1 = H_1``, the foreach path's clone) and return the
    indices of the non-empty tensors (the inputs were checked by the dispatcher)."""
    active = []
    for i, p in enumerate(params):
        if hp.momentum != 0 and momentum_buffers[i] is None:
            momentum_buffers[i] = torch.zeros_like(
                p, dtype=hp.momentum_dtype or p.dtype, memory_format=torch.preserve_format
            )
        if p.numel() > 0:
            active.append(i)
    return active


def _unwritten(finite: Tensor, active: list[int]) -> list[int]:
    """The one host sync of a fused step: the indices (into the call's lists) of the tensors the graph did not write.

    Without ``skip_nonfinite`` the graph gates every tensor on all flags, so then nothing at all was written.
    """
    bad = (~finite).nonzero().flatten().tolist()
    return [active[b] for b in bad]


def _redo_unwritten(
    unwritten: list[int],
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    hp: AndiHyperparameters,
) -> int:
    """Hand the tensors the graph did not write (a non-finite ν) to the single-tensor path, which raises or skips
    for NaN/Inf and rescues finite gradients whose squares overflowed; returns the number it skipped.

    Without ``skip_nonfinite`` nothing was written, so the whole call is redone there (same result to 1e-6); with
    it the other tensors are done and only these are redone. Rare path: one more pass over a few tensors.
    """
    idx = unwritten if hp.skip_nonfinite else range(len(params))
    sub_bufs = [momentum_buffers[i] for i in idx]
    skipped = _single_tensor_andi([params[i] for i in idx], [grads[i] for i in idx], sub_bufs, hp)
    for i, buf in zip(idx, sub_bufs):
        momentum_buffers[i] = buf
    return skipped


def _fused_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """What ``fused=True`` runs: the Triton kernels where they apply (CUDA, contiguous fp32/bf16/fp16 tensors, not
    inside the user's compiled region), else the compiled graph. Same contract as the eager backends."""
    return _run_fused("auto", params, grads, momentum_buffers, hp)


def _compiled_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """``backend="compiled"``: the ``torch.compile`` graph (CPU or CUDA)."""
    return _run_fused("compile", params, grads, momentum_buffers, hp)


def _triton_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """``backend="triton"``: the Triton kernels (CUDA; contiguous tensors)."""
    return _run_fused("triton", params, grads, momentum_buffers, hp)


def _run_fused(
    backend: FusedBackend,
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    hp: AndiHyperparameters,
) -> int:
    if not params:
        return 0
    devices = {p.device for p in params} | {g.device for g in grads}
    if hp.compat in SCRIPT_COMPAT_MODES or len(devices) != 1:
        # The script's op order is defined per tensor; several devices would need a cross-device gate.
        return _single_tensor_andi(params, grads, momentum_buffers, hp)
    (device,) = devices
    active = _prepare(params, momentum_buffers, hp)
    if not active:
        return 0
    ps = [params[i] for i in active]
    gs = [grads[i] for i in active]
    bs = [momentum_buffers[i] for i in active] if hp.momentum != 0 else []
    equilibrate = tuple(uses_equilibration(g.shape, hp.min_dim) for g in gs)
    available = fused_backends(device)
    if backend == "auto":
        suitable = all(t.is_contiguous() and t.dtype in _TRITON_DTYPES for t in (*ps, *gs, *bs))
        backend = "triton" if "triton" in available and suitable and not torch.compiler.is_compiling() else "compile"
    if backend == "triton":
        if "triton" not in available:
            raise RuntimeError("ANDI fused: the Triton backend needs CUDA tensors and an importable triton")
        from ._triton import triton_andi_step

        finite = triton_andi_step(
            ps,
            gs,
            bs,
            equilibrate=equilibrate,
            lr=hp.lr,
            momentum=hp.momentum,
            weight_decay=hp.weight_decay,
            eps=hp.eps,
            nesterov=hp.nesterov,
            maximize=hp.maximize,
            per_tensor_gate=hp.skip_nonfinite,
        )
    else:
        # 0-dim tensors go in as 1-element views: inductor's CPU backend (torch 2.13) drops the in-place write-back
        # into a 0-dim float64 graph input. The view shares storage, and Φ treats () and (1,) alike.
        ps, gs, bs = ([t.view(1) if t.ndim == 0 else t for t in ts] for ts in (ps, gs, bs))
        hyper, lr_t = _hyper_tensors(device, hp.lr, hp.momentum, hp.weight_decay, hp.eps, hp.skip_nonfinite)
        flags = dict(equilibrate=equilibrate, nesterov=hp.nesterov, maximize=hp.maximize, has_momentum=hp.momentum != 0)
        if torch.compiler.is_compiling():  # already inside the user's compiled region: let dynamo trace it inline
            graph: Callable[..., Tensor] = _andi_graph
        else:
            layout = (
                device.type,
                tuple((p.shape, p.dtype, g.dtype) for p, g in zip(ps, gs)),
                tuple(b.dtype for b in bs),
                tuple(sorted(flags.items())),
            )
            graph = _compiled_graph(layout)
        with torch.no_grad():
            finite = graph(ps, gs, bs, hyper, lr_t, **flags)
    unwritten = _unwritten(finite, active)
    return _redo_unwritten(unwritten, params, grads, momentum_buffers, hp) if unwritten else 0
