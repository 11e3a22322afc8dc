r"""The functional NorMuon step: ``normuon(params, grads, momentum_buffers, second_momentum_buffers, *, lr, ...)``.

Muon's direction followed by a row-wise second moment (:math:`U_t` viewed as :math:`m \times n`):

.. math::
    \begin{aligned}
    &M_t = \mu M_{t-1} + (1-\mu)G_t,\quad U_t = (1-\mu)G_t + \mu M_t \text{ (Nesterov) or } M_t,\quad
        O_t = \mathrm{NS}_T(U_t) \\
    &v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\mathrm{mean}_j\, O_{t,ij}^2 \quad (\text{per row}, v_0 = 0) \\
    &\hat O_t = O_t / (\sqrt{v_t} + \epsilon),\quad
        \hat O_t \leftarrow \hat O_t\,\|O_t\|_F / \max(\|\hat O_t\|_F, \epsilon) \\
    &\theta_t = \theta_{t-1}(1-\eta\lambda) - \eta\sqrt{\max(1, m/n)}\;\hat O_t
    \end{aligned}

Momentum, Newton–Schulz and the shape factor are Muon's (:mod:`andi.functional.muon`), so NorMuon − Muon is exactly
the row normalization. Reference: Z. Li et al., "NorMuon: Making Muon more efficient and scalable", arXiv
2510.05491; code ``microsoft/dion:dion/normuon.py`` (whose Frobenius-norm restore is used here).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .lr import add_lr_scaled_, decay_weights_
from .muon import muon_shape_scale, muon_update
from .newton_schulz import DEFAULT_NS_STEPS, NS5_COEFFICIENTS, Coefficients

__all__ = ["normuon", "row_second_moment_normalize"]


def row_second_moment_normalize(ortho: Tensor, second_moment: Tensor, *, beta2: float, eps: float) -> Tensor:
    r""":math:`\hat O` from :math:`O` (``m × n``): update the ``m × 1`` row statistic :math:`v` in place, divide every
    row by :math:`\sqrt{v_i} + \epsilon`, then restore :math:`\|O\|_F`. ``ortho`` is not modified."""
    original_norm = ortho.norm()
    second_moment.lerp_(ortho.square().mean(dim=-1, keepdim=True), 1 - beta2)
    normalized = ortho / (second_moment.sqrt() + eps)
    return normalized * (original_norm / normalized.norm().clamp(min=eps))


def normuon(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    second_momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.95,
    beta2: float = 0.95,
    weight_decay: float = 0.0,
    nesterov: bool = True,
    eps: float = 1e-8,
    ns_steps: int = DEFAULT_NS_STEPS,
    ns_coefficients: Coefficients = NS5_COEFFICIENTS,
    ns_safety: float = 1.0,
) -> None:
    r"""Apply one NorMuon step in place to ``params`` (update rule in the module docstring).

    Missing (``None``) buffers are created — the momentum as zeros like the gradient, the row statistic as
    ``m × 1`` zeros — and stored back into their lists. Gradients are never modified; a Tensor ``lr`` is never read
    on the host. ``eps`` is the row normalization's; the Newton–Schulz input-norm bound stays Muon's 1e-7.

    Examples:
        >>> p, g = torch.zeros(2, 4), torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]])
        >>> bufs, rows = [None], [None]
        >>> normuon([p], [g], bufs, rows, lr=0.1)
        >>> rows[0].shape  # one statistic per row of the (d1, -1) view
        torch.Size([2, 1])
        >>> torch.allclose(p.norm(), 0.1 * torch.tensor(2.0).sqrt(), rtol=0.2)  # ‖Ô‖_F = ‖O‖_F ≈ √rank
        True
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        if momentum_buffers[i] is None:
            momentum_buffers[i] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        if second_momentum_buffers[i] is None:
            second_momentum_buffers[i] = grad.new_zeros(grad.shape[0], 1)
        ortho = muon_update(
            grad,
            momentum_buffers[i],
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            ns_safety=ns_safety,
        ).to(grad.dtype)
        normalized = row_second_moment_normalize(
            ortho.reshape(grad.shape[0], -1), second_momentum_buffers[i], beta2=beta2, eps=eps
        )
        decay_weights_(param, lr, weight_decay)
        add_lr_scaled_(param, normalized.reshape(param.shape), lr, muon_shape_scale(param.shape))
