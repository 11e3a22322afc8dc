"""Which parameters go to the matrix optimizer and which to AdamW — answered by module type, not by ``p.ndim``.

``p.ndim == 2`` cannot tell a token embedding or an LM head from a hidden weight, so :func:`param_roles` classifies
every parameter of a model into one of five roles:

============== ==================================================================================================
role           parameters
============== ==================================================================================================
hidden_matrix  weights with ``ndim >= 2`` inside the network body (Linear, conv, attention projections)
embedding      weights of ``nn.Embedding`` / ``nn.EmbeddingBag`` (token and position tables)
conv_first     the first convolution's weight (it sees raw pixels); the input Linear of an MLP by override
head           the output layer: the last ``nn.Linear`` (or the embedding matrix it is tied to)
vector         every 0-D/1-D tensor: biases, LayerNorm/BatchNorm gains and shifts, scalars
============== ==================================================================================================

and :func:`param_groups` turns the roles into torch parameter groups carrying ``algorithm=`` for
:class:`andi.optim.RoutedOptimizer`. KellerJordan's Muon split, for example, is hidden matrices to Muon and every
other role to AdamW (``docs/design/family.md``, parameter roles). The classification is a default, never the truth:
pass ``overrides`` (fnmatch patterns on the parameter name) where a model needs it.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["DECAY_RULES", "ROLES", "decayed_parameters", "param_groups", "param_roles", "weight_decay_groups"]

#: The five roles, in the order :func:`param_groups` emits them.
ROLES: tuple[str, ...] = ("hidden_matrix", "embedding", "conv_first", "head", "vector")
_EMBEDDINGS = (nn.Embedding, nn.EmbeddingBag)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)


def _call_order(model: nn.Module, example_inputs: Any) -> list[nn.Module]:
    """Modules in the order their forward first runs, for one eval-mode, no-grad pass on ``example_inputs``."""
    order: list[nn.Module] = []
    seen: set[int] = set()

    def hook(module: nn.Module, *_: Any) -> None:
        # Keep the *last* call position: the output layer is the last Linear to run.
        if id(module) in seen:
            order.remove(module)
        seen.add(id(module))
        order.append(module)

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, (nn.Linear, *_CONVS))]
    was_training = [(m, m.training) for m in model.modules()]
    try:
        model.eval()
        with torch.no_grad():
            if isinstance(example_inputs, Mapping):
                model(**example_inputs)
            elif isinstance(example_inputs, tuple):
                model(*example_inputs)
            else:
                model(example_inputs)
    finally:
        for h in handles:
            h.remove()
        for m, flag in was_training:
            m.train(flag)
    return order


def param_roles(
    model: nn.Module, overrides: Mapping[str, str] | None = None, *, example_inputs: Any = None
) -> dict[str, str]:
    """Classify each parameter of ``model`` as ``hidden_matrix``, ``embedding``, ``conv_first``, ``head`` or ``vector``.

    Rules, in order of precedence (see the module docstring for the table):

    1. ``overrides``: ``{fnmatch pattern on the parameter name: role}``, applied last, later patterns winning. A
       pattern that matches no parameter raises ``ValueError`` (it is almost always a typo).
    2. 0-D/1-D tensors are ``vector`` (biases of the head and of the first conv included).
    3. Weights of ``nn.Embedding``/``nn.EmbeddingBag`` are ``embedding`` — unless the output Linear shares the tensor
       (tied weights), in which case that one tensor is ``head``.
    4. The weight of the output layer — the last ``nn.Linear`` — is ``head``.
    5. The weight of the first convolution (``Conv1d/2d/3d`` and transposed) is ``conv_first``.
    6. Every other tensor with ``ndim >= 2`` is ``hidden_matrix`` (this includes ``nn.MultiheadAttention``'s fused
       ``in_proj_weight``, kept as one matrix).

    "First" and "last" follow module registration order, which is the forward order of most models. When it is not,
    pass ``example_inputs`` (a tensor, a tuple of positional arguments, or a mapping of keyword arguments): the model
    is then run once, in eval mode and without gradients, and the order in which convolutions and Linears are called
    decides instead. An MLP's input Linear stays ``hidden_matrix`` unless overridden (the benchmark declares
    ``{"encoder.0.weight": "conv_first"}`` for its autoencoder, the input role of ``docs/design/family.md``).

    Names are those of ``model.named_parameters()`` (a tied tensor appears once, under its first name).

    Returns:
        ``{parameter name: role}`` for every parameter, in ``named_parameters()`` order.
    """
    named = list(model.named_parameters())
    if example_inputs is not None:
        ordered = _call_order(model, example_inputs)
    else:
        ordered = [m for m in model.modules() if isinstance(m, (nn.Linear, *_CONVS))]
    linears = [m for m in ordered if isinstance(m, nn.Linear)]
    convs = [m for m in ordered if isinstance(m, _CONVS)]
    head_weight = linears[-1].weight if linears else None
    first_conv_weight = convs[0].weight if convs else None
    embedding_ids = {
        id(m.weight) for m in model.modules() if isinstance(m, _EMBEDDINGS) and isinstance(m.weight, Tensor)
    }

    roles: dict[str, str] = {}
    for name, p in named:
        if p.ndim < 2:
            role = "vector"
        elif head_weight is not None and p is head_weight:
            role = "head"
        elif id(p) in embedding_ids:
            role = "embedding"
        elif first_conv_weight is not None and p is first_conv_weight:
            role = "conv_first"
        else:
            role = "hidden_matrix"
        roles[name] = role

    for pattern, role in (overrides or {}).items():
        if role not in ROLES:
            raise ValueError(f"Unknown role {role!r} for override {pattern!r}; roles are {list(ROLES)}")
        hits = [name for name in roles if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            raise ValueError(
                f"Role override pattern {pattern!r} matches no parameter of {type(model).__name__}; "
                f"parameter names look like {[n for n, _ in named[:4]]}"
            )
        for name in hits:
            roles[name] = role
    return roles


def param_groups(
    model: nn.Module,
    matrix: str = "muon",
    other: str = "adamw",
    roles: Mapping[str, str] | None = None,
    *,
    split: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Torch parameter groups for :class:`andi.optim.RoutedOptimizer`, one per role present in ``model``.

    ``hidden_matrix`` parameters get ``algorithm=matrix``, every other role ``algorithm=other``; ``split`` maps
    individual roles to other algorithms (e.g. ``{"head": "sgd"}``). Each group carries ``params``,
    ``param_names`` (torch's key for named groups), ``role`` and ``algorithm``; add per-group hyperparameters
    (``lr``, ``weight_decay``, …) to the dicts before building the optimizer.

    Args:
        model: the model whose ``named_parameters()`` are grouped.
        matrix: algorithm for hidden matrices (any name known to :class:`~andi.optim.RoutedOptimizer`).
        other: algorithm for embeddings, the first conv, the head and vectors.
        roles: a full ``{name: role}`` mapping (default :func:`param_roles` of ``model``); it must name every
            parameter exactly once.
        split: per-role algorithm overrides.

    Example::

        groups = andi.param_groups(model, matrix="muon", other="adamw")
        opt = andi.optim.RoutedOptimizer(groups, hyper={"muon": dict(lr=0.02, weight_decay=0.0),
                                                        "adamw": dict(lr=3e-4, betas=(0.9, 0.95))})
    """
    named = list(model.named_parameters())
    roles = dict(roles) if roles is not None else param_roles(model)
    names = [n for n, _ in named]
    missing = [n for n in names if n not in roles]
    extra = sorted(set(roles) - set(names))
    if missing or extra:
        raise ValueError(
            f"roles must name every parameter of the model exactly once; missing {missing[:5]}, unknown {extra[:5]}"
        )
    bad = {n: r for n, r in roles.items() if r not in ROLES}
    if bad:
        raise ValueError(f"Unknown roles {bad}; roles are {list(ROLES)}")
    routes = {role: (matrix if role == "hidden_matrix" else other) for role in ROLES}
    for role, algorithm in (split or {}).items():
        if role not in ROLES:
            raise ValueError(f"Unknown role {role!r} in split; roles are {list(ROLES)}")
        routes[role] = algorithm

    groups = []
    for role in ROLES:
        members = [(n, p) for n, p in named if roles[n] == role]
        if members:
            groups.append(
                dict(
                    params=[p for _, p in members],
                    param_names=[n for n, _ in members],
                    role=role,
                    algorithm=routes[role],
                )
            )
    return groups


#: The rules :func:`decayed_parameters` knows. ``"all"``: every parameter decays (torch's convention for one group).
#: ``"v7"``: the author's ``configure_optimizer_groups`` (``experiments/ANDI.py`` @5cb1d03), nanoGPT's rule.
DECAY_RULES: tuple[str, ...] = ("all", "v7")
_V7_DECAY_MODULES = (nn.Linear, nn.Conv2d, nn.MultiheadAttention)
_V7_NO_DECAY_MODULES = (nn.BatchNorm2d, nn.LayerNorm, nn.Embedding)


def decayed_parameters(model: nn.Module, rule: str = "v7") -> list[str]:
    """Names of the parameters of ``model`` that weight decay applies to under ``rule``, sorted.

    ``"v7"`` walks every module and every parameter below it, as the author's script does: a name ending in ``bias``
    never decays; one ending in ``weight`` decays when the module it is read from is an ``nn.Linear``,
    ``nn.Conv2d`` or ``nn.MultiheadAttention`` (so ``in_proj_weight`` and ``out_proj.weight`` decay, embeddings,
    LayerNorm and BatchNorm gains do not); any parameter no rule reaches does not decay. ``"all"`` returns every
    name.

    Examples:
        >>> model = nn.Sequential(nn.Embedding(10, 4), nn.LayerNorm(4), nn.Linear(4, 2))
        >>> decayed_parameters(model)
        ['2.weight']
    """
    if rule not in DECAY_RULES:
        raise ValueError(f"unknown weight-decay rule {rule!r}; expected one of {DECAY_RULES}")
    names = [n for n, _ in model.named_parameters()]
    if rule == "all":
        return sorted(names)
    decay: set[str] = set()
    no_decay: set[str] = set()
    for module_name, module in model.named_modules():
        for local, _ in module.named_parameters():
            full = f"{module_name}.{local}" if module_name else local
            if local.endswith("bias"):
                no_decay.add(full)
            elif local.endswith("weight") and isinstance(module, _V7_DECAY_MODULES):
                decay.add(full)
            elif local.endswith("weight") and isinstance(module, _V7_NO_DECAY_MODULES):
                no_decay.add(full)
    both = sorted(decay & no_decay)
    if both:
        raise ValueError(f"parameters {both[:3]} are both decayed and not decayed under the v7 rule")
    return sorted(n for n in names if n in decay)


def weight_decay_groups(model: nn.Module, weight_decay: float, rule: str = "v7") -> list[dict[str, Any]]:
    """Two torch parameter groups: the decayed parameters (:func:`decayed_parameters`) with ``weight_decay``, then
    the rest with ``weight_decay=0``, each sorted by name as the author's script sorts them; an empty group is left
    out. Pass them to any optimizer that reads ``weight_decay`` per group.

    Example::

        opt = andi.ANDI(andi.weight_decay_groups(model, 0.01), lr=0.09, compat="v7")
    """
    decayed = set(decayed_parameters(model, rule))
    named = sorted(model.named_parameters(), key=lambda item: item[0])
    groups = [
        {
            "params": [p for n, p in named if (n in decayed) == flag],
            "param_names": [n for n, _ in named if (n in decayed) == flag],
            "weight_decay": weight_decay if flag else 0.0,
        }
        for flag in (True, False)
    ]
    return [g for g in groups if g["params"]]
