r"""The ANDI paper script's "Muon" as a function — for replaying the paper only; it is **not** Muon.

Transcribed from ``VladimerKhasia/ANDI:ANDI.py`` (commit 29f90fe), functions ``newton_schulz_5`` and class ``Muon``.
For every tensor with gradient :math:`G` viewed as :math:`m \times n`:

.. math::
    \begin{aligned}
    &X_t = \mathrm{NS5}(G_t)\cdot\sqrt{\max(1, m/n)} \text{ if } m > 32 \text{ and } n > 32,
        \text{ else } X_t = G_t \\
    &M_t = \mu M_{t-1} + X_t \quad (M_0 = 0),\qquad U_t = X_t + \mu M_t \text{ (nesterov) or } M_t \\
    &\theta_t = \theta_{t-1} - \eta\, U_t
    \end{aligned}

Newton–Schulz runs on the raw gradient before momentum, in bf16 only for CUDA fp32 gradients. How this departs from
Muon as published is listed in :mod:`andi.optim.script_muon`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .lr import add_lr_scaled_

__all__ = ["SCRIPT_MUON_MIN_SIDE", "script_direction", "script_muon", "script_newton_schulz_5"]

#: The script orthogonalizes a tensor only when both sides of its (d1, -1) view exceed this (``> 32``).
SCRIPT_MUON_MIN_SIDE = 32
_A, _B, _C = (3.4445, -4.7750, 2.0315)


def script_newton_schulz_5(G: Tensor, steps: int = 5, eps: float = 1e-7, *, bf16: bool | None = None) -> Tensor:
    """``newton_schulz_5`` of the script, operation for operation, without writing into ``G``.

    The norm is taken *before* the transpose and the iteration computes ``B = b·A + (c·A) @ A`` exactly as the
    script's ``b * A + c * A @ A`` parses. ``bf16=None``: bf16 only for CUDA fp32 inputs, as the script decides;
    ``True``: a bf16 copy of an fp32 input on every device (what the script does on the GPUs it was run on).
    """
    if G.ndim != 2:
        raise ValueError(f"script_newton_schulz_5 needs a matrix, got shape {tuple(G.shape)}")
    to_bf16 = G.dtype == torch.float32 and (G.is_cuda if bf16 is None else bf16)
    X = G.bfloat16() if to_bf16 else G
    X = X / (X.norm() + eps)  # the script divides in place; the values are the same
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = _B * A + _C * A @ A
        X = _A * X + B @ X
    if transposed:
        X = X.T
    return X.to(G.dtype)


def script_direction(grad: Tensor, ns_steps: int = 5) -> Tensor:
    r""":math:`X_t`: the orthogonalized, shape-scaled gradient when both sides of its ``(d1, -1)`` view exceed
    :data:`SCRIPT_MUON_MIN_SIDE`, else ``grad`` itself (returned, not copied)."""
    if grad.ndim < 2:
        return grad
    matrix = grad.reshape(grad.shape[0], -1)
    if matrix.size(0) <= SCRIPT_MUON_MIN_SIDE or matrix.size(1) <= SCRIPT_MUON_MIN_SIDE:
        return grad
    ortho = script_newton_schulz_5(matrix, steps=ns_steps)
    return ortho.view(grad.shape) * max(1, matrix.size(0) / matrix.size(1)) ** 0.5  # the script's own shape factor


def script_muon(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.9,
    nesterov: bool = True,
    ns_steps: int = 5,
) -> None:
    r"""Apply one step of the script's "Muon" in place to ``params`` (update rule in the module docstring).

    ``momentum_buffers[i]`` may be ``None``: a zero buffer like the parameter is then created and stored back into
    the list. Gradients are never modified; a Tensor ``lr`` is never read on the host.

    Examples:
        >>> p, g = torch.zeros(3), torch.tensor([1.0, 2.0, 3.0])  # a vector: plain SGD-Nesterov
        >>> bufs = [None]
        >>> script_muon([p], [g], bufs, lr=0.1)
        >>> p  # −η (G + μ G)
        tensor([-0.1900, -0.3800, -0.5700])
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        direction = script_direction(grad, ns_steps)
        if momentum_buffers[i] is None:
            momentum_buffers[i] = torch.zeros_like(param)
        buf = momentum_buffers[i]
        buf.mul_(momentum).add_(direction)
        update = direction.add(buf, alpha=momentum) if nesterov else buf
        add_lr_scaled_(param, update, lr)
