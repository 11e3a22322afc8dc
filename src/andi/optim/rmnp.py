r"""RMNP — row-normalized momentum.

Reference: Deng et al., "RMNP" arXiv 2603.20527 (ICML 2026); code ``Dominator-Index/RMNP``
(``GPT-2/RMNP/optimizers/rmnp.py``). The released code hard-codes CUDA, a bf16 flat update buffer and ``WORLD_SIZE``
and is not on PyPI, so the update is re-implemented here from that file (``family.md`` §6).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor

from ..functional.normalize import row_normalize
from ._base import MatrixOptimizer, check_lr, check_range, evaluate_closure, params_with_grads

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
    AdamW on the rest, like Muon (``andi.create_optimizer("rmnp", model, ...)``).

    Args:
        params: parameters with ``ndim >= 2`` or parameter groups.
        lr (float or Tensor): η (default 0.02, the code's).
        momentum (float): μ in [0, 1) (default 0.95).
        nesterov (bool): default True.
        weight_decay (float): decoupled λ (default 0).
        eps (float): lower clamp of the row norms (default 1e-12, ``F.normalize``'s).
    """

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
        if nesterov and momentum == 0:
            raise ValueError("Nesterov momentum requires a momentum > 0")
        if not eps > 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(
            params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, eps=eps)
        )

    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> float | Tensor | None:
        """Perform one optimization step (``closure`` re-evaluates the loss with grad enabled)."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            lr, mu = group["lr"], group["momentum"]
            for p, grad in params_with_grads(group, "RMNP"):
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(grad)
                update = grad.add(buf, alpha=mu) if group["nesterov"] else buf
                direction = row_normalize(update, group["eps"])
                m = p.shape[0]
                n = p.numel() // m
                if group["weight_decay"] != 0:
                    p.mul_(1 - lr * group["weight_decay"])
                p.sub_(direction * (lr * math.sqrt(max(1.0, m / n))))
        return loss
