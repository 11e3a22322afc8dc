r"""RMNP — row-normalized momentum.

Reference: Deng et al., "RMNP" arXiv 2603.20527 (ICML 2026); code ``Dominator-Index/RMNP``
(``GPT-2/RMNP/optimizers/rmnp.py``). The released code hard-codes CUDA, a bf16 flat update buffer and ``WORLD_SIZE``
and is not on PyPI, so the update is re-implemented here from that file (``docs/design/family.md``, RMNP).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..functional.rmnp import rmnp
from ._base import MatrixOptimizer, check_lr, check_range

__all__ = ["RMNP"]


class RMNP(MatrixOptimizer):
    r"""RMNP: Nesterov momentum, then every row of the ``(d1, -1)`` view normalized to unit norm.

    .. math::
        \begin{aligned}
        &M_t = \mu M_{t-1} + G_t \quad (M_0 = 0) \\
        &U_t = G_t + \mu M_t \text{ if nesterov else } M_t \\
        &R_{i,:} = U_{i,:} / \max(\|U_{i,:}\|_2, \epsilon) \qquad (U \text{ viewed as } m\times n) \\
        &\theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\sqrt{\max(1, m/n)}\; R
        \end{aligned}

    This is the released code's form (classic momentum, ``F.normalize(dim=-1)``, Muon's shape factor, rows never
    transposed); the paper writes EMA momentum, which only changes the Nesterov mix because row normalization is
    per-row scale-invariant. One state tensor per parameter (``momentum_buffer``). Use it for hidden matrices with
    AdamW on the rest, like Muon (``andi.create_optimizer("rmnp", model, ...)``). The update rule is
    :func:`andi.functional.rmnp.rmnp`.

    Args:
        params: parameters with ``ndim >= 2`` or parameter groups.
        lr (float or Tensor): η (default 0.02, the code's).
        momentum (float): μ in [0, 1) (default 0.95).
        nesterov (bool): default True.
        weight_decay (float): decoupled λ (default 0).
        eps (float): lower clamp of the row norms (default 1e-12, ``F.normalize``'s).
    """

    _functional = staticmethod(rmnp)
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 0.02,
        momentum: float = 0.95,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        eps: float = 1e-12,
    ) -> None:
        check_lr(lr)
        check_range("momentum value", momentum, 0.0, 1.0)
        check_range("weight_decay value", weight_decay, 0.0, float("inf"))
        if not eps > 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, eps=eps))
