"""Optimizers from outside the package: :func:`register_optimizer`, installed packages' entry points (group
:data:`ENTRY_POINT_GROUP`) and one-off specs ``path/to/file.py:NAME`` or ``package.module:NAME``.

A user's optimizer joins the registry as an ordinary entry: :func:`andi.create_optimizer` builds it (on every
parameter, or on the hidden matrices with AdamW on the rest), :func:`andi.list_optimizers` and the family table list
it, and ``andi-bench run``/``compare`` make it an arm of the fair protocol with its own lr grid centred on
``default_lr``.

The factory is called as ``factory(params, lr=..., weight_decay=..., **kwargs)`` and must return a
:class:`torch.optim.Optimizer`; one that raises, or returns anything else, fails with :class:`OptimizerFactoryError`
naming the optimizer. ``weight_decay`` is passed only to factories that accept it.

An entry point or a spec names a *registration*: a mapping of :func:`register_optimizer`'s keyword arguments
(``factory`` and ``default_lr`` at least), registered under the entry point's name or under the spec itself::

    # my_sgd.py
    import torch

    def make(params, lr, weight_decay=0.0):
        return torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay)

    SGD_NESTEROV = {"factory": make, "default_lr": 0.05, "label": "SGD (Nesterov 0.9)"}

    # andi-bench compare my_task.py:MyTask --optimizers andi,adamw,my_sgd.py:SGD_NESTEROV

Worker processes of a sweep start fresh, so they see entry points and specs (each worker loads them again) but not
a :func:`register_optimizer` call made in the driving script: use those with ``--executor serial``.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer

from ..plugins import entry_points, load_spec, module_sha256
from ._catalog import OPTIMIZERS, OptimizerSpec

__all__ = [
    "BUILTIN_OPTIMIZERS",
    "ENTRY_POINT_GROUP",
    "OptimizerFactoryError",
    "load_entry_points",
    "register_optimizer",
    "resolve_optimizer_spec",
    "unregister_optimizer",
]

#: Entry-point group under which installed packages register optimizers (``name = "module:REGISTRATION"``).
ENTRY_POINT_GROUP = "andi.optimizers"
#: The package's own entries, which a user's registration never replaces.
BUILTIN_OPTIMIZERS = frozenset(OPTIMIZERS)
#: What ``roles=`` means: every parameter to the optimizer, or hidden matrices to it and the rest to AdamW.
_KINDS = {"all": "single", "hybrid": "hybrid"}
_REGISTRATION_KEYS = frozenset(
    {"factory", "default_lr", "roles", "label", "paper", "source", "state", "weight_decay", "aux_defaults"}
)


class OptimizerFactoryError(RuntimeError):
    """A user optimizer's factory raised, or returned something that is not a ``torch.optim.Optimizer``."""


def _accepts_weight_decay(factory: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(factory).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.name == "weight_decay" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def _checked(name: str, factory: Callable[..., Any]) -> Callable[..., Optimizer]:
    """``factory`` with its failures and wrong return types turned into one clear :class:`OptimizerFactoryError`."""
    what = getattr(factory, "__qualname__", type(factory).__name__)

    @functools.wraps(factory, updated=())
    def build(params: Any, *args: Any, **kwargs: Any) -> Optimizer:
        try:
            made = factory(params, *args, **kwargs)
        except Exception as e:
            raise OptimizerFactoryError(f"optimizer {name!r}: its factory {what} raised {type(e).__name__}: {e}") from e
        if not isinstance(made, Optimizer):
            raise OptimizerFactoryError(
                f"optimizer {name!r}: its factory {what} returned {type(made).__name__}, not a torch.optim.Optimizer"
            )
        return made

    return build


def register_optimizer(
    name: str,
    factory: Callable[..., Optimizer],
    *,
    default_lr: float,
    roles: str = "all",
    label: str | None = None,
    paper: str = "",
    source: str | None = None,
    state: str = "",
    weight_decay: bool | None = None,
    aux_defaults: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    origin: str | None = None,
    origin_sha256: str | None = None,
) -> OptimizerSpec:
    """Add a user's optimizer to the registry as ``name`` and return its entry.

    Args:
        name: the registry name (lower case; :func:`andi.create_optimizer` looks names up case-insensitively).
        factory: ``factory(params, lr=..., [weight_decay=...,] **kwargs) -> torch.optim.Optimizer``, e.g. an
            optimizer class.
        default_lr: the lr :func:`~andi.create_optimizer` uses without one, and the centre of the fair protocol's
            lr grid for this optimizer.
        roles: ``"all"`` (every parameter to this optimizer) or ``"hybrid"`` (hidden matrices to it, embeddings,
            heads and vectors to AdamW, like ``muon``).
        label, paper, source, state: the family table's columns (defaults: the name, empty, where it came from).
        weight_decay: whether the factory takes ``weight_decay`` (default: read from its signature).
        aux_defaults: hybrid only: the aux AdamW's settings over the registry's defaults.
        overwrite: replace an earlier user registration of ``name`` (the package's own entries are never replaced).
        origin, origin_sha256: the file or module it came from and the SHA-256 of its source (set by the entry-point
            and spec loaders; records keep them).

    Example:
        >>> import torch, andi
        >>> spec = andi.register_optimizer("sgd-nesterov", lambda p, lr, weight_decay=0.0: torch.optim.SGD(
        ...     p, lr=lr, momentum=0.9, nesterov=True, weight_decay=weight_decay), default_lr=0.05)
        >>> opt = andi.create_optimizer("sgd-nesterov", torch.nn.Linear(4, 2))
        >>> type(opt).__name__, opt.param_groups[0]["lr"]
        ('SGD', 0.05)
        >>> andi.unregister_optimizer("sgd-nesterov")
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"optimizer name must be a non-empty string without surrounding spaces, got {name!r}")
    key = name.lower()
    if key in BUILTIN_OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is one of the package's own; choose another name")
    if key in OPTIMIZERS and not overwrite:
        raise ValueError(f"optimizer {name!r} is already registered; pass overwrite=True to replace it")
    if not callable(factory):
        raise TypeError(f"optimizer {name!r}: factory must be callable, got {type(factory).__name__}")
    if (
        isinstance(default_lr, bool)
        or not isinstance(default_lr, (int, float))
        or not (math.isfinite(default_lr) and default_lr > 0)
    ):
        raise ValueError(f"optimizer {name!r}: default_lr must be a positive number, got {default_lr!r}")
    if roles not in _KINDS:
        raise ValueError(f"optimizer {name!r}: roles must be one of {sorted(_KINDS)}, got {roles!r}")
    where = origin or getattr(factory, "__module__", None) or "?"
    spec = OptimizerSpec(
        name=key,
        label=label or name,
        paper=paper or "—",
        source=source or f"user: `{where}`",
        state=state or "—",
        split="all parameters" if roles == "all" else "hidden matrices → it; the rest → AdamW",
        default_lr=float(default_lr),
        kind=_KINDS[roles],
        factory=_checked(key, factory),
        weight_decay=_accepts_weight_decay(factory) if weight_decay is None else bool(weight_decay),
        aux_defaults=dict(aux_defaults or {}),
        origin=origin,
        origin_sha256=origin_sha256,
    )
    OPTIMIZERS[key] = spec
    return spec


def unregister_optimizer(name: str) -> None:
    """Remove a user registration (the package's own entries cannot be removed)."""
    key = name.lower()
    if key in BUILTIN_OPTIMIZERS:
        raise ValueError(f"optimizer {name!r} is one of the package's own and cannot be removed")
    if key not in OPTIMIZERS:
        raise KeyError(f"optimizer {name!r} is not registered")
    del OPTIMIZERS[key]


def _from_registration(name: str, registration: Any, origin: str, sha: str | None) -> OptimizerSpec:
    if not isinstance(registration, Mapping):
        raise TypeError(
            f"optimizer {name!r} ({origin}): expected a mapping of register_optimizer's arguments "
            f"(factory=..., default_lr=...), got {type(registration).__name__}"
        )
    unknown = sorted(set(registration) - _REGISTRATION_KEYS)
    missing = sorted({"factory", "default_lr"} - set(registration))
    problems = []
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if missing:
        problems.append(f"missing {missing}")
    if problems:
        raise ValueError(f"optimizer {name!r} ({origin}): {'; '.join(problems)}")
    return register_optimizer(name, overwrite=True, origin=origin, origin_sha256=sha, **registration)


_entry_point_errors: dict[str, str] = {}


@functools.cache
def load_entry_points() -> dict[str, str]:
    """Register every optimizer that installed packages declare under :data:`ENTRY_POINT_GROUP` (once per process);
    returns the names that failed to load, with why (their lookups raise that reason)."""
    for point in entry_points(ENTRY_POINT_GROUP).values():
        origin = f"{point.value} (entry point of {point.dist.name if point.dist else '?'})"
        try:
            registration = point.load()
            _from_registration(point.name, registration, origin, module_sha256(sys.modules.get(point.module)))
        except Exception as e:  # one broken plugin must not take the registry down
            _entry_point_errors[point.name.lower()] = f"optimizer {point.name!r} ({origin}): {type(e).__name__}: {e}"
    return dict(_entry_point_errors)


def resolve_optimizer_spec(spec: str) -> OptimizerSpec:
    """Register the optimizer a ``file.py:NAME`` / ``module:NAME`` spec names, under the spec itself (once)."""
    key = spec.lower()
    if key in OPTIMIZERS:
        return OPTIMIZERS[key]
    registration, module = load_spec(spec, "optimizer")
    attr = spec.rpartition(":")[2]
    if isinstance(registration, Mapping) and "label" not in registration:
        registration = {**registration, "label": attr}
    return _from_registration(spec, registration, spec.rpartition(":")[0], module_sha256(module))
