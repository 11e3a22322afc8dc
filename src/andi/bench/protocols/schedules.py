r"""Learning-rate multipliers for the benchmark (one shape for every arm: ``docs/design/protocol.md`` (c), Schedule).

Each schedule maps the 0-based step ``s`` of a run of ``T`` steps to a factor :math:`\\lambda(s)` that
multiplies every param group's initial lr (so hybrid optimizers' auxiliary AdamW groups follow the same
shape). With :math:`W = \\text{warmup steps}` and :math:`D = \\text{decay steps}`:

* ``constant``: :math:`\\lambda(s) = 1` (the paper's protocol);
* ``wsd`` (warmup-stable-decay): :math:`(s+1)/W` for :math:`s < W`, then 1, then
  :math:`(T - s)/D` over the last :math:`D` steps (linear decay to 0, reached after the last step);
* ``cosine``: the same warmup, then :math:`\\tfrac12\\bigl(1 + \\cos(\\pi (s - W)/(T - W))\\bigr)`.

:math:`W = \\lceil \\text{warmup\\_frac}\\cdot T \\rceil` and :math:`D = \\lceil \\text{decay\\_frac}\\cdot T \\rceil`
(the protocol's 2 % and 40 % of 2,500 steps are 50 and 1,000).

The author's v7 experiment (``experiments/ANDI.py`` @5cb1d03) has its own two, reproduced to the last bit with
:math:`W = \lfloor 0.1\,T \rfloor` (``warmup_frac``), :math:`C = \lfloor 0.2\,T \rfloor` (``decay_frac``) and
:math:`S = T - W - C`:

* ``wsd-v7`` (its ANDI and D-Muon): :math:`s/W` for :math:`s < W` (the first step has lr 0), then 1, then
  :math:`\max(0, 1 - (s - W - S)/C)` from step :math:`W + S` on;
* ``cosine-v7`` (its AdamW): :math:`s/W` for :math:`s < W`, then
  :math:`0.01 + 0.495\,(1 + \cos(\pi (s - W)/(T - W)))` (a floor of 1 %).

Use with
``torch.optim.lr_scheduler.LambdaLR(optimizer, make_schedule(...))`` and call ``scheduler.step()`` after
every ``optimizer.step()``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["SCHEDULES", "lr_scheduler", "make_schedule"]

SCHEDULES = ("constant", "wsd", "cosine", "wsd-v7", "cosine-v7")
_V7_MIN_LR_RATIO = 0.01


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
    if name.endswith("-v7"):
        return _v7_schedule(name, total_steps, warmup_frac, decay_frac)
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


def _v7_schedule(name: str, total: int, warmup_frac: float, decay_frac: float) -> Callable[[int], float]:
    """The v7 script's ``get_wsd_schedule`` / ``get_cosine_schedule`` (its operations, in its order)."""
    for what, frac in (("warmup_frac", warmup_frac), ("decay_frac", decay_frac)):
        if not 0.0 <= frac <= 1.0 or not math.isfinite(frac):
            raise ValueError(f"{what} must be in [0, 1], got {frac}")
    warmup = int(total * warmup_frac)
    if name == "wsd-v7":
        cooldown = int(total * decay_frac)
        stable = total - warmup - cooldown
        if stable < 0:
            raise ValueError(f"wsd-v7: warmup ({warmup} steps) + cooldown ({cooldown} steps) exceed the run ({total})")

        def wsd(step: int) -> float:
            if step < warmup:
                return float(step) / float(max(1, warmup))
            if step < warmup + stable:
                return 1.0
            return max(0.0, 1.0 - (step - (warmup + stable)) / float(max(1, cooldown)))

        return wsd

    def cosine(step: int) -> float:
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        return _V7_MIN_LR_RATIO + 0.5 * (1.0 - _V7_MIN_LR_RATIO) * (1.0 + math.cos(math.pi * progress))

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
