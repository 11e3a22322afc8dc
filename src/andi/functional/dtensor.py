r"""The DTensor backend: ANDI on sharded parameters (FSDP2), the exact full-tensor step with two small all-reduces.

ANDI's preconditioner needs, per matrix :math:`M \in \mathbb{R}^{m\times n}` (the ``(d1, -1)`` view of a gradient),
the row norms :math:`r_i`, the column norms :math:`c_j`, :math:`\nu = \|G\|_F` and :math:`\|\hat G\|_F`. When
:math:`M` is split by rows over :math:`P` ranks (FSDP2's ``Shard(0)``; a conv filter viewed as ``(out, -1)`` keeps
its rows whole) every quantity is a local computation or a sum over ranks:

.. math::
    \begin{aligned}
    r_i &= \|M_{i,:}\|_2 &&\text{local (rank } p \text{ owns row } i\text{)} \\
    c_j^2 &= \textstyle\sum_p \|M^{(p)}_{:,j}\|_2^2 &&\text{one all-reduce of a length-}n\text{ vector} \\
    \nu^2 &= \textstyle\sum_j c_j^2 &&\text{free, from the same vector} \\
    \hat G_{ij} &= M_{ij} / (r_i + c_j + \epsilon) &&\text{local} \\
    \|\hat G\|_F^2 &= \textstyle\sum_p \|\hat G^{(p)}\|_F^2 &&\text{one scalar all-reduce} \\
    H &= \tfrac{\sqrt{\nu^2 + 1}}{\|\hat G\|_F + \epsilon}\,\hat G &&\text{local}
    \end{aligned}

Tensors on the global-norm branch (vectors, scalars, matrices with a side :math:`\le \delta`) need only
:math:`\nu^2 = \sum_p \|G^{(p)}\|_F^2`. Per device mesh and step, the column-sum-of-squares vectors of *all*
matrices travel in **one** bucketed ``all_reduce`` and all scalars (:math:`\|\hat G\|^2` of matrices, :math:`\nu^2`
of the others) in a **second** one: :math:`O(\sum n)` floats instead of the :math:`O(\sum mn)` an exact Muon must
gather. The momentum buffer lives sharded like its parameter and the update itself is element-wise, so it needs no
communication.

Decisions that keep the result equal to the single-process step (tested to 1e-6 relative in fp32):

* the branch (``min(m, n) > min_dim``) and the ``(d1, -1)`` view come from the **global** shape, never the shard;
* uneven shards and empty shards (a rank holding no row) are exact: an empty shard contributes zeros to the sums;
* the same rule, transposed, covers ``Shard(d)`` for ``d >= 1``: the view's *columns* are then local and the
  length-:math:`m` vector of row sums of squares is all-reduced instead; ``Replicate`` needs no communication;
  several mesh dimensions sharding the same matrix side (e.g. HSDP's ``(Replicate(), Shard(0))``) reduce over the
  sharding mesh dimensions only;
* any other layout (``Partial``, strided shards, rows and columns both split) falls back to an exact gather
  (``full_tensor()``) of that gradient, with a one-time :class:`ShardedFallbackWarning`;
* non-finite gradients are detected from the reduced :math:`\nu^2`, so every rank takes the same decision: raise
  :class:`FloatingPointError` (nothing is modified) or, with ``skip_nonfinite``, skip the tensor on every rank;
* ``compat="reference"`` is supported with the script's formulas
  (:func:`~andi.functional.precondition.script_scale`). It is exact in its math, but partial sums over shards round
  differently from the script's single reduction, so it is not bit-identical.

Reductions run in fp32 for fp16/bf16 parameters (paper mode), as in the single-device paths. The step holds every
:math:`\hat G` of the call at once (like the multi-tensor path), i.e. one parameter-sized temporary.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.distributed as dist
from torch import Tensor
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.placement_types import Placement

from .matrix import matrix_shape, uses_equilibration
from .precondition import compute_dtype, energy_scale, script_denominator, script_scale
from .updates import paper_update, reference_update
from .validation import AndiHyperparameters, Compat, nonfinite_gradient_error, norm_limit

__all__ = ["ShardedFallbackWarning", "classify_placements", "dtensor_grad_norms"]

Layout = Literal["rows", "cols", "whole"]

try:  # FSDP2 on top of tensor parallelism shards dim 0 twice, the outer one as a (private) strided shard
    from torch.distributed.tensor.placement_types import _StridedShard

    _SHARD_TYPES: tuple[type, ...] = (Shard, _StridedShard)
except ImportError:  # pragma: no cover - torch versions without it
    _SHARD_TYPES = (Shard,)

_warned: set[str] = set()


class ShardedFallbackWarning(UserWarning):
    """A DTensor layout without an exact local rule: ANDI gathers that gradient (correct, but O(size) traffic)."""


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warnings.warn(message, ShardedFallbackWarning, stacklevel=4)


@dataclass
class _Item:
    """One parameter of the call and everything the three phases need to know about it."""

    index: int
    param: Tensor  # DTensor or plain tensor
    local_param: Tensor
    local_grad: Tensor  # the rank's shard (layouts rows/cols), or the complete gradient (layout whole)
    mesh: DeviceMesh | None
    reduce_dims: tuple[int, ...]  # mesh dims whose groups hold the other pieces of this tensor's sums
    layout: Layout
    matrix: bool  # equilibration branch (decided on the global shape)
    gathered: bool = False  # fallback: local_grad is the full tensor, H must be cut back to the shard
    work: torch.dtype = torch.float32
    mat: Tensor | None = None  # local (rows_local, cols_local) view in `work` dtype
    local_norm: Tensor | None = None  # row norms (layout rows/whole) or column norms (layout cols), local
    vector: Tensor | None = None  # column (rows layout) or row (cols layout) sums of squares, to be reduced
    scalar: Tensor | None = None  # ‖Ĝ‖² (matrix) or ν² (global branch), to be reduced
    nu2: Tensor | None = None  # ν², complete
    direction: Tensor | None = None  # Ĝ (matrix) before energy scaling
    key: tuple = field(default_factory=tuple)


def classify_placements(
    placements: Sequence[Placement], ndim: int, matrix: bool
) -> tuple[Layout, tuple[int, ...]] | None:
    """The exact local rule for ``placements``, or ``None`` when only a gather is exact.

    Returns ``(layout, reduce_dims)``: ``"whole"`` when nothing is sharded; for a matrix, ``"rows"`` when every
    sharding mesh dim splits tensor dim 0 and ``"cols"`` when every one splits a dim >= 1 (each column of the
    ``(d1, -1)`` view then lives on one rank). A global-branch tensor needs only ν², a plain sum over the sharding
    mesh dims, whatever the dims split. Strided shards (FSDP2 over tensor parallel) partition indices like
    ``Shard``; order does not matter to sums of squares.
    """
    shard_dims: list[int] = []
    tensor_dims: set[int] = set()
    for mesh_dim, placement in enumerate(placements):
        if isinstance(placement, Replicate):
            continue
        if isinstance(placement, _SHARD_TYPES):
            shard_dims.append(mesh_dim)
            tensor_dims.add(placement.dim % ndim if ndim else placement.dim)
            continue
        return None  # Partial and custom placements: local values are not pieces of G
    if not shard_dims:
        return "whole", ()
    if not matrix or tensor_dims == {0}:
        return "rows", tuple(shard_dims)  # (the layout is unused on the global branch)
    if 0 not in tensor_dims:
        return "cols", tuple(shard_dims)
    return None


def _all_reduce(buffer: Tensor, mesh: DeviceMesh, dims: tuple[int, ...]) -> None:
    """Sum ``buffer`` in place over the process groups of ``dims`` of ``mesh`` (one collective per dim)."""
    for d in dims:
        if mesh.size(d) > 1:
            dist.all_reduce(buffer, op=dist.ReduceOp.SUM, group=mesh.get_group(d))


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


def _prepare(index: int, param: Tensor, grad: Tensor, *, min_dim: int, for_norm_only: bool = False) -> _Item | None:
    """Build the work item of one parameter; gathers the gradient for layouts without an exact local rule."""
    shape = param.shape
    matrix = uses_equilibration(shape, min_dim) and not for_norm_only
    if not isinstance(param, DTensor):
        if isinstance(grad, DTensor):
            raise TypeError(f"ANDI: parameter {index} is a plain tensor but its gradient is a DTensor")
        return _Item(index, param, param, grad, None, (), "whole", matrix)
    if not isinstance(grad, DTensor):
        raise TypeError(
            f"ANDI: parameter {index} is a DTensor but its gradient is a plain {type(grad).__name__}; "
            "gradients of sharded parameters must be DTensors with the parameter's mesh"
        )
    mesh = param.device_mesh
    if mesh.get_coordinate() is None:  # this rank is not part of the parameter's mesh: nothing to do here
        return None
    if grad.device_mesh != mesh:
        raise ValueError(f"ANDI: parameter {index} and its gradient live on different device meshes")
    if tuple(grad.placements) != tuple(param.placements):
        _warn_once(
            f"grad:{grad.placements}->{param.placements}",
            f"ANDI: gradient placements {tuple(grad.placements)} differ from the parameter's "
            f"{tuple(param.placements)}; redistributing the gradient (extra communication every step).",
        )
        grad = grad.redistribute(mesh, param.placements)
    rule = classify_placements(param.placements, param.ndim, matrix)
    if rule is None:
        _warn_once(
            f"gather:{param.placements}",
            f"ANDI: no local rule for placements {tuple(param.placements)}; gathering each such gradient with "
            "full_tensor() (exact, but it moves the whole tensor). Shard(0) (FSDP2), Shard(d>0), strided shards "
            "and Replicate are handled without gathering.",
        )
        full = grad.full_tensor()
        return _Item(index, param, param.to_local(), full, mesh, (), "whole", matrix, gathered=True)
    layout, dims = rule
    return _Item(index, param, param.to_local(), grad.to_local(), mesh, dims, layout, matrix)


def _bucket_reduce(items: list[_Item], attr: str) -> None:
    """All-reduce ``getattr(item, attr)`` of every item with a non-empty ``reduce_dims``: one flat buffer per
    (mesh, mesh dims, device, dtype) bucket, one collective per bucket (per mesh dim), results written back."""
    buckets: dict[tuple, list[_Item]] = {}
    for it in items:
        if it.reduce_dims and getattr(it, attr) is not None:
            buckets.setdefault(it.key, []).append(it)
    for bucket in buckets.values():
        parts = [getattr(it, attr).reshape(-1) for it in bucket]
        flat = torch.cat(parts) if len(parts) > 1 else parts[0]  # the parts are fresh temporaries
        _all_reduce(flat, bucket[0].mesh, bucket[0].reduce_dims)
        for it, piece in zip(bucket, flat.split([p.numel() for p in parts])):
            setattr(it, attr, piece.view_as(getattr(it, attr)))


def _matrix_stats(it: _Item, n_rows: int, n_cols: int) -> None:
    """Phase 1 for a matrix: the local side's norms and the partial sums of squares of the split side."""
    g = it.local_grad.to(it.work)
    if it.layout == "cols":  # columns local, rows split: reduce the length-m vector of row sums of squares
        mat = g.reshape(n_rows, g.numel() // n_rows)
        it.local_norm = torch.linalg.vector_norm(mat, dim=0, keepdim=True)
        it.vector = torch.linalg.vector_norm(mat, dim=1).square_()
    else:  # rows local (Shard(0), or the whole tensor): reduce the length-n vector of column sums of squares
        mat = g.reshape(g.shape[0], n_cols)  # explicit n: an empty shard cannot infer -1
        it.local_norm = torch.linalg.vector_norm(mat, dim=1, keepdim=True)
        it.vector = torch.linalg.vector_norm(mat, dim=0).square_()
    it.mat = mat


def _matrix_direction(it: _Item, eps: float, reference: bool) -> None:
    """Phase 2 for a matrix, after the vector reduction: ν², Ĝ (local) and its partial ‖Ĝ‖²."""
    assert it.vector is not None and it.local_norm is not None and it.mat is not None
    other = it.vector.sqrt()
    if it.layout == "cols":
        rows, cols = other.view(-1, 1), it.local_norm
    else:
        rows, cols = it.local_norm, other.view(1, -1)
    it.nu2 = it.vector.sum()
    # Algorithm 1: Ĝ = M / ((r + ε) + c), as the single-device path builds it; the script adds 1e-8 to each norm.
    denominator = script_denominator(rows, cols) if reference else (rows + eps) + cols
    it.direction = torch.div(it.mat, denominator, out=denominator)
    it.scalar = torch.linalg.vector_norm(it.direction).square()
    it.mat = it.vector = it.local_norm = None


def _finish_direction(it: _Item, eps: float, reference: bool, maximize: bool) -> Tensor:
    """Phase 3, after the scalar reduction: H for this rank's part of the tensor, in the compute dtype."""
    assert it.nu2 is not None
    nu = it.nu2.sqrt()
    if it.matrix:
        assert it.direction is not None and it.scalar is not None
        hat_norm = it.scalar.sqrt()
        h = it.direction.mul_(script_scale(nu, hat_norm) if reference else energy_scale(nu, hat_norm, eps))
        h = h.view(it.local_grad.shape)
    else:
        g = it.local_grad.to(it.work)
        h = g * (script_scale(nu, None) if reference else energy_scale(nu, nu, eps))
    if maximize:
        h = h.neg_()
    if it.gathered:  # cut this rank's shard out of the full H (Replicate -> param placements: no communication)
        assert isinstance(it.param, DTensor) and it.mesh is not None
        full = DTensor.from_local(h, it.mesh, [Replicate()] * it.mesh.ndim, run_check=False)
        h = full.redistribute(it.mesh, it.param.placements).to_local()
    return h


def _items_for(
    params: Sequence[Tensor], grads: Sequence[Tensor], *, min_dim: int, compat: Compat, for_norm_only: bool = False
) -> list[_Item]:
    items: list[_Item] = []
    for i, (p, g) in enumerate(zip(params, grads)):  # (the dispatcher has checked dtypes, layouts and shapes)
        it = _prepare(i, p, g, min_dim=min_dim, for_norm_only=for_norm_only)
        if it is None:
            continue
        it.work = it.local_grad.dtype if compat == "reference" else compute_dtype(it.local_grad.dtype)
        it.key = (it.mesh, it.reduce_dims, it.local_grad.device, it.work)
        items.append(it)
    return items


def _global_sums(items: list[_Item], *, eps: float, reference: bool) -> None:
    """Phases 1-2 of every item: after it, ``nu2`` is complete everywhere and matrices hold Ĝ and a complete ‖Ĝ‖²."""
    for it in items:
        if it.matrix:
            mat_shape = matrix_shape(it.param.shape)
            assert mat_shape is not None
            _matrix_stats(it, *mat_shape)
    _bucket_reduce(items, "vector")  # collective 1: every matrix's column (or row) sums of squares
    for it in items:
        if it.matrix:
            _matrix_direction(it, eps, reference)
        else:
            it.scalar = torch.linalg.vector_norm(it.local_grad.to(it.work)).square()
    _bucket_reduce(items, "scalar")  # collective 2: ‖Ĝ‖² of matrices, ν² of the global-branch tensors
    for it in items:
        if not it.matrix:
            it.nu2 = it.scalar


def _apply_update(
    param: Tensor,
    h: Tensor,
    buf: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    reference: bool,
    buffer_dtype: torch.dtype,
) -> Tensor | None:
    """The momentum and parameter update on local tensors, by the core's per-tensor update (H = 1·h, factored form).

    ``h`` is a temporary and may be overwritten. Returns the buffer (new on the first step: M_1 = H_1, or the
    script's (1 + μ)·H_1 with ``reference``).
    """
    if reference:
        return reference_update(param, h.to(buffer_dtype), buf, lr=lr, momentum=momentum, nesterov=nesterov)
    return paper_update(
        param,
        h,
        torch.ones((), dtype=h.dtype, device=h.device),
        buf,
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        buffer_dtype=buffer_dtype,
    )


def _nonfinite(items: list[_Item]) -> set[int]:
    """Indices (into ``items``) whose complete ν² is NaN/Inf: the same answer on every rank, one sync per device."""
    by_device: dict[torch.device, list[int]] = {}
    for k, it in enumerate(items):
        assert it.nu2 is not None
        by_device.setdefault(it.nu2.device, []).append(k)
    bad: set[int] = set()
    for ks in by_device.values():
        finite = torch.stack([items[k].nu2.float() for k in ks]).isfinite().tolist()  # type: ignore[union-attr]
        bad.update(k for k, ok in zip(ks, finite) if not ok)
    return bad


def _refusals(
    items: list[_Item], suspects: set[int], *, eps: float, reference: bool
) -> dict[int, tuple[float | None, torch.dtype | None]]:
    """Sort the items whose complete ν² is not finite: refused ones map to ``(None, None)`` (NaN/Inf in the
    gradient) or ``(‖G‖, dtype)`` (a finite gradient whose norm overflows ``dtype``); the others are rescued in
    place by recomputing their sums in float64 (a finite gradient whose squares overflowed fp32).

    Rare path, the same decisions on every rank: one more scalar all-reduce (the count of non-finite elements) and,
    for rescued items, the two collectives of :func:`_global_sums` again.
    """
    if not suspects:
        return {}
    flagged = [items[k] for k in sorted(suspects)]
    for it in flagged:
        it.scalar = (~torch.isfinite(it.local_grad)).sum().to(it.work)
    _bucket_reduce(flagged, "scalar")
    refused: dict[int, tuple[float | None, torch.dtype | None]] = {}
    rescued: list[tuple[int, torch.dtype]] = []
    for k in sorted(suspects):
        it = items[k]
        assert it.scalar is not None
        if float(it.scalar) > 0:
            refused[k] = (None, None)
        elif reference or it.work == torch.float64:  # the script is not rescued; float64 has nothing wider
            refused[k] = (float("inf"), it.work)
        else:
            rescued.append((k, it.work))
            it.work, it.key = torch.float64, (*it.key[:3], torch.float64)
            it.direction = it.scalar = it.nu2 = None
    _global_sums([items[k] for k, _ in rescued], eps=eps, reference=reference)
    for k, narrow in rescued:
        nu2 = items[k].nu2
        assert nu2 is not None
        norm = float(nu2.sqrt())
        if norm > norm_limit(narrow):
            refused[k] = (norm, narrow)
    return refused


def _buffer_like(buf: Tensor, param: DTensor, index: int) -> DTensor:
    """The momentum buffer as a DTensor placed like ``param``.

    A plain tensor of the parameter's global shape (e.g. a single-device ``state_dict`` loaded into the sharded
    optimizer, identical on every rank) is cut into this rank's shard without communication.
    """
    if isinstance(buf, DTensor):
        if tuple(buf.placements) != tuple(param.placements) or buf.device_mesh != param.device_mesh:
            buf = buf.redistribute(param.device_mesh, param.placements)
        return buf
    if tuple(buf.shape) != tuple(param.shape):
        raise ValueError(
            f"ANDI: momentum buffer of parameter {index} is a plain tensor of shape {tuple(buf.shape)}; expected a "
            f"DTensor like the parameter or a full tensor of its global shape {tuple(param.shape)}"
        )
    return distribute_tensor(buf, param.device_mesh, param.placements, src_data_rank=None)


def _dtensor_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """One ANDI step for a list containing DTensor parameters (FSDP2, tensor parallel, HSDP, or mixed with plain
    tensors), equal to the step on the full tensors: ``andi(..., backend="dtensor")``, which ``"auto"`` picks for
    DTensor parameters.

    ``momentum_buffers[i]`` is a DTensor placed like ``params[i]`` or ``None``; a new buffer is created from
    :math:`H_1` and written back into the list. Returns the number of tensors skipped as non-finite (only with
    ``skip_nonfinite``; otherwise :class:`FloatingPointError` is raised on every rank before anything changes).
    Collectives (on each parameter's device mesh): one bucketed vector all-reduce and one bucketed scalar
    all-reduce per (mesh, sharded mesh dims, device, dtype) bucket, plus a ``full_tensor()`` gather per gradient
    whose layout has no local rule (see the module docstring).
    """
    if hp.compat == "v7":
        raise ValueError(
            "compat='v7' replays the author's single-device class and is not implemented for DTensor parameters; "
            "use compat='paper' (or 'reference') with FSDP2/tensor parallelism"
        )
    reference, eps = hp.compat == "reference", hp.eps
    with torch.no_grad():
        items = _items_for(params, grads, min_dim=hp.min_dim, compat=hp.compat)
        _global_sums(items, eps=eps, reference=reference)
        refused = _refusals(items, _nonfinite(items), eps=eps, reference=reference)
        if refused and not hp.skip_nonfinite:
            first = min(refused, key=lambda k: items[k].index)
            norm, dtype = refused[first]
            raise nonfinite_gradient_error(items[first].index, overflow_norm=norm, dtype=dtype, distributed=True)
        bad = set(refused)

        for k, it in enumerate(items):
            if k in bad:
                continue
            h = _finish_direction(it, eps, reference, hp.maximize)
            buf = momentum_buffers[it.index]
            local_buf = None
            if buf is not None:
                if isinstance(it.param, DTensor):
                    buf = _buffer_like(buf, it.param, it.index)
                    momentum_buffers[it.index] = buf
                local_buf = _local(buf)
            new_local_buf = _apply_update(
                it.local_param,
                h,
                local_buf,
                lr=hp.lr,
                momentum=hp.momentum,
                nesterov=hp.nesterov,
                weight_decay=hp.weight_decay,
                reference=reference,
                buffer_dtype=hp.momentum_dtype or it.local_param.dtype,
            )
            if new_local_buf is not None and new_local_buf is not local_buf:
                param = it.param
                if isinstance(param, DTensor):
                    momentum_buffers[it.index] = DTensor.from_local(
                        new_local_buf,
                        param.device_mesh,
                        param.placements,
                        run_check=False,
                        shape=param.shape,
                        stride=param.stride(),
                    )
                else:
                    momentum_buffers[it.index] = new_local_buf
        return len(bad)


def dtensor_grad_norms(grads: Sequence[Tensor]) -> list[Tensor]:
    """Global Frobenius norms ``‖G‖_F`` of DTensor (or plain) gradients, as plain 0-dim tensors, equal on every rank.

    Costs one bucketed scalar all-reduce per (mesh, sharded mesh dims, device, dtype) bucket (plus a gather for
    layouts without a local rule). The optimizer uses it to screen several parameter groups for non-finite
    gradients before updating any of them. A rank outside a gradient's device mesh gets 0 for it.
    """
    with torch.no_grad():
        items = _items_for(grads, grads, min_dim=0, compat="paper", for_norm_only=True)
        for it in items:
            it.scalar = torch.linalg.vector_norm(it.local_grad.to(it.work)).square()
        _bucket_reduce(items, "scalar")
        norms = [torch.zeros((), device=_local(g).device) for g in grads]
        for it in items:
            assert it.scalar is not None
            norms[it.index] = it.scalar.sqrt()
        return norms
