r"""SinkGD — stateless gradient descent on the Sinkhorn-normalized gradient.

Reference: M. Scetbon, C. Ma, W. Gong, E. Meeds, "Gradient Multi-Normalization for Stateless and Scalable LLM
Training", arXiv 2502.06742 (NeurIPS 2025). No official code or PyPI package exists, so it is written here
(``docs/design/family.md``, SinkGD); ``jdinalt/forgather``'s ``sinkgd.py`` was read for the norm clamp.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..functional.normalize import SINKHORN_EPS
from ..functional.sinkgd import sinkgd
from ._base import MatrixOptimizer, check_lr, check_range

__all__ = ["SinkGD"]


class SinkGD(MatrixOptimizer):
    r"""SinkGD: :math:`\theta \leftarrow \theta(1-\eta\lambda) - \eta\,\mathrm{SR\text{-}Sinkhorn}_L(G)`.

    .. math::
        \begin{aligned}
        &X = G_t \text{ viewed as } (m, n) = (d_1, d_2\cdots d_k) \\
        &\textbf{repeat } L \textbf{ times:}\quad X \leftarrow \sqrt{n}\,X/\|X_{i,:}\|,\quad
            X \leftarrow \sqrt{m}\,X/\|X_{:,j}\| \\
        &\theta_t = \theta_{t-1}(1-\eta\lambda) - \eta X
        \end{aligned}

    No momentum and no state (SGD's memory). At the fixed point every entry of :math:`X` has RMS 1, so the lr is on
    Adam's per-entry scale. Paper recipe: SinkGD on the hidden linear layers, Adam for embeddings, norms and the output
    layer (``andi.create_optimizer("sinkgd", model, ...)`` routes exactly so). Choices stated here:

    - **scale**: the paper's (``‖X‖_F = √(mn)``); ``forgather``'s port divides by ``√(mn)`` instead
      (``normalize_output=True``), which changes the meaning of the lr by that factor;
    - **reshape**: tensors with ``k >= 3`` dims are viewed as ``(d1, -1)`` like every optimizer in this package
      (``forgather`` uses ``(-1, d_k)``);
    - **weight decay**: decoupled, ``θ(1 − ηλ)``; the paper has none (default 0);
    - fp16/bf16 gradients are normalized in fp32.

    The update rule is :func:`andi.functional.sinkgd.sinkgd`.

    Args:
        params: parameters with ``ndim >= 2`` or parameter groups.
        lr (float or Tensor): η (default 1e-3).
        L (int): Sinkhorn iterations (default 5, the paper's; ``L=1`` is the cheaper variant of its Table 4).
        weight_decay (float): decoupled λ (default 0).
        eps (float): lower clamp of every row/column norm (default 1e-8).
    """

    _functional = staticmethod(sinkgd)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        L: int = 5,
        weight_decay: float = 0.0,
        eps: float = SINKHORN_EPS,
    ) -> None:
        check_lr(lr)
        if isinstance(L, bool) or not isinstance(L, int) or L < 1:
            raise ValueError(f"Invalid number of Sinkhorn iterations L: {L} (expected an int >= 1)")
        check_range("weight_decay value", weight_decay, 0.0, float("inf"))
        if not eps > 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        super().__init__(params, dict(lr=lr, L=L, weight_decay=weight_decay, eps=eps))
