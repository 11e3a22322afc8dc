r"""The ANDI paper script's "Muon" — for replaying the paper only; it is **not** Muon.

Transcribed from ``VladimerKhasia/ANDI:ANDI.py`` (commit 29f90fe), functions ``newton_schulz_5`` and class ``Muon``,
and used by the paper with lr 0.02 (GPT) and 0.05 (SADDLE, CIFAR) on *every* parameter. How it departs from Muon as
published (``family.md`` §4):

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

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._base import check_lr, check_range, evaluate_closure, params_with_grads

__all__ = ["SCRIPT_MUON_MIN_SIDE", "ScriptMuon", "script_newton_schulz_5"]

#: The script orthogonalizes a tensor only when both sides of its (d1, -1) view exceed this (``> 32``).
SCRIPT_MUON_MIN_SIDE = 32
_A, _B, _C = (3.4445, -4.7750, 2.0315)


def script_newton_schulz_5(G: Tensor, steps: int = 5, eps: float = 1e-7) -> Tensor:
    """``newton_schulz_5`` of the script, operation for operation, without writing into ``G``.

    The norm is taken *before* the transpose and the iteration computes ``B = b·A + (c·A) @ A`` exactly as the
    script's ``b * A + c * A @ A`` parses; bf16 only for CUDA fp32 inputs.
    """
    if G.ndim != 2:
        raise ValueError(f"script_newton_schulz_5 needs a matrix, got shape {tuple(G.shape)}")
    X = G.bfloat16() if G.is_cuda and G.dtype == torch.float32 else G
    X = X / (X.norm() + eps)  # the script divides in place; the values are the same
    transposed = G.size(0) > G.size(1)
    if transposed:
        X = X.T
    for _ in range(steps):
        A = X @ X.T
        B = _B * A + _C * A @ A
        X = _A * X + B @ X
    if transposed:
        X = X.T
    return X.to(G.dtype)


class ScriptMuon(Optimizer):
    r"""The ANDI script's ``Muon(params, lr=0.02, momentum=0.9, nesterov=True, ns_steps=5)`` (replay only).

    .. math::
        \begin{aligned}
        &X_t = \mathrm{NS5}(G_t)\cdot\sqrt{\max(1, m/n)} \text{ if } m > 32 \text{ and } n > 32 \text{ for }
            G_t \text{ viewed as } (m, n), \text{ else } X_t = G_t \\
        &M_t = \mu M_{t-1} + X_t \quad (M_0 = 0),\qquad U_t = X_t + \mu M_t \text{ (nesterov) or } M_t \\
        &\theta_t = \theta_{t-1} - \eta\, U_t
        \end{aligned}

    See the module docstring for how this differs from Muon. State: ``momentum_buffer`` (zeros at the first step).
    """

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

    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> float | Tensor | None:
        """Perform one optimization step (``closure`` re-evaluates the loss with grad enabled)."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            mom = group["momentum"]
            for p, g in params_with_grads(group, "ScriptMuon"):
                g_final = g
                if g.ndim > 1:
                    g_mat = g.reshape(g.shape[0], -1)
                    if g_mat.size(0) > SCRIPT_MUON_MIN_SIDE and g_mat.size(1) > SCRIPT_MUON_MIN_SIDE:
                        g_orth = script_newton_schulz_5(g_mat, steps=group["ns_steps"])
                        scale_factor = max(1, g_mat.size(0) / g_mat.size(1)) ** 0.5
                        g_final = g_orth.view(g.shape) * scale_factor
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mom).add_(g_final)
                update = g_final.add(buf, alpha=mom) if group["nesterov"] else buf
                lr = group["lr"]
                p.add_(update, alpha=-(lr.item() if isinstance(lr, Tensor) else lr))
        return loss
