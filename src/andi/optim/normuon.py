r"""NorMuon — Muon with a row-wise second moment of the orthogonalized update.

Reference: Z. Li, L. Liu, C. Liang, W. Chen, T. Zhao, "NorMuon: Making Muon more efficient and scalable",
arXiv 2510.05491; official code ``microsoft/dion:dion/normuon.py``. ``pytorch-optimizer`` (>= 4.1) ships a faithful
``NorMuon``, and ``tests/optim/test_library_baselines.py`` checks this class against it step for step; it is
re-expressed over Muon's direction (:func:`andi.functional.normuon.normuon`) because the library's step overwrites
``p.grad`` (its Nesterov mix is ``grad.lerp_``), which this package never does, and because its groups need a
``use_muon`` flag and carry a built-in AdamW that :class:`andi.optim.RoutedOptimizer` already provides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..functional.newton_schulz import DEFAULT_NS_STEPS, NS5_COEFFICIENTS, Coefficients
from ..functional.normuon import normuon
from ._base import MatrixOptimizer, check_lr, check_range

__all__ = ["NorMuon"]


class NorMuon(MatrixOptimizer):
    r"""NorMuon for weights with ``ndim >= 2`` (viewed as ``(d1, -1)``).

    .. math::
        \begin{aligned}
        &M_t = \mu M_{t-1} + (1-\mu)G_t,\quad U_t = (1-\mu)G_t + \mu M_t \text{ (Nesterov) or } M_t \\
        &O_t = \mathrm{NS5}(U_t) \\
        &v_t = \beta_2 v_{t-1} + (1-\beta_2)\,\mathrm{mean}_j\, O_{t,ij}^2 \quad (\text{per row}, v_0 = 0) \\
        &\hat O_t = O_t / (\sqrt{v_t} + \epsilon),\quad
            \hat O_t \leftarrow \hat O_t\,\|O_t\|_F / \max(\|\hat O_t\|_F, \epsilon) \\
        &\theta_t = \theta_{t-1}(1-\eta\lambda) - \eta\sqrt{\max(1, m/n)}\;\hat O_t
        \end{aligned}

    The Frobenius norm of the orthogonalized update is preserved (the official code's scaling; the paper's Alg. 1
    instead sets RMS 0.2). Momentum, Newton–Schulz and the lr shape factor are Muon's (:class:`andi.optim.Muon`), so
    NorMuon − Muon is exactly the row normalization — the ablation the benchmark wants. dion's defaults differ
    (classic momentum without Nesterov, Polar Express, lr·√(m/n) unclipped, wd 0.01); pass ``ns_coefficients``
    to use Polar Express. State: ``momentum_buffer`` and an ``m × 1`` ``second_momentum_buffer``. The update rule is
    :func:`andi.functional.normuon.normuon`.

    Args:
        params: parameters with ``ndim >= 2`` or parameter groups.
        lr (float or Tensor): η (default 0.02).
        momentum (float): μ (default 0.95).
        beta2 (float): decay of the row statistic (default 0.95, dion's ``muon_beta2``).
        weight_decay (float): decoupled λ (default 0).
        nesterov (bool): default True.
        eps (float): ε of the row normalization and the norm restore (default 1e-8, dion's).
        ns_steps (int): Newton–Schulz iterations (default 5).
        ns_coefficients: Newton–Schulz coefficients (default KellerJordan's). dion's Polar Express:
            ``ns_coefficients=POLAR_EXPRESS_COEFFICIENTS, ns_safety=1.02`` (the NS input-norm bound stays 1e-7;
            ``eps`` above is the row normalization's).
        ns_safety (float): Newton–Schulz safety factor (default 1).
    """

    _functional = staticmethod(normuon)
    _state_keys = ("momentum_buffer", "second_momentum_buffer")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 0.02,
        momentum: float = 0.95,
        beta2: float = 0.95,
        weight_decay: float = 0.0,
        nesterov: bool = True,
        eps: float = 1e-8,
        ns_steps: int = DEFAULT_NS_STEPS,
        ns_coefficients: Coefficients = NS5_COEFFICIENTS,
        ns_safety: float = 1.0,
    ) -> None:
        check_lr(lr)
        check_range("momentum value", momentum, 0.0, 1.0)
        check_range("beta2 value", beta2, 0.0, 1.0)
        check_range("weight_decay value", weight_decay, 0.0, float("inf"))
        if not eps > 0:
            raise ValueError(f"Invalid epsilon value: {eps}")
        if not 0 <= ns_steps < 100:
            raise ValueError(f"Invalid ns_steps: {ns_steps} (expected 0 <= ns_steps < 100)")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            beta2=beta2,
            weight_decay=weight_decay,
            nesterov=nesterov,
            eps=eps,
            ns_steps=ns_steps,
            ns_coefficients=ns_coefficients,
            ns_safety=ns_safety,
        )
        super().__init__(params, defaults)
