"""The comparison family behind one registry: ``create_optimizer(name, model, lr)``, ``list_optimizers()``.

Every entry (:data:`OPTIMIZERS`, defined in :mod:`andi.optim._catalog`) holds its factory and records where its
implementation comes from (a library, or written here and why), its paper, its state memory, its default role split
and lr. :func:`create_optimizer` builds every arm from its entry's factory, :class:`~andi.optim.RoutedOptimizer` takes
its algorithm names from the same entries, and :func:`markdown_table` renders the README/docs table from them, so none
of these can drift apart.

Hybrid arms (``muon``, ``normuon``, ``rmnp``, ``sinkgd``, ``andi-hybrid``, ``d-muon``), given an ``nn.Module``, send
``hidden_matrix`` parameters (:func:`andi.param_roles`) to the matrix optimizer and every other parameter to AdamW
with the ``aux_*`` settings (KellerJordan's defaults: lr 3e-4, β (0.9, 0.95), ε 1e-10, no weight decay; ``d-muon``
gives its AdamW its own lr and weight decay, β (0.8, 0.999), ε 1e-8); given a bare iterable of tensors they
use the shape rule instead (``ndim >= 2`` to the matrix optimizer). ``scion`` assigns an LMO and radius per role.
All other arms put every parameter in one optimizer. The result is always one :class:`torch.optim.Optimizer`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from ..plugins import is_spec
from ..routing import DECAY_RULES, decayed_parameters, param_groups, param_roles, weight_decay_groups
from ._catalog import OPTIMIZERS, OptimizerSpec
from ._library import require
from .routed import RoutedOptimizer
from .scion import scion_role_groups
from .user import (
    BUILTIN_OPTIMIZERS,
    load_entry_points,
    register_optimizer,
    resolve_optimizer_spec,
    unregister_optimizer,
)

__all__ = [
    "AUX_ADAMW_LR",
    "OPTIMIZERS",
    "OptimizerSpec",
    "create_optimizer",
    "list_optimizers",
    "load_optimizer",
    "markdown_table",
    "optimizer_origin",
    "optimizer_spec",
    "register_optimizer",
    "unregister_optimizer",
]

#: Aux AdamW lr of hybrid arms when ``aux_lr`` is not given (KellerJordan/Muon ``muon.py`` ``adam_update`` default).
AUX_ADAMW_LR = 3e-4


def _get(name: str) -> OptimizerSpec:
    key = name.lower() if isinstance(name, str) else name
    try:
        return OPTIMIZERS[key]
    except (KeyError, TypeError):
        pass
    broken = load_entry_points()
    if key in OPTIMIZERS:
        return OPTIMIZERS[key]
    if key in broken:
        raise ValueError(broken[key])
    if is_spec(name):
        return resolve_optimizer_spec(name)
    raise ValueError(
        f"Unknown optimizer {name!r}; available: {list_optimizers()}, or path/to/file.py:NAME for one of your own"
    )


def optimizer_spec(name: str) -> OptimizerSpec:
    """The registry entry of ``name`` (case-insensitive; a user's ``path/to/file.py:NAME`` is loaded and registered
    on first use); ``ValueError`` naming the available ones when it is unknown."""
    return _get(name)


def optimizer_origin(name: str) -> tuple[str | None, str | None]:
    """``(origin, sha256)`` of a user optimizer (:mod:`andi.optim.user`): the file, module or entry point it came
    from and the SHA-256 of its source; ``(None, None)`` for the package's own, or a name that cannot be resolved
    here (e.g. a record made on another machine)."""
    if not isinstance(name, str) or name.lower() in BUILTIN_OPTIMIZERS:
        return None, None
    try:
        spec = _get(name)
    except (ValueError, TypeError):
        return None, None
    return spec.origin, spec.origin_sha256


def list_optimizers(available_only: bool = True) -> list[str]:
    """Registered optimizer names, in table order (the package's own, then users' registrations and installed
    packages' entry points, :mod:`andi.optim.user`); by default only those whose packages are installed."""
    load_entry_points()
    return [n for n, s in OPTIMIZERS.items() if s.available or not available_only]


def _require(spec: OptimizerSpec) -> None:
    if spec.requires is not None:
        require(spec.requires, f"optimizer {spec.name!r}")  # ImportError naming the extra when missing or too old


def _main_settings(spec: OptimizerSpec, lr: float, weight_decay: float, kw: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword arguments of the entry's factory: its defaults, the caller's ``kw`` over them, lr and weight decay."""
    if spec.weight_decay:
        return {**spec.defaults, **kw, "lr": lr, "weight_decay": weight_decay}
    if weight_decay != 0:
        if spec.name not in BUILTIN_OPTIMIZERS:
            raise ValueError(f"{spec.name!r}: its factory takes no weight_decay")
        raise ValueError(f"{spec.name!r} reproduces the paper's script, which has no weight decay")
    return {**spec.defaults, **kw, "lr": lr}


def create_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[Tensor],
    lr: float | None = None,
    *,
    roles: Mapping[str, str] | None = None,
    aux_lr: float | None = None,
    aux_betas: tuple[float, float] | None = None,
    aux_eps: float | None = None,
    aux_weight_decay: float | None = None,
    weight_decay: float = 0.0,
    decay_rule: str = "all",
    **kw: Any,
) -> Optimizer:
    """Build the optimizer registered as ``name`` for a model (role-aware) or a bare iterable of parameters.

    Args:
        name: a name from :func:`list_optimizers` (case-insensitive).
        model_or_params: an ``nn.Module`` (roles from :func:`andi.param_roles`) or an iterable of tensors.
        lr: lr of the main optimizer (the matrix part of a hybrid arm); default: the entry's ``default_lr``.
        roles: role overrides for a model — a full ``param_roles`` mapping or ``{fnmatch pattern: role}``; used by
            hybrid arms and ``scion``, ignored by single-optimizer arms (every parameter goes to one optimizer).
        aux_lr: lr of the AdamW that hybrid arms use for the non-matrix parameters (default 3e-4, KellerJordan's;
            ``d-muon``: the main ``lr``); ignored by the other arms, like the three ``aux_*`` settings below.
        aux_betas: that AdamW's betas (default (0.9, 0.95); ``d-muon``: (0.8, 0.999)).
        aux_eps: that AdamW's eps (default 1e-10; ``d-muon``: 1e-8).
        aux_weight_decay: that AdamW's weight decay (default 0; ``d-muon``: the main ``weight_decay``).
        weight_decay: weight decay of the main optimizer (decoupled, except torch SGD's L2 form); default 0 for
            every arm, including AdamW (torch's own default is 0.01: pass it explicitly to reproduce that).
        decay_rule: which parameters decay (:data:`andi.routing.DECAY_RULES`): ``"all"`` (default), or ``"v7"``,
            the author's v7 groups (:func:`andi.decayed_parameters`: Linear, Conv2d and attention weights; no
            biases, norms or embeddings), for a model only; the others get ``weight_decay=0`` in their own group.
        **kw: further keyword arguments of the main optimizer (e.g. ``momentum``, ``betas``, ``L`` for SinkGD,
            ``recipe``/``scales``/``unconstrained`` for Scion); unknown names raise ``TypeError``.

    Raises:
        ValueError: unknown name or inconsistent arguments.
        ImportError: the entry's optional package is missing; the message names
            ``pip install 'pytorch-optimizer>=4.1'``.
    """
    spec = _get(name)
    _require(spec)
    lr = spec.default_lr if lr is None else lr
    is_model = isinstance(model_or_params, nn.Module)
    if not is_model and roles is not None:
        raise ValueError("roles name parameters of a model: pass the nn.Module, not a bare parameter iterable")

    settings = _main_settings(spec, lr, weight_decay, kw)
    if decay_rule not in DECAY_RULES:
        raise ValueError(f"unknown decay_rule {decay_rule!r}; expected one of {DECAY_RULES}")
    by_rule = decay_rule != "all"
    if by_rule and not is_model:
        raise ValueError(f"decay_rule={decay_rule!r} names parameters by module: pass the nn.Module")
    if by_rule and spec.kind == "scion":
        raise ValueError("Scion sets its groups per role; decay_rule must be 'all'")

    if spec.kind == "single":
        if by_rule:
            return spec.factory(weight_decay_groups(model_or_params, weight_decay, decay_rule), **settings)
        return spec.factory(model_or_params.parameters() if is_model else model_or_params, **settings)

    if spec.kind == "scion":
        recipe = settings.pop("recipe", "spectral")
        scales = settings.pop("scales", None)
        if is_model:
            model = model_or_params
            role_map = param_roles(model, roles)
            groups = scion_role_groups(model.named_parameters(), role_map, recipe=recipe, scales=scales)
            return spec.factory(groups, **settings)
        if recipe != "spectral" or scales is not None:
            raise ValueError("Scion recipes assign norms per role and need an nn.Module; bare parameters use 'auto'")
        return spec.factory(list(model_or_params), norm="auto", **settings)

    # hybrid: the entry's algorithm on hidden matrices, AdamW on the rest
    if is_model:
        model = model_or_params
        groups = param_groups(model, matrix=spec.name, other="adamw", roles=param_roles(model, roles))
    else:
        tensors = list(model_or_params)
        if tensors and isinstance(tensors[0], dict):
            raise ValueError(
                f"create_optimizer({name!r}, ...) takes a model or tensors; build groups with "
                "andi.param_groups and RoutedOptimizer for custom group layouts"
            )
        matrices = [p for p in tensors if p.ndim >= 2]
        others = [p for p in tensors if p.ndim < 2]
        groups = [
            g
            for g in (
                dict(params=matrices, algorithm=spec.name, role="hidden_matrix"),
                dict(params=others, algorithm="adamw", role="vector"),
            )
            if g["params"]
        ]
    if by_rule:
        groups = _split_by_decay(groups, set(decayed_parameters(model_or_params, decay_rule)), model_or_params)
    aux = {"lr": AUX_ADAMW_LR, "betas": (0.9, 0.95), "eps": 1e-10, "weight_decay": 0.0, **spec.aux_defaults}
    if spec.aux_shares_main:
        aux.update(lr=lr, weight_decay=weight_decay)
    given = {"lr": aux_lr, "betas": aux_betas, "eps": aux_eps, "weight_decay": aux_weight_decay}
    aux.update({k: v for k, v in given.items() if v is not None})
    aux["betas"] = tuple(aux["betas"])
    hyper = {spec.name: settings, "adamw": aux}
    used = {g["algorithm"] for g in groups}
    return RoutedOptimizer(groups, hyper={k: v for k, v in hyper.items() if k in used})


def _split_by_decay(groups: list[dict[str, Any]], decayed: set[str], model: nn.Module) -> list[dict[str, Any]]:
    """Each routed group split in two: its decayed parameters (the algorithm's weight decay) and the rest (0)."""
    names = {id(p): n for n, p in model.named_parameters()}
    split = []
    for group in groups:
        for flag in (True, False):
            members = [p for p in group["params"] if (names[id(p)] in decayed) == flag]
            if members:
                part = {**group, "params": members, "param_names": [names[id(p)] for p in members]}
                if not flag:
                    part["weight_decay"] = 0.0
                split.append(part)
    return split


def load_optimizer(name: str) -> Callable[..., Optimizer]:
    """``create_optimizer`` bound to ``name``: ``load_optimizer("muon")(model, lr=0.02)``."""
    spec = _get(name)
    _require(spec)
    return functools.partial(create_optimizer, spec.name)


def markdown_table() -> str:
    """The README table (optimizer | paper | source | state memory | default role split | default lr)."""
    lines = [
        "| optimizer | paper | source (library or ours) | state memory | default role split | default lr |",
        "|---|---|---|---|---|---|",
    ]
    load_entry_points()
    for spec in OPTIMIZERS.values():
        lr = f"{spec.default_lr:g}" if spec.name != "scion" else "2^-6 (radius-scaled)"
        lines.append(
            f"| `{spec.name}` ({spec.label}) | {spec.paper} | {spec.source} | {spec.state} | {spec.split} | {lr} |"
        )
    return "\n".join(lines)
