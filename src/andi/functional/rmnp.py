r"""The functional RMNP step (row-normalized momentum): ``rmnp(params, grads, momentum_buffers, *, lr, ...)``.

For every tensor with gradient :math:`G` viewed as :math:`m \times n`:

.. math::
    \begin{aligned}
    &M_t = \mu M_{t-1} + G_t \quad (M_0 = 0) \\
    &U_t = G_t + \mu M_t \text{ if nesterov else } M_t \\
    &R_{i,:} = U_{i,:} / \max(\|U_{i,:}\|_2, \epsilon) \\
    &\theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\sqrt{\max(1, m/n)}\; R
    \end{aligned}

The released code's form (classic momentum, ``F.normalize(dim=-1)``, Muon's shape factor
:func:`~andi.functional.muon.muon_shape_scale`). Reference: Deng et al., "RMNP", arXiv 2603.20527; code
``Dominator-Index/RMNP`` (``GPT-2/RMNP/optimizers/rmnp.py``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .lr import decay_weights_
from .muon import muon_shape_scale
from .normalize import row_normalize

__all__ = ["rmnp"]


def rmnp(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float = 0.95,
    nesterov: bool = True,
    weight_decay: float = 0.0,
    eps: float = 1e-12,
) -> None:
    r"""Apply one RMNP step in place to ``params`` (update rule in the module docstring).

    ``momentum_buffers[i]`` may be ``None``: a zero buffer is then created and stored back into the list. Gradients
    are never modified; a Tensor ``lr`` is never read on the host.

    Examples:
        >>> p, g = torch.zeros(2, 2), torch.tensor([[3.0, 4.0], [0.0, 2.0]])
        >>> bufs = [None]
        >>> rmnp([p], [g], bufs, lr=0.1, momentum=0.5)
        >>> p  # −η · rows of G + μG = 1.5 G scaled to unit norm
        tensor([[-0.0600, -0.0800],
                [ 0.0000, -0.1000]])
    """
    for i, (param, grad) in enumerate(zip(params, grads)):
        if momentum_buffers[i] is None:
            momentum_buffers[i] = torch.zeros_like(grad, memory_format=torch.preserve_format)
        buf = momentum_buffers[i]
        buf.mul_(momentum).add_(grad)
        update = grad.add(buf, alpha=momentum) if nesterov else buf
        direction = row_normalize(update, eps)
        if weight_decay != 0:
            decay_weights_(param, lr, weight_decay)
        param.sub_(direction * (lr * muon_shape_scale(param.shape)))
