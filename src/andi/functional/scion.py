r"""The functional Scion step: ``scion(params, grads, momentum_buffers, *, lr, momentum, norm, ...)``.

For every tensor with gradient :math:`G`, with :math:`\alpha` = ``momentum`` and the layer's radius :math:`\rho`:

.. math::
    \begin{aligned}
    &d_t = (1-\alpha)\,d_{t-1} + \alpha\,G_t \quad (d_0 = 0;\ d_t = G_t \text{ when } \alpha = 1) \\
    &u_t = \rho \cdot \mathrm{lmo}(d_t) \\
    &\theta_t = (1-\eta)\,\theta_{t-1} - \eta\,u_t \quad\text{(constrained)}\qquad
     \theta_t = (1-\eta\lambda)\,\theta_{t-1} - \eta\,u_t \quad\text{(unconstrained)}
    \end{aligned}

The LMOs are :func:`~andi.functional.normalize.scion_lmo`'s. Reference: T. Pethick et al., "Training Deep Learning
Models with Norm-Constrained LMOs", arXiv 2502.07529; code ``LIONS-EPFL/scion:scion.py``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .lr import add_lr_scaled_, decay_weights_
from .normalize import scion_lmo

__all__ = ["scion"]


def scion(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 1.0,
    norm: str = "auto",
    norm_kwargs: Mapping[str, Any] | None = None,
    scale: float = 1.0,
    unconstrained: bool = False,
    weight_decay: float = 0.0,
) -> None:
    r"""Apply one Scion step in place to ``params`` (update rule in the module docstring).

    With ``momentum < 1`` a missing (``None``) average :math:`d` is created as zeros and stored back into
    ``momentum_buffers``; with ``momentum == 1`` no state is kept and the list is left as it is. Gradients are never
    modified; a Tensor ``lr`` is never read on the host. ``weight_decay`` applies to the unconstrained form only (the
    constrained one decays with :math:`\lambda = 1`).

    Examples:
        >>> p, g = torch.ones(2, 2), torch.tensor([[1.0, -2.0], [3.0, -4.0]])
        >>> bufs = [None]
        >>> scion([p], [g], bufs, lr=0.1, norm="sign", norm_kwargs={"normalized": False})
        >>> p  # (1 − η)θ − η sign(G)
        tensor([[0.8000, 1.0000],
                [0.8000, 1.0000]])
        >>> bufs  # α = 1 keeps no state
        [None]
    """
    options = dict(norm_kwargs or {})
    for i, (param, grad) in enumerate(zip(params, grads)):
        averaged = grad
        if momentum != 1:
            if momentum_buffers[i] is None:
                momentum_buffers[i] = torch.zeros_like(grad, memory_format=torch.preserve_format)
            averaged = momentum_buffers[i].mul_(1 - momentum).add_(grad, alpha=momentum)
        update = scion_lmo(norm, averaged, **options).mul_(scale)
        if unconstrained:
            if weight_decay != 0:
                decay_weights_(param, lr, weight_decay)
        else:
            param.mul_(1 - lr)
        add_lr_scaled_(param, update, lr)
