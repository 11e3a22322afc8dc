r"""The functional Muon step in KellerJordan's reference form: ``muon(params, grads, momentum_buffers, *, lr, ...)``.

For every tensor :math:`\theta` with gradient :math:`G` (``ndim >= 2``, viewed as :math:`m \times n` with
:math:`m = d_1`, :math:`n = d_2 \cdots d_k`):

.. math::
    \begin{aligned}
    M_t &= \mu M_{t-1} + (1-\mu) G_t, \qquad M_0 = 0 \\
    U_t &= (1-\mu) G_t + \mu M_t \ \text{(Nesterov)} \quad\text{else}\quad U_t = M_t \\
    O_t &= \mathrm{NS}_T(U_t) \\
    \theta_t &= \theta_{t-1}(1 - \eta\lambda) - \eta\, s(m, n)\, O_t
    \end{aligned}

with Muon's shape factor :math:`s` (:func:`muon_shape_scale`). On 2-D tensors these are the operations of
``torch.optim.Muon`` in the same order; conv filters are orthogonalized through their ``(d1, -1)`` view
(KellerJordan ``muon.py``). :math:`\mathrm{NS}_T` runs in bf16 on accelerators and in float32 on CPU
(``ns_dtype=None``, :func:`~andi.functional.newton_schulz.resolve_ns_dtype`: emulated bf16 is very slow on CPUs
without native support); ``ns_dtype=torch.bfloat16`` gives ``torch.optim.Muon``'s dtype, and its result, everywhere.
Reference: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
https://kellerjordan.github.io/posts/muon/.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .lr import add_lr_scaled_, decay_weights_
from .matrix import as_matrix
from .newton_schulz import (
    DEFAULT_NS_STEPS,
    NS5_COEFFICIENTS,
    NS_EPS,
    Coefficients,
    resolve_ns_dtype,
    zeropower_via_newtonschulz5,
)

__all__ = ["ADJUST_LR_FNS", "adjusted_lr", "muon", "muon_shape_scale", "muon_update"]

#: The accepted values of ``adjust_lr_fn`` (``torch.optim.Muon``'s).
ADJUST_LR_FNS = (None, "original", "match_rms_adamw")


def muon_shape_scale(shape: torch.Size | tuple[int, ...], adjust_lr_fn: str | None = None) -> float:
    r"""Muon's shape factor :math:`s(m, n)` for an update of ``shape`` viewed as :math:`m \times n`.

    ``None``/``"original"``: :math:`\sqrt{\max(1, m/n)}` (KellerJordan; torch's default).
    ``"match_rms_adamw"``: :math:`0.2\sqrt{\max(m, n)}` (Moonlight, arXiv 2502.16982).

    Examples:
        >>> muon_shape_scale((64, 16)), muon_shape_scale((16, 64)), muon_shape_scale((8, 4, 3, 3))
        (2.0, 1.0, 1.0)
    """
    m = shape[0]
    n = math.prod(shape[1:])
    if adjust_lr_fn in (None, "original"):
        return math.sqrt(max(1.0, m / n))
    if adjust_lr_fn == "match_rms_adamw":
        return 0.2 * math.sqrt(max(m, n))
    raise ValueError(f"Unknown adjust_lr_fn {adjust_lr_fn!r}; expected None, 'original' or 'match_rms_adamw'")


def adjusted_lr(lr: float | Tensor, adjust_lr_fn: str | None, shape: torch.Size) -> float | Tensor:
    r"""Muon's shape-adjusted lr :math:`\eta\, s(m, n)` (see :func:`muon_shape_scale`)."""
    return lr * muon_shape_scale(shape, adjust_lr_fn)


def muon_update(
    grad: Tensor,
    momentum_buffer: Tensor,
    *,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_steps: int = DEFAULT_NS_STEPS,
    ns_coefficients: Coefficients = NS5_COEFFICIENTS,
    eps: float = NS_EPS,
    ns_safety: float = 1.0,
    ns_dtype: torch.dtype = torch.bfloat16,
) -> Tensor:
    r"""One Muon direction :math:`O_t` (``muon.py``'s ``muon_update`` without its in-place write into ``grad``).

    ``momentum_buffer`` is updated in place; ``grad`` is not modified. Returns :math:`O_t` in ``ns_dtype`` (the
    Newton–Schulz dtype; bf16 by default, as NorMuon uses it) with ``grad``'s shape (the caller applies the lr, the
    shape factor and weight decay).
    """
    momentum_buffer.lerp_(grad, 1 - momentum)
    update = grad.lerp(momentum_buffer, momentum) if nesterov else momentum_buffer
    ortho = zeropower_via_newtonschulz5(
        as_matrix(update), ns_steps, ns_coefficients, eps, safety=ns_safety, dtype=ns_dtype
    )
    return ortho.reshape(grad.shape)


def muon(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    weight_decay: float = 0.1,
    momentum: float = 0.95,
    nesterov: bool = True,
    ns_coefficients: Coefficients = NS5_COEFFICIENTS,
    eps: float = NS_EPS,
    ns_steps: int = DEFAULT_NS_STEPS,
    adjust_lr_fn: str | None = None,
    ns_safety: float = 1.0,
    ns_dtype: torch.dtype | None = None,
) -> None:
    r"""Apply one Muon step in place to ``params`` (update rule in the module docstring).

    ``momentum_buffers[i]`` may be ``None`` (no state yet): a zero buffer is then created and stored back into the
    list (the torch SGD convention). Gradients are never modified. A Tensor ``lr`` is never read on the host.
    ``ns_safety`` multiplies the Newton–Schulz input norm (Polar Express uses ``1.02`` with ``eps=1e-6``).
    ``ns_dtype`` is the Newton–Schulz dtype; ``None`` picks it per gradient device (float32 on CPU, bf16 elsewhere).

    Examples:
        >>> p, g = torch.zeros(2, 2), torch.eye(2)
        >>> bufs = [None]
        >>> muon([p], [g], bufs, lr=0.1, weight_decay=0.0)
        >>> bufs[0]  # M_1 = (1 - μ) G
        tensor([[0.0500, 0.0000],
                [0.0000, 0.0500]])
        >>> p  # −η · NS5(U_1), NS in float32 on CPU: NS5 pushes the singular values near 1, not onto it
        tensor([[-0.1108,  0.0000],
                [ 0.0000, -0.1108]])
    """
    for param in params:
        if torch.is_complex(param):
            raise RuntimeError("Muon does not support complex parameters")
    for i, (param, grad) in enumerate(zip(params, grads)):
        scale = muon_shape_scale(param.shape, adjust_lr_fn)
        if momentum_buffers[i] is None:
            momentum_buffers[i] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        ortho = muon_update(
            grad,
            momentum_buffers[i],
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_safety=ns_safety,
            ns_dtype=resolve_ns_dtype(ns_dtype, grad.device),
        )
        decay_weights_(param, lr, weight_decay)
        add_lr_scaled_(param, ortho, lr, scale)
