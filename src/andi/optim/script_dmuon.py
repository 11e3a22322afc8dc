r"""The author's "D-Muon" of the paper's v7 experiment (``experiments/ANDI.py`` @5cb1d03) — for the v7 replay only.

It is the registry's ``d-muon-v7``. D-Muon as Semenov et al. (arXiv 2509.01440) define it — Muon with decoupled
weight decay on every parameter and its update RMS matched to AdamW's (Liu et al., arXiv 2502.16982), one lr for
both parts — is the registry's ``d-muon``. The author's class departs from that definition in its scale
(:math:`\sqrt{\max(1, m/n)}`, KellerJordan's, so its lr is not AdamW's), its momentum (classic, no Nesterov), its
split (by shape: every 2-D tensor with both sides > 32 — token and position embeddings and the LM head included —
goes to Newton–Schulz) and its AdamW's β₁ = 0.8 (Semenov et al.'s setting). Its weight decay applies to whatever
the parameter groups say: the v7 script passes :func:`andi.weight_decay_groups`, so embeddings, norms and biases do
not decay although the class would decay them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..functional.script_dmuon import script_dmuon, uses_script_dmuon_newton_schulz
from ._base import FunctionalOptimizer, check_lr, check_range

__all__ = ["ScriptDMuon", "uses_script_dmuon_newton_schulz"]


class ScriptDMuon(FunctionalOptimizer):
    r"""The v7 script's ``DMuon(params, lr=0.02, momentum=0.95, weight_decay=0.01, ns_steps=5,
    adamw_betas=(0.8, 0.999))`` (replay only).

    .. math::
        \begin{aligned}
        &\theta \leftarrow \theta(1 - \eta\lambda) \\
        &\text{NS branch: } M_t = \mu M_{t-1} + G_t,\ \theta \leftarrow \theta - \eta\sqrt{\max(1, m/n)}\,
            \mathrm{NS5}(M_t) \\
        &\text{AdamW branch: } \theta \leftarrow \theta - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,
            \frac{m_t}{\sqrt{v_t} + 10^{-8}}
        \end{aligned}

    The branch is chosen by shape (:func:`uses_script_dmuon_newton_schulz`). State: ``momentum_buffer`` on the NS
    branch; ``step`` (an int), ``exp_avg``, ``exp_avg_sq`` on the AdamW branch. Newton–Schulz runs on a bf16 copy of
    fp32 buffers on every device, as the script does on CUDA (on CPU the script would divide the momentum buffer in
    place; ``bf16_newton_schulz=False`` keeps fp32 instead). The update rule is
    :func:`andi.functional.script_dmuon.script_dmuon`.

    Examples:
        >>> import torch, andi
        >>> model = torch.nn.Linear(64, 64)
        >>> opt = ScriptDMuon(andi.weight_decay_groups(model, 0.01), lr=0.02)
        >>> model(torch.randn(4, 64)).square().mean().backward()
        >>> opt.step()
    """

    _functional = staticmethod(script_dmuon)
    _state_keys = ("momentum_buffer", "exp_avg", "exp_avg_sq", "step")

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float = 0.02,
        momentum: float = 0.95,
        weight_decay: float = 0.01,
        ns_steps: int = 5,
        adamw_betas: tuple[float, float] = (0.8, 0.999),
        bf16_newton_schulz: bool = True,
    ) -> None:
        _check_float_lr(lr)
        check_range("momentum value", momentum, 0.0, 1.0)
        check_range("weight_decay value", weight_decay, 0.0, float("inf"))
        for beta in adamw_betas:
            check_range("beta parameter", beta, 0.0, 1.0)
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 0:
            raise ValueError(f"Invalid ns_steps: {ns_steps}")
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            ns_steps=ns_steps,
            adamw_betas=tuple(adamw_betas),
            bf16_newton_schulz=bool(bf16_newton_schulz),
        )
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        if "lr" in param_group:
            _check_float_lr(param_group["lr"])
        super().add_param_group(param_group)


def _check_float_lr(lr: float) -> None:
    if isinstance(lr, Tensor):
        raise ValueError("ScriptDMuon takes a float lr, as the script does (its AdamW step size is a Python number)")
    check_lr(lr)
