r"""The author's "D-Muon" of the paper's v7 experiment, as a function — for the v7 replay only. D-Muon as its paper
defines it is the registry's ``d-muon`` (:mod:`andi.functional.muon` with the AdamW-matched scale, plus AdamW).

Transcribed from the class ``DMuon`` of ``VladimerKhasia/ANDI:experiments/ANDI.py`` (commit 5cb1d03). Per tensor
:math:`\theta` with gradient :math:`G`, learning rate :math:`\eta` and the group's weight decay :math:`\lambda`:

.. math::
    \begin{aligned}
    &\theta \leftarrow \theta(1 - \eta\lambda) \quad (\lambda \ne 0) \\
    &\textbf{if } \theta \text{ is 2-D with both sides} > 32 \textbf{ or 4-D with more than 32 outputs}: \\
    &\qquad M_t = \mu M_{t-1} + G_t \ (M_0 = 0),\quad O_t = \mathrm{NS5}(M_t \text{ viewed as } (d_1, -1)),\quad
        \theta \leftarrow \theta - \eta\sqrt{\max(1, m/n)}\, O_t \\
    &\textbf{else (AdamW, } \beta = (0.8, 0.999)\textbf{)}: \\
    &\qquad m_t = \beta_1 m_{t-1} + (1-\beta_1) G_t,\quad v_t = \beta_2 v_{t-1} + (1-\beta_2) G_t^2,\quad
        \theta \leftarrow \theta - \eta\,\frac{\sqrt{1-\beta_2^t}}{1-\beta_1^t}\,\frac{m_t}{\sqrt{v_t} + 10^{-8}}
    \end{aligned}

Momentum is classic (not Nesterov, not EMA) and Newton–Schulz runs on the momentum buffer with the script's
coefficients and operation order (:func:`~andi.functional.script_muon.script_newton_schulz_5`). The script's NS
takes a bf16 copy of fp32 CUDA tensors; on CPU it instead divides the momentum buffer *in place* by its norm (a
quirk that rescales the stored momentum). We reproduce the CUDA semantics everywhere: a bf16 copy, the buffer left
as it is (``bf16_newton_schulz=False`` keeps fp32 without the in-place division). The AdamW branch adds ``eps`` to
:math:`\sqrt{v_t}` before the bias correction, as the script does.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .script_muon import script_newton_schulz_5

__all__ = ["SCRIPT_DMUON_MIN_SIDE", "script_dmuon", "uses_script_dmuon_newton_schulz"]

#: The script orthogonalizes 2-D tensors with both sides ``> 32`` and 4-D ones with ``> 32`` outputs.
SCRIPT_DMUON_MIN_SIDE = 32
_ADAM_EPS = 1e-8


def uses_script_dmuon_newton_schulz(shape: torch.Size | tuple[int, ...]) -> bool:
    """Whether the v7 script's D-Muon sends a tensor of ``shape`` to its Newton–Schulz branch (else to AdamW).

    Examples:
        >>> uses_script_dmuon_newton_schulz((64, 128)), uses_script_dmuon_newton_schulz((32, 128))
        (True, False)
        >>> uses_script_dmuon_newton_schulz((64, 3, 3, 3)), uses_script_dmuon_newton_schulz((128,))
        (True, False)
    """
    if len(shape) == 2:
        return shape[0] > SCRIPT_DMUON_MIN_SIDE and shape[1] > SCRIPT_DMUON_MIN_SIDE
    return len(shape) == 4 and shape[0] > SCRIPT_DMUON_MIN_SIDE


def script_dmuon(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    exp_avgs: list[Tensor | None],
    exp_avg_sqs: list[Tensor | None],
    steps: list[int | None],
    *,
    lr: float,
    weight_decay: float = 0.01,
    momentum: float = 0.95,
    ns_steps: int = 5,
    adamw_betas: tuple[float, float] = (0.8, 0.999),
    bf16_newton_schulz: bool = True,
) -> None:
    """Apply one step of the v7 script's D-Muon in place (update rule in the module docstring).

    State lists hold ``None`` for a tensor without that state yet; created tensors (and the AdamW step count, an
    ``int``) are written back into the lists. Gradients are never modified.

    Examples:
        >>> p, g = torch.zeros(3), torch.tensor([1.0, -2.0, 3.0])  # a vector: the AdamW branch
        >>> bufs, m, v, t = [None], [None], [None], [None]
        >>> script_dmuon([p], [g], bufs, m, v, t, lr=0.1, weight_decay=0.0)
        >>> p, t  # the first AdamW step moves by lr·sign(G) (up to eps)
        (tensor([-0.1000,  0.1000, -0.1000]), [1])
    """
    beta1, beta2 = adamw_betas
    for i, (param, grad) in enumerate(zip(params, grads)):
        if weight_decay != 0:
            param.mul_(1 - lr * weight_decay)
        if uses_script_dmuon_newton_schulz(param.shape):
            if momentum_buffers[i] is None:
                momentum_buffers[i] = torch.zeros_like(param)
            buf = momentum_buffers[i]
            buf.mul_(momentum).add_(grad)
            flat = buf.view(param.size(0), -1)
            ortho = script_newton_schulz_5(flat, steps=ns_steps, bf16=bf16_newton_schulz)
            scale = max(1, flat.size(0) / flat.size(1)) ** 0.5
            param.add_(ortho.view_as(param), alpha=-lr * scale)
            continue
        if steps[i] is None:
            steps[i] = 0
            exp_avgs[i] = torch.zeros_like(param)
            exp_avg_sqs[i] = torch.zeros_like(param)
        steps[i] += 1
        exp_avg, exp_avg_sq = exp_avgs[i], exp_avg_sqs[i]
        exp_avg.mul_(beta1).add_(grad, alpha=1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        denom = exp_avg_sq.sqrt().add_(_ADAM_EPS)
        step_size = lr * math.sqrt(1 - beta2 ** steps[i]) / (1 - beta1 ** steps[i])
        param.addcdiv_(exp_avg, denom, value=-step_size)
