r"""The last two operations of every update in the comparison family, for a float or a Tensor learning rate.

.. math::
    \theta \leftarrow \theta\,(1 - \eta\lambda), \qquad \theta \leftarrow \theta - \eta\,s\,U

A Tensor :math:`\eta` is used as a tensor (never read back with ``.item()``), so a step on an accelerator does not
wait for the host and a scheduler that updates the tensor in place never triggers a recompile; a float :math:`\eta`
is folded into ``alpha`` exactly as ``torch.optim`` does.
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["add_lr_scaled_", "decay_weights_"]


def decay_weights_(param: Tensor, lr: float | Tensor, weight_decay: float) -> None:
    r"""Decoupled weight decay in place: :math:`\theta \leftarrow \theta(1 - \eta\lambda)`."""
    param.mul_(1 - lr * weight_decay)


def add_lr_scaled_(param: Tensor, update: Tensor, lr: float | Tensor, scale: float = 1.0) -> None:
    r""":math:`\theta \leftarrow \theta - \eta\,s\,U` in place (``s`` a Python float such as Muon's shape factor).

    Examples:
        >>> import torch
        >>> p = torch.ones(2)
        >>> add_lr_scaled_(p, torch.tensor([1.0, 2.0]), torch.tensor(0.5), scale=2.0)
        >>> p
        tensor([ 0., -1.])
    """
    if isinstance(lr, Tensor):
        param.addcmul_(update, lr, value=-scale)
    else:
        param.add_(update, alpha=-(lr * scale))
