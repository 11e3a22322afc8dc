r"""The ANDI paper script's "Muon" — for replaying the paper only; it is **not** Muon.

Transcribed from ``VladimerKhasia/ANDI:ANDI.py`` (commit 29f90fe), functions ``newton_schulz_5`` and class ``Muon``,
and used by the paper with lr 0.02 (GPT) and 0.05 (SADDLE, CIFAR) on *every* parameter. How it departs from Muon as
published (``docs/design/family.md``, the script's Muon):

- Newton–Schulz is applied to the **raw gradient, before momentum** (Muon orthogonalizes the momentum);
- classic momentum 0.9 (``M ← 0.9M + X``), not EMA 0.95, so aligned steps grow to ~10× an orthogonal matrix;
- only tensors whose ``(d1, -1)`` view has **both sides > 32** are orthogonalized — this includes token/position
  embeddings and the LM head but not the first conv (64×27), the 16-wide autoencoder layers or the CIFAR head;
  everything else gets plain SGD-Nesterov at the same lr; no aux AdamW, no weight decay;
- NS runs in bf16 only for CUDA fp32 gradients, in the gradient's dtype otherwise (fp32 on CPU).

Label its curves "ANDI-script Muon", never "Muon". One deliberate difference from the script: on CPU the script
normalizes a *view of* ``p.grad`` in place (``X /= ‖X‖ + eps``), rescaling the caller's gradient; here the same
arithmetic runs on a copy, so updates are bit-identical and ``p.grad`` is left untouched.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from torch import Tensor

from ..functional.script_muon import SCRIPT_MUON_MIN_SIDE, script_muon, script_newton_schulz_5
from ._base import FunctionalOptimizer, check_lr, check_range

__all__ = ["SCRIPT_MUON_MIN_SIDE", "ScriptMuon", "script_newton_schulz_5"]


class ScriptMuon(FunctionalOptimizer):
    r"""The ANDI script's ``Muon(params, lr=0.02, momentum=0.9, nesterov=True, ns_steps=5)`` (replay only).

    .. math::
        \begin{aligned}
        &X_t = \mathrm{NS5}(G_t)\cdot\sqrt{\max(1, m/n)} \text{ if } m > 32 \text{ and } n > 32 \text{ for }
            G_t \text{ viewed as } (m, n), \text{ else } X_t = G_t \\
        &M_t = \mu M_{t-1} + X_t \quad (M_0 = 0),\qquad U_t = X_t + \mu M_t \text{ (nesterov) or } M_t \\
        &\theta_t = \theta_{t-1} - \eta\, U_t
        \end{aligned}

    See the module docstring for how this differs from Muon. State: ``momentum_buffer`` (zeros at the first step).
    The update rule is :func:`andi.functional.script_muon.script_muon`.
    """

    _functional = staticmethod(script_muon)
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 0.02,
        momentum: float = 0.9,
        nesterov: bool = True,
        ns_steps: int = 5,
    ) -> None:
        check_lr(lr)
        check_range("momentum value", momentum, 0.0, 1.0)
        if isinstance(ns_steps, bool) or not isinstance(ns_steps, int) or ns_steps < 0:
            raise ValueError(f"Invalid ns_steps: {ns_steps}")
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, ns_steps=ns_steps))
