r"""Triton kernels for the fused ANDI step (CUDA; imported only when Triton is installed).

One call updates every tensor of an optimizer step with a fixed number of launches, whatever the number and the
shapes of the tensors: each tensor is described by a row of a *meta table* (pointers to gradient, parameter and
momentum buffer, its ``(m, n)`` matrix view, offsets into the scratch buffers) and each program by a row of a *tile
table* ``(tensor, row block)``, so tensors of all shapes share a launch — no stacking, no per-tensor launches.

Equilibrated tensors (``min(m, n) > min_dim``), 5 launches, 3 reads of ``G``:

1. ``_rowcol_sumsq``: per row block, ``r_i^2 = Σ_j M_ij^2`` and per-block column partials (deterministic, no
   atomics) — the only pass that needs the whole row;
2. ``_col_reduce``: ``c_j^2 = Σ_blocks partial`` (reads ``N / BLOCK_M`` elements);
3. ``_sumsq_partials``: per row block ``Σ (M_ij / (r_i + ε + c_j))^2`` and ``Σ_i r_i^2``;
4. ``_scales``: per tensor ``ν``, ``‖Ĝ‖``, ``s = \sqrt{ν^2 + 1} / (‖Ĝ‖ + ε)`` and the finite flag;
5. ``_apply``: ``H = s Ĝ``, momentum, Nesterov, weight decay and the parameter update, one read of ``G``, ``M``,
   ``θ`` and one write of ``M``, ``θ``.

Global-branch tensors (vectors, small matrices) are viewed as rows of ``_FLAT_WIDTH`` elements and take launches 3-5
only (``s = \sqrt{ν^2 + 1} / (ν + ε)``). Every store of launch 5 is gated on the finite flag (per tensor with
``skip_nonfinite``, else on all tensors of the call), so a refused step writes nothing.

Arithmetic is fp32 whatever the storage dtype (fp32, bf16, fp16); results are rounded once when stored. The
reductions are deterministic (fixed order, no atomics).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

__all__ = ["SUPPORTED_DTYPES", "triton_andi_step"]

SUPPORTED_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
_TL_DTYPES = {torch.float32: tl.float32, torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}
_BLOCK_M = 32  # rows per program: also the column-partial granularity (N / 32 extra elements of scratch)
_BLOCK_N = 128
_FLAT_WIDTH = 1024  # global-branch tensors are processed as (ceil(numel / 1024), 1024) row blocks
_CACHE_SIZE = 32


@triton.jit
def _tile(meta, tiles, pid, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Decode program ``pid``: its tensor index, the tensor's meta row, and the rows of its block."""
    t = tl.load(tiles + 2 * pid)
    bm = tl.load(tiles + 2 * pid + 1)
    row = meta + t * 9
    m = tl.load(row + 3)
    n = tl.load(row + 4)
    numel = tl.load(row + 5)
    rows = bm * BLOCK_M + tl.arange(0, BLOCK_M)
    return t, bm, row, m, n, numel, rows


@triton.jit
def _rowcol_sumsq(meta, tiles, rowsq, colpart, G_DTYPE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    _, bm, row, m, n, _, rows = _tile(meta, tiles, pid, BLOCK_M, BLOCK_N)
    g_ptr = tl.load(row).to(tl.pointer_type(G_DTYPE))
    row_off = tl.load(row + 6)
    cp_off = tl.load(row + 8)
    row_mask = rows < m
    base = rows.to(tl.int64)[:, None] * n
    acc = tl.zeros([BLOCK_M], dtype=tl.float32)
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        mask = row_mask[:, None] & (cols < n)[None, :]
        x = tl.load(g_ptr + base + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        x2 = x * x
        acc += tl.sum(x2, axis=1)
        tl.store(colpart + cp_off + bm * n + cols, tl.sum(x2, axis=0), mask=cols < n)
    tl.store(rowsq + row_off + rows, acc, mask=row_mask)


@triton.jit
def _col_reduce(meta, col_tiles, colpart, colsq, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    pid = tl.program_id(0)
    t = tl.load(col_tiles + 2 * pid)
    bn = tl.load(col_tiles + 2 * pid + 1)
    row = meta + t * 9
    m = tl.load(row + 3)
    n = tl.load(row + 4)
    col_off = tl.load(row + 7)
    cp_off = tl.load(row + 8)
    cols = bn * BLOCK_N + tl.arange(0, BLOCK_N)
    mask = cols < n
    acc = tl.zeros([BLOCK_N], dtype=tl.float32)
    for bm in range(0, tl.cdiv(m, BLOCK_M)):
        acc += tl.load(colpart + cp_off + bm * n + cols, mask=mask, other=0.0)
    tl.store(colsq + col_off + cols, acc, mask=mask)


@triton.jit
def _sumsq_partials(
    meta,
    tiles,
    rowsq,
    colsq,
    eqpart,
    nupart,
    eps,
    G_DTYPE: tl.constexpr,
    EQUILIBRATE: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    _, _, row, m, n, numel, rows = _tile(meta, tiles, pid, BLOCK_M, BLOCK_N)
    g_ptr = tl.load(row).to(tl.pointer_type(G_DTYPE))
    row_mask = rows < m
    base = rows.to(tl.int64)[:, None] * n
    acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
    if EQUILIBRATE:
        rsq = tl.load(rowsq + tl.load(row + 6) + rows, mask=row_mask, other=0.0)
        r = tl.sqrt(rsq) + eps
        col_off = tl.load(row + 7)
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        offs = base + cols[None, :]
        mask = row_mask[:, None] & (cols < n)[None, :] & (offs < numel)
        x = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if EQUILIBRATE:
            c = tl.sqrt(tl.load(colsq + col_off + cols, mask=cols < n, other=0.0))
            x = x / (r[:, None] + c[None, :])
        acc += x * x
    total = tl.sum(tl.sum(acc, axis=1), axis=0)
    if EQUILIBRATE:
        tl.store(eqpart + pid, total)
        tl.store(nupart + pid, tl.sum(rsq, axis=0))
    else:
        tl.store(nupart + pid, total)


@triton.jit
def _scales(ranges, eqpart, nupart, scale, finite, eps, EQUILIBRATE: tl.constexpr, BLOCK: tl.constexpr):
    t = tl.program_id(0)
    start = tl.load(ranges + t)
    end = tl.load(ranges + t + 1)
    nu2 = tl.zeros([BLOCK], dtype=tl.float32)
    eq2 = tl.zeros([BLOCK], dtype=tl.float32)
    for i in range(start, end, BLOCK):
        idx = i + tl.arange(0, BLOCK)
        mask = idx < end
        nu2 += tl.load(nupart + idx, mask=mask, other=0.0)
        if EQUILIBRATE:
            eq2 += tl.load(eqpart + idx, mask=mask, other=0.0)
    nu_sq = tl.sum(nu2, axis=0)
    nu = tl.sqrt(nu_sq)
    target = tl.sqrt(nu_sq + 1.0)
    s = target / (tl.sqrt(tl.sum(eq2, axis=0)) + eps) if EQUILIBRATE else target / (nu + eps)
    tl.store(scale + t, s)
    tl.store(finite + t, ((nu == nu) & (nu < float("inf"))).to(tl.int8))


@triton.jit
def _apply(
    meta,
    tiles,
    rowsq,
    colsq,
    scale,
    finite,
    all_finite,
    lr_ptr,
    lr,
    momentum,
    weight_decay,
    eps,
    per_tensor_gate,
    G_DTYPE: tl.constexpr,
    P_DTYPE: tl.constexpr,
    B_DTYPE: tl.constexpr,
    EQUILIBRATE: tl.constexpr,
    HAS_MOMENTUM: tl.constexpr,
    NESTEROV: tl.constexpr,
    MAXIMIZE: tl.constexpr,
    LR_IS_TENSOR: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid = tl.program_id(0)
    t, _, row, m, n, numel, rows = _tile(meta, tiles, pid, BLOCK_M, BLOCK_N)
    ok = tl.where(per_tensor_gate != 0, tl.load(finite + t), tl.load(all_finite))
    g_ptr = tl.load(row).to(tl.pointer_type(G_DTYPE))
    p_ptr = tl.load(row + 1).to(tl.pointer_type(P_DTYPE))
    step = tl.load(lr_ptr).to(tl.float32) if LR_IS_TENSOR else lr
    decay = 1.0 - step * weight_decay
    s = tl.load(scale + t)
    row_mask = rows < tl.where(ok != 0, m, 0)  # a gated-off tensor has no rows: nothing is read or written
    base = rows.to(tl.int64)[:, None] * n
    if EQUILIBRATE:
        r = tl.sqrt(tl.load(rowsq + tl.load(row + 6) + rows, mask=row_mask, other=0.0)) + eps
        col_off = tl.load(row + 7)
    if HAS_MOMENTUM:
        b_ptr = tl.load(row + 2).to(tl.pointer_type(B_DTYPE))
    for start in range(0, n, BLOCK_N):
        cols = start + tl.arange(0, BLOCK_N)
        offs = base + cols[None, :]
        mask = row_mask[:, None] & (cols < n)[None, :] & (offs < numel)
        h = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if EQUILIBRATE:
            c = tl.sqrt(tl.load(colsq + col_off + cols, mask=cols < n, other=0.0))
            h = h / (r[:, None] + c[None, :])
        h = h * s
        if MAXIMIZE:
            h = -h
        if HAS_MOMENTUM:
            h = h.to(B_DTYPE).to(tl.float32)  # the foreach path rounds H to the buffer dtype first
            buf = tl.load(b_ptr + offs, mask=mask, other=0.0).to(tl.float32) * momentum + h
            tl.store(b_ptr + offs, buf.to(B_DTYPE), mask=mask)
            update = h + momentum * buf if NESTEROV else buf
        else:
            update = h
        p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        tl.store(p_ptr + offs, (p * decay - step * update).to(P_DTYPE), mask=mask)


class _Plan:
    """Host-side tables for one set of tensors (one branch, one dtype triple), cached by shapes and pointers."""

    def __init__(
        self, params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Sequence[Tensor] | None, equilibrate: bool
    ) -> None:
        device = params[0].device
        meta, tiles, col_tiles, ranges = [], [], [], [0]
        row_off = col_off = cp_off = 0
        for t, (p, g) in enumerate(zip(params, grads)):
            if equilibrate:
                m, n = p.shape[0], p.numel() // p.shape[0]
            else:
                m, n = math.ceil(p.numel() / _FLAT_WIDTH), _FLAT_WIDTH
            n_blocks = math.ceil(m / _BLOCK_M)
            b_ptr = bufs[t].data_ptr() if bufs is not None else 0
            meta.append([g.data_ptr(), p.data_ptr(), b_ptr, m, n, p.numel(), row_off, col_off, cp_off])
            tiles += [(t, bm) for bm in range(n_blocks)]
            col_tiles += [(t, bn) for bn in range(math.ceil(n / _BLOCK_N))]
            ranges.append(len(tiles))
            if equilibrate:
                row_off, col_off, cp_off = row_off + m, col_off + n, cp_off + n_blocks * n

        def table(rows: list, dtype: torch.dtype) -> Tensor:
            host = torch.tensor(rows, dtype=dtype)
            return host.pin_memory().to(device, non_blocking=True) if device.type == "cuda" else host

        self.meta = table(meta, torch.int64)
        self.tiles = table(tiles, torch.int32)
        self.col_tiles = table(col_tiles, torch.int32) if equilibrate else None
        self.ranges = table(ranges, torch.int32)
        self.n_tensors, self.n_tiles, self.n_col_tiles = len(params), len(tiles), len(col_tiles)
        self.rows, self.cols, self.colpart = row_off, col_off, cp_off


_plans: OrderedDict[tuple, _Plan] = OrderedDict()


def _plan(params: Sequence[Tensor], grads: Sequence[Tensor], bufs: Sequence[Tensor] | None, eq: bool) -> _Plan:
    key = (
        eq,
        tuple(
            (p.data_ptr(), g.data_ptr(), b.data_ptr() if bufs is not None else 0, p.shape)
            for p, g, b in zip(params, grads, bufs if bufs is not None else params)
        ),
    )
    plan = _plans.get(key)
    if plan is None:
        plan = _plans[key] = _Plan(params, grads, bufs, eq)
        if len(_plans) > _CACHE_SIZE:
            _plans.popitem(last=False)
    else:
        _plans.move_to_end(key)
    return plan


def triton_andi_step(
    params: list[Tensor],
    grads: list[Tensor],
    bufs: list[Tensor],
    *,
    equilibrate: tuple[bool, ...],
    lr: float | Tensor,
    momentum: float,
    weight_decay: float,
    eps: float,
    nesterov: bool,
    maximize: bool,
    per_tensor_gate: bool,
) -> Tensor:
    """One ANDI step over contiguous fp32/bf16/fp16 tensors of one CUDA device; returns per-tensor finite flags.

    ``bufs`` is empty when ``momentum == 0``, else one (zero-initialised where new) buffer per parameter.
    """
    device = params[0].device
    has_momentum = len(bufs) > 0
    for t in (*params, *grads, *bufs):
        if t.dtype not in SUPPORTED_DTYPES or not t.is_contiguous():
            raise ValueError("triton_andi_step needs contiguous fp32/bf16/fp16 tensors; use the compiled backend")
    groups: dict[tuple, list[int]] = {}
    for i, (p, g) in enumerate(zip(params, grads)):
        key = (equilibrate[i], p.dtype, g.dtype, bufs[i].dtype if has_momentum else p.dtype)
        groups.setdefault(key, []).append(i)

    lr_is_tensor = isinstance(lr, Tensor)
    lr_ptr = (
        lr.detach().reshape(()).to(device=device, dtype=torch.float32)
        if lr_is_tensor
        else torch.empty((), device=device)
    )
    lr_value = 0.0 if lr_is_tensor else float(lr)
    staged = []
    for (eq, p_dtype, g_dtype, b_dtype), idx in groups.items():
        ps, gs = [params[i] for i in idx], [grads[i] for i in idx]
        bs = [bufs[i] for i in idx] if has_momentum else None
        plan = _plan(ps, gs, bs, eq)
        f32 = dict(device=device, dtype=torch.float32)
        rowsq, colsq = torch.empty(max(plan.rows, 1), **f32), torch.empty(max(plan.cols, 1), **f32)
        eqpart, nupart = torch.empty(plan.n_tiles, **f32), torch.empty(plan.n_tiles, **f32)
        scale = torch.empty(plan.n_tensors, **f32)
        finite = torch.empty(plan.n_tensors, device=device, dtype=torch.int8)
        g_tl = _TL_DTYPES[g_dtype]
        blocks = dict(BLOCK_M=_BLOCK_M, BLOCK_N=_BLOCK_N)
        if eq:
            colpart = torch.empty(max(plan.colpart, 1), **f32)
            _rowcol_sumsq[(plan.n_tiles,)](plan.meta, plan.tiles, rowsq, colpart, G_DTYPE=g_tl, **blocks)
            _col_reduce[(plan.n_col_tiles,)](plan.meta, plan.col_tiles, colpart, colsq, **blocks)
        _sumsq_partials[(plan.n_tiles,)](
            plan.meta, plan.tiles, rowsq, colsq, eqpart, nupart, eps, G_DTYPE=g_tl, EQUILIBRATE=eq, **blocks
        )
        _scales[(plan.n_tensors,)](plan.ranges, eqpart, nupart, scale, finite, eps, EQUILIBRATE=eq, BLOCK=1024)
        staged.append((idx, plan, eq, (p_dtype, g_dtype, b_dtype), rowsq, colsq, scale, finite))

    all_finite = torch.stack([s[-1].bool().all() for s in staged]).all().to(torch.int8)
    flags = torch.empty(len(params), device=device, dtype=torch.bool)
    for idx, plan, eq, (p_dtype, g_dtype, b_dtype), rowsq, colsq, scale, finite in staged:
        _apply[(plan.n_tiles,)](
            plan.meta,
            plan.tiles,
            rowsq,
            colsq,
            scale,
            finite,
            all_finite,
            lr_ptr,
            lr_value,
            momentum,
            weight_decay,
            eps,
            int(per_tensor_gate),
            G_DTYPE=_TL_DTYPES[g_dtype],
            P_DTYPE=_TL_DTYPES[p_dtype],
            B_DTYPE=_TL_DTYPES[b_dtype],
            EQUILIBRATE=eq,
            HAS_MOMENTUM=has_momentum,
            NESTEROV=nesterov,
            MAXIMIZE=maximize,
            LR_IS_TENSOR=lr_is_tensor,
            BLOCK_M=_BLOCK_M,
            BLOCK_N=_BLOCK_N,
        )
        if len(groups) == 1:
            flags = finite.bool()
        else:
            flags[torch.tensor(idx, device=device)] = finite.bool()
    return flags
