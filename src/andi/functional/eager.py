r"""The eager ANDI backends: ``single`` (one tensor at a time) and ``foreach`` (``torch._foreach_*`` batches).

Both compute the same update (tests hold them to 1e-6 relative in fp32) and screen every gradient before touching
any parameter or buffer (:mod:`andi.functional.updates`), so a refused step leaves everything as it was. They take
the validated :class:`~andi.functional.validation.AndiHyperparameters`; :func:`andi.functional.andi` dispatches.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from .precondition import AndiStats, energy_scale, equilibrate, gradient_stats, reference_direction
from .updates import direction_terms, paper_update, reference_update, screen_directions, screen_stats
from .validation import SCRIPT_COMPAT_MODES, AndiHyperparameters

__all__ = ["default_foreach"]


#: On CPU, tensors averaging more elements than this take the single-tensor loop under ``foreach=None``.
_CPU_FOREACH_MAX_MEAN_NUMEL = 1 << 16


def default_foreach(params: list[Tensor]) -> bool:
    """Pick the implementation when the user passed ``foreach=None``.

    Accelerators: the foreach path (fewer kernel launches). CPU: ``_foreach_*`` ops are loops over the same kernels
    there, so what matters is cache locality against Python overhead. Measured on 2 cores (``docs/performance.md``):
    for large tensors the single-tensor loop is faster (4 x 1024² MLP: 8.5 ms vs 14.0 ms; 8 x 1024²: 20 vs 26 ms),
    because it finishes each tensor while it is still in cache; for many small tensors the foreach path is faster
    (200 x 64² + 200 biases: 18.8 vs 24.7 ms). Tensor subclasses other than ``nn.Parameter`` take the loop.
    """
    if not params or not all(type(p) in (Tensor, torch.nn.Parameter) for p in params):
        return False
    if all(p.device.type == "cpu" for p in params):
        return sum(p.numel() for p in params) / len(params) <= _CPU_FOREACH_MAX_MEAN_NUMEL
    return True


def _single_tensor_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """The readable reference loop: Φ and the update one tensor at a time; returns the number skipped."""
    if hp.compat in SCRIPT_COMPAT_MODES:
        directions = [reference_direction(g, min_dim=hp.min_dim, maximize=hp.maximize, compat=hp.compat) for g in grads]
        skip = screen_directions(grads, directions, hp.skip_nonfinite)
        for i, (param, direction) in enumerate(zip(params, directions)):
            if i not in skip:
                momentum_buffers[i] = reference_update(
                    param,
                    direction,
                    momentum_buffers[i],
                    lr=hp.lr,
                    momentum=hp.momentum,
                    nesterov=hp.nesterov,
                    weight_decay=hp.weight_decay,
                )
        return len(skip)

    stats: list[AndiStats] = [gradient_stats(g, min_dim=hp.min_dim) for g in grads]
    skip = screen_stats(grads, stats, min_dim=hp.min_dim, skip_nonfinite=hp.skip_nonfinite)
    for i, (param, grad) in enumerate(zip(params, grads)):
        if i in skip:
            continue
        x, scale = direction_terms(grad, stats[i], eps=hp.eps, maximize=hp.maximize)
        momentum_buffers[i] = paper_update(
            param,
            x,
            scale,
            momentum_buffers[i],
            lr=hp.lr,
            momentum=hp.momentum,
            nesterov=hp.nesterov,
            weight_decay=hp.weight_decay,
            buffer_dtype=hp.momentum_dtype or param.dtype,
        )
    return len(skip)


def _multi_tensor_andi(
    params: list[Tensor], grads: list[Tensor], momentum_buffers: list[Tensor | None], hp: AndiHyperparameters
) -> int:
    """Batches the element-wise work with ``torch._foreach_*`` over (device, dtype) buckets; same contract."""
    if hp.compat in SCRIPT_COMPAT_MODES:  # the script's op order is defined per tensor; replay speed is not a concern
        return _single_tensor_andi(params, grads, momentum_buffers, hp)
    lr, momentum, eps = hp.lr, hp.momentum, hp.eps
    # Pass 1 over every gradient: the norms, then one finiteness check for the whole call.
    stats = [gradient_stats(g, min_dim=hp.min_dim) for g in grads]
    skip = screen_stats(grads, stats, min_dim=hp.min_dim, skip_nonfinite=hp.skip_nonfinite)

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
        if hp.maximize:
            scales = scales.neg()
        scale_list = list(scales.unbind())
        step_scales = list((scales * -lr).unbind())
        ps = [params[i] for i in idx]
        if hp.weight_decay != 0:
            torch._foreach_mul_(ps, 1 - lr * hp.weight_decay)
        if momentum == 0:
            torch._foreach_addcmul_(ps, xs, step_scales)
            continue
        buffer_dtype = hp.momentum_dtype or dtype
        old = [k for k, i in enumerate(idx) if momentum_buffers[i] is not None]
        if old:
            bufs_old = [momentum_buffers[idx[k]] for k in old]
            torch._foreach_mul_(bufs_old, momentum)
            torch._foreach_addcmul_(bufs_old, [xs[k] for k in old], [scale_list[k] for k in old])
        for k, i in enumerate(idx):
            if momentum_buffers[i] is None:
                momentum_buffers[i] = xs[k].to(buffer_dtype, copy=True).mul_(scale_list[k])
        bufs = [momentum_buffers[i] for i in idx]
        factor = momentum if hp.nesterov else 1.0
        if hp.nesterov:
            torch._foreach_addcmul_(ps, xs, step_scales)
        if isinstance(lr, Tensor):
            torch._foreach_addcmul_(ps, bufs, [lr] * len(bufs), value=-factor)
        else:
            torch._foreach_add_(ps, bufs, alpha=-lr * factor)
    return len(skip)
