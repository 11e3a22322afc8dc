r"""The functional SinkGD step (stateless): ``sinkgd(params, grads, *, lr, L, weight_decay, eps)``.

For every tensor with gradient :math:`G` viewed as :math:`m \times n`:

.. math::
    \theta_t = \theta_{t-1}(1-\eta\lambda) - \eta\,\mathrm{SR\text{-}Sinkhorn}_L(G_t)

where SR-Sinkhorn (:func:`~andi.functional.normalize.sr_sinkhorn`) alternately scales the rows to norm
:math:`\sqrt n` and the columns to norm :math:`\sqrt m`, ``L`` times. Reference: M. Scetbon et al., "Gradient
Multi-Normalization for Stateless and Scalable LLM Training", arXiv 2502.06742.
"""

from __future__ import annotations

from torch import Tensor

from .lr import decay_weights_
from .normalize import SINKHORN_EPS, sr_sinkhorn

__all__ = ["sinkgd"]


def sinkgd(
    params: list[Tensor],
    grads: list[Tensor],
    *,
    lr: float | Tensor,
    L: int = 5,
    weight_decay: float = 0.0,
    eps: float = SINKHORN_EPS,
) -> None:
    r"""Apply one SinkGD step in place to ``params`` (update rule in the module docstring).

    No state; gradients are never modified; a Tensor ``lr`` is never read on the host.

    Examples:
        >>> import torch
        >>> p, g = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [0.0, 5.0]])
        >>> sinkgd([p], [g], lr=0.1)
        >>> p  # every row and column of the direction has norm √2
        tensor([[-0.1414,  0.0000],
                [ 0.0000, -0.1414]])
    """
    for param, grad in zip(params, grads):
        direction = sr_sinkhorn(grad, L, eps)
        if weight_decay != 0:
            decay_weights_(param, lr, weight_decay)
        param.sub_(direction * lr)
