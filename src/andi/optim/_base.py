"""Validation helpers and argument documentation shared by the optimizer classes."""

from __future__ import annotations

import math
from collections.abc import Iterable

from torch import Tensor

__all__ = ["check_distinct_params", "check_lr", "check_range", "lr_value"]


def lr_value(lr: float | Tensor) -> float:
    """The learning rate as a Python float (for validation only; never called inside ``step``)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)}")
        return float(lr.detach().reshape(()).item())
    return float(lr)


def check_lr(lr: float | Tensor) -> None:
    value = lr_value(lr)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid learning rate: {value}")


def check_range(name: str, value: float, low: float, high: float, *, high_inclusive: bool = False) -> None:
    """Raise ``ValueError(f"Invalid {name}: {value}")`` unless ``low <= value < high`` (or ``<= high``)."""
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and ok):
        raise ValueError(f"Invalid {name}: {value}")


def check_distinct_params(params: Iterable[Tensor]) -> None:
    seen: set[int] = set()
    for p in params:
        if id(p) in seen:
            raise ValueError(
                "optimizer parameter group contains the same tensor twice; each parameter may appear only once"
            )
        seen.add(id(p))


_FOREACH_DOC = """foreach (bool, optional): use the multi-tensor (``torch._foreach_*``) implementation.
            ``None`` picks it on accelerators, and on CPU only for many small tensors (measured: the single-tensor
            loop is faster on CPU for large ones, see ``andi.functional.andi.default_foreach``)."""
_MAXIMIZE_DOC = """maximize (bool): maximize the objective instead of minimizing it (uses Φ(−G) = −Φ(G))."""

DOCS = {"foreach": _FOREACH_DOC, "maximize": _MAXIMIZE_DOC}

