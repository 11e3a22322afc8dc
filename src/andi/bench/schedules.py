"""Learning-rate multipliers for the benchmark (one shape for every arm: ``docs/design/protocol.md`` (c), Schedule).

Each schedule maps the 0-based step ``s`` of a run of ``T`` steps to a factor :math:`\\lambda(s)` that
multiplies every param group's initial lr (so hybrid optimizers' auxiliary AdamW groups follow the same
shape). With :math:`W = \\text{warmup steps}` and :math:`D = \\text{decay steps}`:

* ``constant``: :math:`\\lambda(s) = 1` (the paper's protocol);
* ``wsd`` (warmup-stable-decay): :math:`(s+1)/W` for :math:`s < W`, then 1, then
  :math:`(T - s)/D` over the last :math:`D` steps (linear decay to 0, reached after the last step);
* ``cosine``: the same warmup, then :math:`\\tfrac12\\bigl(1 + \\cos(\\pi (s - W)/(T - W))\\bigr)`.

:math:`W = \\lceil \\text{warmup\\_frac}\\cdot T \\rceil` and :math:`D = \\lceil \\text{decay\\_frac}\\cdot T \\rceil`
(the protocol's 2 % and 40 % of 2,500 steps are 50 and 1,000). Use with
``torch.optim.lr_scheduler.LambdaLR(optimizer, make_schedule(...))`` and call ``scheduler.step()`` after
every ``optimizer.step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["SCHEDULES", "lr_scheduler", "make_schedule"]

SCHEDULES = ("constant", "wsd", "cosine")


def _frac_steps(frac: float, total: int, what: str) -> int:
    if not 0.0 <= frac <= 1.0 or not math.isfinite(frac):
        raise ValueError(f"{what} must be in [0, 1], got {frac}")
    return math.ceil(round(frac * total, 9))


def make_schedule(
    name: str, total_steps: int, *, warmup_frac: float = 0.02, decay_frac: float = 0.4
) -> Callable[[int], float]:
    """The multiplier :math:`\\lambda(s)` of schedule ``name`` for a run of ``total_steps`` steps."""
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; expected one of {SCHEDULES}")
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps}")
    if name == "constant":
        return lambda step: 1.0
    warmup = _frac_steps(warmup_frac, total_steps, "warmup_frac")
    if name == "wsd":
        decay = _frac_steps(decay_frac, total_steps, "decay_frac")
        if warmup + decay > total_steps:
            raise ValueError(
                f"wsd: warmup ({warmup} steps) + decay ({decay} steps) exceed the run ({total_steps} steps)"
            )

        def wsd(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            if step >= total_steps - decay:
                return max(0.0, (total_steps - step) / decay)
            return 1.0

        return wsd

    if warmup >= total_steps:
        raise ValueError(f"cosine: warmup ({warmup} steps) must be shorter than the run ({total_steps} steps)")

    def cosine(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / (total_steps - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return cosine


def lr_scheduler(
    optimizer: torch.optim.Optimizer,
    name: str,
    total_steps: int,
    *,
    warmup_frac: float = 0.02,
    decay_frac: float = 0.4,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``LambdaLR`` applying :func:`make_schedule` to every param group of ``optimizer``."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, make_schedule(name, total_steps, warmup_frac=warmup_frac, decay_frac=decay_frac)
    )
