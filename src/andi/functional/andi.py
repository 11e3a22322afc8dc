r"""The functional ANDI step: ``andi(params, grads, momentum_buffers, *, ...)``.

For every tensor, with :math:`H_t = \Phi(G_t)` (:mod:`andi.functional.precondition`):

.. math::
    \begin{aligned}
    M_t &= \mu M_{t-1} + H_t, \qquad M_0 = 0 \\
    U_t &= H_t + \mu M_t \ \text{(Nesterov)} \quad\text{else}\quad U_t = M_t \\
    \theta_t &= \theta_{t-1}(1 - \eta\lambda) - \eta U_t
    \end{aligned}

Two implementations with the same result (tests hold them to 1e-6 relative in fp32): ``_single_tensor_andi``, the
readable reference loop, and ``_multi_tensor_andi``, which batches the element-wise work with ``torch._foreach_*``
over (device, dtype) buckets. Both check every gradient for non-finite values *before* touching any parameter or
buffer, so a refused step leaves everything as it was.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from .precondition import (
    AndiStats,
    compute_dtype,
    energy_scale,
    equilibrate,
    gradient_stats,
    reference_direction,
)
from .validation import Compat, check_hyperparameters, check_step_tensors, nonfinite_gradient_error, norm_limit

try:  # DTensor parameters (FSDP2) take the communication-aware path in andi.distributed.
    from torch.distributed.tensor import DTensor as _DTensor
except (ImportError, AttributeError):  # pragma: no cover - builds without torch.distributed
    _DTensor = None

__all__ = ["andi", "default_foreach", "gradient_norms", "nonfinite_indices", "screen_gradient_norms"]


#: On CPU, tensors averaging more elements than this take the single-tensor loop under ``foreach=None``.
_CPU_FOREACH_MAX_MEAN_NUMEL = 1 << 16


def default_foreach(params: list[Tensor]) -> bool:
    """Pick the implementation when the user passed ``foreach=None``.

    Accelerators: the foreach path (fewer kernel launches). CPU: ``_foreach_*`` ops are loops over the same kernels
    there, so what matters is cache locality against Python overhead. Measured on 2 cores (README, Performance):
    for large tensors the single-tensor loop is faster (4 x 1024² MLP: 8.5 ms vs 14.0 ms; 8 x 1024²: 20 vs 26 ms),
    because it finishes each tensor while it is still in cache; for many small tensors the foreach path is faster
    (200 x 64² + 200 biases: 18.8 vs 24.7 ms). Tensor subclasses other than ``nn.Parameter`` take the loop.
    """
    if not params or not all(type(p) in (Tensor, torch.nn.Parameter) for p in params):
        return False
    if all(p.device.type == "cpu" for p in params):
        return sum(p.numel() for p in params) / len(params) <= _CPU_FOREACH_MAX_MEAN_NUMEL
    return True


def nonfinite_indices(norms: list[Tensor]) -> list[int]:
    """Indices of the non-finite entries of a list of 0-dim norms, with one host sync per device."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, n in enumerate(norms):
        by_device[n.device].append(i)
    bad: list[int] = []
    for idx in by_device.values():
        finite = torch.stack([norms[i] for i in idx]).isfinite().tolist()
        bad.extend(i for i, ok in zip(idx, finite) if not ok)
    return sorted(bad)


def gradient_norms(grads: list[Tensor]) -> list[Tensor]:
    """‖G‖_F of every gradient (global norms for DTensor shards, one scalar all-reduce for all of them)."""
    if _DTensor is not None and any(isinstance(g, _DTensor) for g in grads):
        from andi.distributed import dtensor_grad_norms

        return dtensor_grad_norms(grads)
    return list(torch._foreach_norm(grads))


def _wide_norm(grad: Tensor) -> float:
    """‖G‖_F without overflow (max-abs scaling in float64), for messages and limits; a host sync (rare path)."""
    g = grad.detach().to(torch.float64)
    peak = g.abs().amax() if g.numel() else g.new_zeros(())
    if peak == 0 or not torch.isfinite(peak):
        return float(peak)
    return float(peak * torch.linalg.vector_norm(g / peak))


def _classify_refusal(grad: Tensor) -> float | None:
    """Why a gradient whose norm is not finite in its compute dtype is refused: ``None`` when it holds NaN/Inf, else
    its true norm (a finite gradient whose squares overflowed; the caller decides whether that norm is usable)."""
    if not bool(torch.isfinite(grad).all()):
        return None
    return _wide_norm(grad)


def screen_gradient_norms(grads: list[Tensor], norms: list[Tensor]) -> None:
    """Raise the step's :class:`FloatingPointError` if any gradient would be refused, before anything is written.

    ``norms[i]`` is ‖grads[i]‖_F in its compute dtype (e.g. from :func:`gradient_norms`). A non-finite norm refuses
    the step when the gradient holds NaN/Inf, or when its true norm exceeds
    :func:`~andi.functional.validation.norm_limit`; a finite gradient whose squares merely overflowed the fast
    accumulation is accepted (the update recomputes its norms in float64). One host sync per device; the slow
    checks run only for the flagged tensors.
    """
    for i in nonfinite_indices(norms):
        grad = grads[i]
        if _is_dtensor(grad):
            grad = grad.full_tensor()  # rare path: the error (or its absence) must be the same on every rank
        norm = _classify_refusal(grad)
        dtype = compute_dtype(grad.dtype)
        if norm is None:
            raise nonfinite_gradient_error(i)
        if norm > norm_limit(dtype):
            raise nonfinite_gradient_error(i, overflow_norm=norm, dtype=dtype)


def _is_dtensor(t: Tensor) -> bool:
    return _DTensor is not None and isinstance(t, _DTensor)


def _screen_stats(grads: list[Tensor], stats: list[AndiStats], *, min_dim: int, skip_nonfinite: bool) -> set[int]:
    """Indices to skip; raises before anything is modified when skipping is not allowed.

    A gradient whose fast norms are not finite is either refused (it holds NaN/Inf, or its norm is beyond
    :func:`~andi.functional.validation.norm_limit`) or rescued: its squares overflowed the compute dtype although
    ‖G‖ is representable, so its row, column and global norms are recomputed in float64 (``stats[i]`` replaced).
    """
    refused: dict[int, float | None] = {}
    for i in nonfinite_indices([s.norm for s in stats]):
        grad = grads[i]
        work = compute_dtype(grad.dtype)
        norm = _classify_refusal(grad)
        if norm is None or norm > norm_limit(work):
            refused[i] = norm
            continue
        wide = gradient_stats(grad.to(torch.float64), min_dim=min_dim)
        stats[i] = AndiStats(*(t.to(work) if t is not None else None for t in wide))
    if refused and not skip_nonfinite:
        first = min(refused)
        norm = refused[first]
        raise nonfinite_gradient_error(
            first, overflow_norm=norm, dtype=None if norm is None else compute_dtype(grads[first].dtype)
        )
    return set(refused)


def _screen_directions(grads: list[Tensor], directions: list[Tensor], skip_nonfinite: bool) -> set[int]:
    """``compat="reference"``: the script's formulas run in the parameter dtype and are not rescued (bit for bit);
    a finite gradient they overflow is refused with its norm, never reported as NaN/Inf."""
    bad = nonfinite_indices([torch.linalg.vector_norm(d) for d in directions])
    if bad and not skip_nonfinite:
        norm = _classify_refusal(grads[bad[0]])
        dtype = None if norm is None else grads[bad[0]].dtype
        raise nonfinite_gradient_error(bad[0], overflow_norm=norm, dtype=dtype)
    return set(bad)


def _direction_terms(grad: Tensor, stats: AndiStats, *, eps: float, maximize: bool) -> tuple[Tensor, Tensor]:
    """Paper mode: ``(X, s)`` with H = s·X and s a 0-dim tensor.

    Keeping H factored saves a full pass: the scale is applied inside the momentum and parameter updates
    (``addcmul``). On the global branch X is the gradient itself (read, never written).
    """
    if stats.row is None:
        x = grad
        scale = energy_scale(stats.norm, stats.norm, eps)
    else:
        x = equilibrate(grad, stats, eps=eps)
        scale = energy_scale(stats.norm, torch.linalg.vector_norm(x), eps)
    return x, (scale.neg() if maximize else scale)


def _decay(param: Tensor, lr: float | Tensor, weight_decay: float) -> None:
    if weight_decay != 0:
        param.mul_(1 - lr * weight_decay)


def _add_scaled(param: Tensor, buf: Tensor, lr: float | Tensor, factor: float) -> None:
    """θ ← θ − η·factor·buf, with η a float or a 0-dim tensor (never synced to the host)."""
    if isinstance(lr, Tensor):
        param.addcmul_(buf, lr, value=-factor)
    else:
        param.add_(buf, alpha=-lr * factor)


def _paper_update(
    param: Tensor, x: Tensor, scale: Tensor, buf: Tensor | None, *, lr: float | Tensor, momentum: float,
    nesterov: bool, weight_decay: float, buffer_dtype: torch.dtype,
) -> Tensor | None:
    """One tensor's momentum and parameter update from H = scale·x; returns the (possibly new) buffer."""
    _decay(param, lr, weight_decay)
    step_scale = scale * -lr  # −η·s, a 0-dim tensor
    if momentum == 0:
        param.addcmul_(x, step_scale)
        return buf
    if buf is None:
        buf = x.to(buffer_dtype, copy=True).mul_(scale)  # M_1 = H_1 (M_0 = 0)
    else:
        buf.mul_(momentum).addcmul_(x, scale)
    if nesterov:  # θ −= η(H + μM) without materialising H + μM
        param.addcmul_(x, step_scale)
        _add_scaled(param, buf, lr, momentum)
    else:
        _add_scaled(param, buf, lr, 1.0)
    return buf


def _reference_update(
    param: Tensor, direction: Tensor, buf: Tensor | None, *, lr: float | Tensor, momentum: float, nesterov: bool,
) -> Tensor:
    """The script's momentum and update, op for op (andi.md §3.3): the first buffer is (1 + μ)·H₁."""
    if buf is None:
        buf = direction.clone()
    buf.mul_(momentum).add_(direction)
    update = direction.add(buf, alpha=momentum) if nesterov else buf
    _add_scaled(param, update, lr, 1.0)
    return buf


def _single_tensor_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], *,
    lr: float | Tensor, momentum: float, nesterov: bool, weight_decay: float, eps: float, min_dim: int,
    compat: Compat, maximize: bool, skip_nonfinite: bool, momentum_dtype: torch.dtype | None,
) -> int:
    if compat == "reference":
        directions = [reference_direction(g, min_dim=min_dim, maximize=maximize) for g in grads]
        skip = _screen_directions(grads, directions, skip_nonfinite)
        for i, (param, direction) in enumerate(zip(params, directions)):
            if i not in skip:
                momentum_buffers[i] = _reference_update(
                    param, direction, momentum_buffers[i], lr=lr, momentum=momentum, nesterov=nesterov
                )
        return len(skip)

    stats: list[AndiStats] = [gradient_stats(g, min_dim=min_dim) for g in grads]
    skip = _screen_stats(grads, stats, min_dim=min_dim, skip_nonfinite=skip_nonfinite)
    for i, (param, grad) in enumerate(zip(params, grads)):
        if i in skip:
            continue
        x, scale = _direction_terms(grad, stats[i], eps=eps, maximize=maximize)
        momentum_buffers[i] = _paper_update(
            param, x, scale, momentum_buffers[i], lr=lr, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, buffer_dtype=momentum_dtype or param.dtype,
        )
    return len(skip)


def _multi_tensor_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], *,
    lr: float | Tensor, momentum: float, nesterov: bool, weight_decay: float, eps: float, min_dim: int,
    compat: Compat, maximize: bool, skip_nonfinite: bool, momentum_dtype: torch.dtype | None,
) -> int:
    if compat == "reference":  # the script's op order is defined per tensor; replay speed is not a concern
        return _single_tensor_andi(
            params, grads, momentum_buffers, lr=lr, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, eps=eps, min_dim=min_dim, compat=compat, maximize=maximize,
            skip_nonfinite=skip_nonfinite, momentum_dtype=momentum_dtype,
        )
    # Pass 1 over every gradient: the norms, then one finiteness check for the whole call.
    stats = [gradient_stats(g, min_dim=min_dim) for g in grads]
    skip = _screen_stats(grads, stats, min_dim=min_dim, skip_nonfinite=skip_nonfinite)

    buckets: dict[tuple[torch.device, torch.dtype], list[int]] = defaultdict(list)
    for i, p in enumerate(params):
        if i not in skip:
            buckets[(p.device, p.dtype)].append(i)

    for (_, dtype), idx in buckets.items():
        # Pass 2: X = Ĝ (matrices) or G (global branch) and the 0-dim scales s with H = s·X.
        xs = [equilibrate(grads[i], stats[i], eps=eps) if stats[i].row is not None else grads[i] for i in idx]
        nus = torch.stack([stats[i].norm for i in idx])
        x_norms = [stats[i].norm for i in idx]  # ‖X‖ = ν on the global branch
        matrix_pos = [k for k, i in enumerate(idx) if stats[i].row is not None]
        if matrix_pos:
            for k, norm in zip(matrix_pos, torch._foreach_norm([xs[k] for k in matrix_pos])):
                x_norms[k] = norm
        scales = energy_scale(nus, torch.stack(x_norms), eps)
        if maximize:
            scales = scales.neg()
        scale_list = list(scales.unbind())
        step_scales = list((scales * -lr).unbind())
        ps = [params[i] for i in idx]
        if weight_decay != 0:
            torch._foreach_mul_(ps, 1 - lr * weight_decay)
        if momentum == 0:
            torch._foreach_addcmul_(ps, xs, step_scales)
            continue
        buffer_dtype = momentum_dtype or dtype
        old = [k for k, i in enumerate(idx) if momentum_buffers[i] is not None]
        if old:
            bufs_old = [momentum_buffers[idx[k]] for k in old]
            torch._foreach_mul_(bufs_old, momentum)
            torch._foreach_addcmul_(bufs_old, [xs[k] for k in old], [scale_list[k] for k in old])
        for k, i in enumerate(idx):
            if momentum_buffers[i] is None:
                momentum_buffers[i] = xs[k].to(buffer_dtype, copy=True).mul_(scale_list[k])
        bufs = [momentum_buffers[i] for i in idx]
        factor = momentum if nesterov else 1.0
        if nesterov:
            torch._foreach_addcmul_(ps, xs, step_scales)
        if isinstance(lr, Tensor):
            torch._foreach_addcmul_(ps, bufs, [lr] * len(bufs), value=-factor)
        else:
            torch._foreach_add_(ps, bufs, alpha=-lr * factor)
    return len(skip)


def andi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    min_dim: int,
    compat: Compat = "paper",
    maximize: bool = False,
    foreach: bool | None = None,
    fused: bool | None = None,
    skip_nonfinite: bool = False,
    momentum_dtype: torch.dtype | None = None,
    check_inputs: bool = True,
) -> int:
    r"""Apply one ANDI step in place to ``params`` (see the module docstring for the update rule).

    ``fused=None`` picks the fused path (:mod:`andi.functional.fused`: Triton kernels or one compiled graph) for
    dense tensors on one CUDA device; ``foreach=None`` follows :func:`default_foreach`.

    ``momentum_buffers[i]`` may be ``None`` (no state yet); it is then created from :math:`H_1` and stored back into
    the list, the torch SGD convention. Gradients are never modified.

    Every input is checked before the first write (:mod:`andi.functional.validation`): invalid hyperparameters
    raise ``ValueError``, tensors that cannot be updated (wrong shapes or devices, sparse or complex) raise before any
    tensor is touched. ``check_inputs=False`` skips those checks for a caller that has just run them itself (the
    optimizer class checks every group before updating the first one).

    Returns:
        The number of tensors skipped because their gradient was non-finite (only with ``skip_nonfinite=True``;
        otherwise a non-finite gradient raises :class:`FloatingPointError` before anything is modified). A finite
        gradient is updated whenever ``‖G‖_F`` is at most half the compute dtype's largest value (its norms are
        recomputed in float64 when the fast accumulation overflows); beyond that it is refused like a non-finite one,
        with a message that says so.
    """
    if check_inputs:
        check_hyperparameters(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, eps=eps, min_dim=min_dim,
            compat=compat, maximize=maximize, skip_nonfinite=skip_nonfinite, momentum_dtype=momentum_dtype,
            foreach=foreach, fused=fused,
        )
        check_step_tensors(params, grads, momentum_buffers)
    if not params:
        return 0
    if _DTensor is not None and any(isinstance(p, _DTensor) for p in params):
        from andi.distributed.sharded import _dtensor_andi

        return _dtensor_andi(
            params, grads, momentum_buffers, lr=lr, momentum=momentum, nesterov=nesterov,
            weight_decay=weight_decay, eps=eps, min_dim=min_dim, compat=compat, maximize=maximize,
            skip_nonfinite=skip_nonfinite, momentum_dtype=momentum_dtype,
        )
    if fused is None:
        from .fused import default_fused  # fused.py imports this module: import lazily

        fused = default_fused(params) and not foreach
    if fused:
        if foreach:
            raise ValueError("`fused` and `foreach` cannot be `True` together.")
        from .fused import _fused_andi

        impl = _fused_andi
    else:
        if foreach is None:
            foreach = default_foreach(params)
        impl = _multi_tensor_andi if foreach else _single_tensor_andi
    return impl(
        params, grads, momentum_buffers, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
        eps=eps, min_dim=min_dim, compat=compat, maximize=maximize, skip_nonfinite=skip_nonfinite,
        momentum_dtype=momentum_dtype,
    )
