"""The optimizers ``andi-bench step`` times (:mod:`andi.bench.stepbench`): built-in arms and the registry's.

Built-in arms are ANDI's paths (single-tensor, foreach, compiled, fused Triton) and the torch baselines. Every other
registry entry (:data:`andi.optim.registry.OPTIMIZERS`) becomes an arm ``reg:<name>`` built by
:func:`andi.create_optimizer` at the entry's own default lr, so a new entry is timed without touching this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from andi.optim.registry import OPTIMIZERS, create_optimizer, list_optimizers

__all__ = ["REGISTRY_PREFIX", "Arm", "available_arms", "baseline_arm", "default_arms", "registry_arms"]

#: Name prefix of the arms derived from the registry.
REGISTRY_PREFIX = "reg:"
#: Registry entries already timed as built-in arms (ANDI's paths, AdamW, SGD).
_BUILT_IN_ENTRIES = frozenset({"andi", "adamw", "sgd"})


@dataclass(frozen=True)
class Arm:
    """An optimizer configuration under test. ``build`` receives the parameters (grads already set)."""

    name: str
    description: str
    build: Callable[[list[Tensor]], Optimizer]
    matrices_only: bool = False
    unavailable: Callable[[torch.device], str | None] = lambda device: None


def _needs_backend(backend: str) -> Callable[[torch.device], str | None]:
    def check(device: torch.device) -> str | None:
        from andi.functional.fused import fused_backends

        ok = backend in fused_backends(device)
        return None if ok else f"the {backend!r} fused backend is not usable on {device.type}"

    return check


def _andi(**kw: Any) -> Callable[[list[Tensor]], Optimizer]:
    def build(params: list[Tensor]) -> Optimizer:
        from andi import ANDI

        return ANDI(params, **kw)

    return build


def _registry_arm(name: str) -> Arm:
    lr = OPTIMIZERS[name].default_lr

    def build(params: list[Tensor]) -> Optimizer:
        return create_optimizer(name, params, lr=lr)

    return Arm(f"{REGISTRY_PREFIX}{name}", f"andi.create_optimizer({name!r}, lr={lr:g})", build)


def registry_arms() -> dict[str, Arm]:
    """``reg:<name>`` arms for every installed registry entry not already a built-in arm, at its default lr."""
    names = [name for name in list_optimizers() if name not in _BUILT_IN_ENTRIES]
    return {f"{REGISTRY_PREFIX}{name}": _registry_arm(name) for name in names}


def available_arms() -> dict[str, Arm]:
    """Every arm this benchmark knows, built-in first, then the registry's."""
    arms = [
        Arm("andi-single", "ANDI, single-tensor loop (foreach=False)", _andi(foreach=False)),
        Arm("andi-foreach", "ANDI, torch._foreach_* path (foreach=True)", _andi(foreach=True)),
        Arm(
            "andi-compiled",
            "ANDI, one torch.compile graph over all tensors",
            _andi(backend="compiled"),
            unavailable=_needs_backend("compile"),
        ),
        Arm("andi-fused", "ANDI, Triton kernels (CUDA)", _andi(backend="triton"), unavailable=_needs_backend("triton")),
        Arm(
            "adamw-foreach", "torch.optim.AdamW(foreach=True)", lambda ps: torch.optim.AdamW(ps, lr=1e-3, foreach=True)
        ),
        Arm("adamw-fused", "torch.optim.AdamW(fused=True)", lambda ps: torch.optim.AdamW(ps, lr=1e-3, fused=True)),
        Arm(
            "sgd-nesterov",
            "torch.optim.SGD(momentum=0.9, nesterov=True, foreach=True)",
            lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True, foreach=True),
        ),
        Arm(
            "muon",
            "torch.optim.Muon (2-D tensors only)",
            lambda ps: torch.optim.Muon(ps, lr=0.02),
            matrices_only=True,
            unavailable=lambda d: None if hasattr(torch.optim, "Muon") else "torch.optim.Muon needs torch >= 2.9",
        ),
    ]
    return {a.name: a for a in arms} | registry_arms()


def baseline_arm(device: torch.device | str) -> str:
    """The arm ratios are taken against: fused AdamW on CUDA, foreach AdamW elsewhere (the issue's targets)."""
    return "adamw-fused" if torch.device(device).type == "cuda" else "adamw-foreach"


def default_arms(device: torch.device | str) -> list[str]:
    """Built-in arms usable on ``device`` (``andi-fused`` only on CUDA)."""
    device = torch.device(device)
    return [
        name
        for name, arm in available_arms().items()
        if not name.startswith(REGISTRY_PREFIX) and arm.unavailable(device) is None
    ]
