"""The shape sets of the step benchmark: named sets (``gpt124m``, ``tiny``, ``square-sweep``, ...) and ``KxN^2`` /
``KxMxN``, each resolved into :class:`Case` lists; sets that are empty or cannot fit in memory are refused before any
arm runs."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch

__all__ = ["SHAPE_SETS", "Case", "gpt124m_shapes", "refuse_unfit", "resolve_shape_set"]

SHAPE_SETS = ("gpt124m", "32x4096^2", "8x1024^2", "square-sweep", "tiny")
_SWEEP_SIDES = (256, 512, 1024, 2048, 4096, 8192)
_CPU_SWEEP_CAP = 2048


# ----------------------------------------------------------------------------------------------------------------
# Shape sets
# ----------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One benchmark problem: a list of parameter shapes stepped together by one optimizer."""

    name: str
    shape_set: str
    shapes: tuple[tuple[int, ...], ...]

    @property
    def numel(self) -> int:
        return sum(math.prod(s) for s in self.shapes)


def gpt124m_shapes() -> list[tuple[int, ...]]:
    """Every parameter of GPT-2 small (124,439,808 elements; tied head), weights as ``nn.Linear`` (out, in)."""
    d, vocab, ctx, layers = 768, 50257, 1024, 12
    shapes: list[tuple[int, ...]] = [(vocab, d), (ctx, d)]
    for _ in range(layers):
        shapes += [
            (d,),
            (d,),  # ln_1
            (3 * d, d),
            (3 * d,),  # attn.c_attn
            (d, d),
            (d,),  # attn.c_proj
            (d,),
            (d,),  # ln_2
            (4 * d, d),
            (4 * d,),  # mlp.c_fc
            (d, 4 * d),
            (d,),
        ]  # mlp.c_proj
    return [*shapes, (d,), (d,)]  # ln_f


def resolve_shape_set(name: str, *, device_type: str = "cpu", max_side: int | None = None) -> list[Case]:
    """The cases of a shape set (``square-sweep`` has one case per side; the others have one case)."""
    if name == "gpt124m":
        return [Case(name, name, tuple(gpt124m_shapes()))]
    if name == "tiny":  # both branches of Φ, a conv filter, a small matrix and a scalar: seconds on any CPU
        return [Case(name, name, ((64, 48), (48,), (8, 8), (6, 3, 3, 3), (96, 32), ()))]
    if name == "square-sweep":
        cap = max_side if max_side is not None else (_CPU_SWEEP_CAP if device_type == "cpu" else max(_SWEEP_SIDES))
        sides = [n for n in _SWEEP_SIDES if n <= cap]
        if not sides:
            raise ValueError(f"square-sweep: max_side={cap} is below the smallest side {_SWEEP_SIDES[0]}")
        return [Case(f"{n}^2", name, ((n, n),)) for n in sides]
    if m := re.fullmatch(r"(\d+)x(\d+)\^2", name):
        k, n = int(m[1]), int(m[2])
        _refuse_empty(name, k, n)
        return [Case(name, name, ((n, n),) * k)]
    if m := re.fullmatch(r"(\d+)x(\d+)x(\d+)", name):
        k, r, c = int(m[1]), int(m[2]), int(m[3])
        _refuse_empty(name, k, r, c)
        return [Case(name, name, ((r, c),) * k)]
    raise ValueError(f"Unknown shape set {name!r}: expected one of {', '.join(SHAPE_SETS)}, 'KxN^2' or 'KxMxN'")


def _refuse_empty(name: str, *sizes: int) -> None:
    if 0 in sizes:
        raise ValueError(f"shape set {name!r} has no elements (a count or side of 0); counts and sides must be >= 1")


#: Tensors of a case's size an arm may hold at once: parameters, gradients, up to two state tensors, workspace.
_RESIDENT_COPIES = 6


def refuse_unfit(
    shape_sets: Sequence[str], device: torch.device, dtype: torch.dtype, max_side: int | None = None
) -> None:
    """Raise ``ValueError`` before any arm runs when a case cannot fit in the device's free memory."""
    if device.type == "cuda":
        free = torch.cuda.mem_get_info(device)[0]
    else:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return
    itemsize = torch.empty((), dtype=dtype).element_size()
    for name in shape_sets:
        for case in resolve_shape_set(name, device_type=device.type, max_side=max_side):
            needed = _RESIDENT_COPIES * case.numel * itemsize
            if needed > free:
                raise ValueError(
                    f"shape set {name!r} ({case.name}): {case.numel:,} elements need about {needed / 2**30:.1f} GiB "
                    f"on {device}, {free / 2**30:.1f} GiB is free; choose smaller shapes"
                )
