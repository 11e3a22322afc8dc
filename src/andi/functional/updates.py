r"""ANDI's per-tensor update and the screen that runs before it: shared by every backend.

Every backend (single-tensor, foreach, fused, DTensor) imports from here, so the update rule is written once:

.. math::
    M_t = \mu M_{t-1} + H_t \ (M_0 = 0), \qquad U_t = H_t + \mu M_t \ \text{(Nesterov) or } M_t, \qquad
    \theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta U_t

with :math:`H_t = s\,X` kept factored (``X`` the equilibrated gradient or the gradient itself, ``s`` a 0-dim
scale) so the scale rides inside ``addcmul_`` and no pass materialises :math:`H`. The script modes
(``compat="reference"``, ``"v7"``) use the script's own order of operations (:func:`reference_update`).

The screen decides, before anything is written, which tensors a step refuses: a gradient holding NaN/Inf, or one
whose norm is beyond :func:`~andi.functional.validation.norm_limit`. A finite gradient whose squares merely overflow
the compute dtype is rescued: its norms are recomputed in float64.
"""

from __future__ import annotations

from collections import defaultdict

import torch
from torch import Tensor

from .lr import add_lr_scaled_, decay_weights_
from .precondition import AndiStats, compute_dtype, energy_scale, equilibrate, gradient_stats
from .validation import nonfinite_gradient_error, norm_limit

try:  # to recognise DTensors (the dispatcher's backend choice, the cross-group screen)
    from torch.distributed.tensor import DTensor as _DTensor
except (ImportError, AttributeError):  # pragma: no cover - builds without torch.distributed
    _DTensor = None

__all__ = [
    "classify_refusal",
    "direction_terms",
    "is_dtensor",
    "nonfinite_indices",
    "paper_update",
    "reference_update",
    "screen_directions",
    "screen_gradient_norms",
    "screen_stats",
]


def nonfinite_indices(norms: list[Tensor]) -> list[int]:
    """Indices of the non-finite entries of a list of 0-dim norms, with one host sync per device.

    Norms on the ``meta`` device have no values: they are never flagged (a step on meta parameters is shape-only,
    as torch's optimizers do it)."""
    by_device: dict[torch.device, list[int]] = defaultdict(list)
    for i, n in enumerate(norms):
        if n.device.type != "meta":
            by_device[n.device].append(i)
    bad: list[int] = []
    for idx in by_device.values():
        finite = torch.stack([norms[i] for i in idx]).isfinite().tolist()
        bad.extend(i for i, ok in zip(idx, finite) if not ok)
    return sorted(bad)


def wide_norm(grad: Tensor) -> float:
    """‖G‖_F without overflow (max-abs scaling in float64), for messages and limits; a host sync (rare path)."""
    g = grad.detach().to(torch.float64)
    peak = g.abs().amax() if g.numel() else g.new_zeros(())
    if peak == 0 or not torch.isfinite(peak):
        return float(peak)
    return float(peak * torch.linalg.vector_norm(g / peak))


def classify_refusal(grad: Tensor) -> float | None:
    """Why a gradient whose norm is not finite in its compute dtype is refused: ``None`` when it holds NaN/Inf, else
    its true norm (a finite gradient whose squares overflowed; the caller decides whether that norm is usable)."""
    if not bool(torch.isfinite(grad).all()):
        return None
    return wide_norm(grad)


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
        if is_dtensor(grad):
            grad = grad.full_tensor()  # rare path: the error (or its absence) must be the same on every rank
        norm = classify_refusal(grad)
        dtype = compute_dtype(grad.dtype)
        if norm is None:
            raise nonfinite_gradient_error(i)
        if norm > norm_limit(dtype):
            raise nonfinite_gradient_error(i, overflow_norm=norm, dtype=dtype)


def is_dtensor(t: Tensor) -> bool:
    """Whether ``t`` is a DTensor (always ``False`` in torch builds without ``torch.distributed``)."""
    return _DTensor is not None and isinstance(t, _DTensor)


def screen_stats(grads: list[Tensor], stats: list[AndiStats], *, min_dim: int, skip_nonfinite: bool) -> set[int]:
    """Indices to skip; raises before anything is modified when skipping is not allowed.

    A gradient whose fast norms are not finite is either refused (it holds NaN/Inf, or its norm is beyond
    :func:`~andi.functional.validation.norm_limit`) or rescued: its squares overflowed the compute dtype although
    ‖G‖ is representable, so its row, column and global norms are recomputed in float64 (``stats[i]`` replaced).
    """
    refused: dict[int, float | None] = {}
    for i in nonfinite_indices([s.norm for s in stats]):
        grad = grads[i]
        work = compute_dtype(grad.dtype)
        norm = classify_refusal(grad)
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


def screen_directions(grads: list[Tensor], directions: list[Tensor], skip_nonfinite: bool) -> set[int]:
    """The script modes: the script's formulas run in the parameter dtype and are not rescued (bit for bit);
    a finite gradient they overflow is refused with its norm, never reported as NaN/Inf."""
    bad = nonfinite_indices([torch.linalg.vector_norm(d) for d in directions])
    if bad and not skip_nonfinite:
        norm = classify_refusal(grads[bad[0]])
        dtype = None if norm is None else grads[bad[0]].dtype
        raise nonfinite_gradient_error(bad[0], overflow_norm=norm, dtype=dtype)
    return set(bad)


def direction_terms(grad: Tensor, stats: AndiStats, *, eps: float, maximize: bool) -> tuple[Tensor, Tensor]:
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


def paper_update(
    param: Tensor,
    x: Tensor,
    scale: Tensor,
    buf: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    buffer_dtype: torch.dtype,
) -> Tensor | None:
    """One tensor's momentum and parameter update from H = scale·x; returns the (possibly new) buffer."""
    if weight_decay != 0:
        decay_weights_(param, lr, weight_decay)
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
        add_lr_scaled_(param, buf, lr, momentum)
    else:
        add_lr_scaled_(param, buf, lr, 1.0)
    return buf


def reference_update(
    param: Tensor,
    direction: Tensor,
    buf: Tensor | None,
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float = 0.0,
) -> Tensor:
    """The script's momentum and update, op for op: the first buffer is (1 + μ)·H₁ (``docs/design/algorithm.md``).

    ``weight_decay`` > 0 (the v7 class only) first shrinks the parameter, ``θ ← θ(1 − ηλ)``, with the scheduled lr.
    """
    if weight_decay > 0:
        decay_weights_(param, lr, weight_decay)
    if buf is None:
        buf = direction.clone()
    buf.mul_(momentum).add_(direction)
    update = direction.add(buf, alpha=momentum) if nesterov else buf
    add_lr_scaled_(param, update, lr, 1.0)
    return buf
