"""The comparison family behind one registry: ``create_optimizer(name, model, lr)``, ``list_optimizers()``.

Every entry records where its implementation comes from (a library, or written here and why), its paper, its state
memory, its default role split and lr; :func:`markdown_table` renders the README/docs table from these records so
the two cannot drift apart.

Hybrid arms (``muon``, ``normuon``, ``rmnp``, ``sinkgd``), given an ``nn.Module``, send ``hidden_matrix`` parameters
(:func:`andi.param_roles`) to the matrix optimizer and every other parameter to AdamW with the ``aux_*`` settings
(KellerJordan's defaults: lr 3e-4, β (0.9, 0.95), ε 1e-10, no weight decay); given a bare iterable of tensors they
use the shape rule instead (``ndim >= 2`` to the matrix optimizer). ``scion`` assigns an LMO and radius per role.
All other arms put every parameter in one optimizer. The result is always one :class:`torch.optim.Optimizer`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ..routing import param_groups, param_roles
from ._library import LIBRARY_SPECS, is_available, require
from .routed import RoutedOptimizer
from .scion import Scion, scion_role_groups
from .script_muon import ScriptMuon

__all__ = [
    "AUX_ADAMW_LR",
    "OPTIMIZERS",
    "OptimizerSpec",
    "create_optimizer",
    "list_optimizers",
    "load_optimizer",
    "markdown_table",
]

#: Aux AdamW lr of hybrid arms when ``aux_lr`` is not given (KellerJordan/Muon ``muon.py`` ``adam_update`` default).
AUX_ADAMW_LR = 3e-4
_ALL = "all parameters"
_HYBRID = "hidden matrices → {m}; embeddings, first conv, head, vectors → AdamW"


@dataclass(frozen=True)
class OptimizerSpec:
    """One registry entry (also one row of the README table)."""

    name: str
    label: str
    paper: str
    source: str
    state: str
    split: str
    default_lr: float
    kind: str  # "single" (one optimizer, every parameter), "hybrid" (matrix + aux AdamW), "scion" (LMO per role)
    algorithm: str  # RoutedOptimizer algorithm of the matrix part (hybrid) or of the whole (single)
    requires: str | None = None  # optional module

    @property
    def available(self) -> bool:
        return self.requires is None or is_available(self.requires)


def _spec(name: str, label: str, paper: str, source: str, state: str, split: str, lr: float, kind: str,
          algorithm: str | None = None, requires: str | None = None) -> OptimizerSpec:
    return OptimizerSpec(name, label, paper, source, state, split, lr, kind, algorithm or name, requires)


_LIB = "pytorch-optimizer ≥ 4.1 `{}`"
#: Registry entries in table order.
OPTIMIZERS: dict[str, OptimizerSpec] = {s.name: s for s in (
    _spec("andi", "ANDI", "Khasia, ANDI (2025), Algorithm 1", "ours: `andi.ANDI` (compat=\"paper\")",
          "1 buffer", _ALL, 0.02, "single"),
    _spec("andi-reference", "ANDI, script mode", "the ANDI paper's script `ANDI.py` @29f90fe",
          "ours: `andi.ANDI` (compat=\"reference\")", "1 buffer", _ALL, 0.02, "single"),
    _spec("adamw", "AdamW", "Loshchilov & Hutter, arXiv 1711.05101", "torch `torch.optim.AdamW`",
          "2 buffers", _ALL, 1e-3, "single"),
    _spec("sgd", "SGD-Nesterov", "Sutskever et al., ICML 2013", "torch `torch.optim.SGD` (momentum 0.9, Nesterov)",
          "1 buffer", _ALL, 0.05, "single"),
    _spec("muon", "Muon", "Jordan et al. 2024, kellerjordan.github.io/posts/muon",
          "torch `torch.optim.Muon` (2-D); ours: reference form for conv filters",
          "1 buffer + AdamW's 2 on the rest", _HYBRID.format(m="Muon"), 0.02, "hybrid"),
    _spec("muon-andi-paper", "ANDI-script Muon", "the ANDI paper's script `ANDI.py` @29f90fe (replay only)",
          "ours: `ScriptMuon` (no library has it)", "1 buffer",
          "all parameters; NS when both sides > 32, else SGD-Nesterov", 0.02, "single"),
    _spec("sinkgd", "SinkGD", "Scetbon et al., arXiv 2502.06742", "ours: `SinkGD` (no code released)",
          "0 + AdamW's 2 on the rest", _HYBRID.format(m="SinkGD (L = 5; L=1 option)"), 1e-3, "hybrid"),
    _spec("rmnp", "RMNP", "Deng et al., arXiv 2603.20527", "ours: `RMNP` (released code is CUDA/DDP-only)",
          "1 buffer + AdamW's 2 on the rest", _HYBRID.format(m="RMNP"), 0.02, "hybrid"),
    _spec("scion", "Scion", "Pethick et al., arXiv 2502.07529", "ours: `Scion` (Col/Row LMOs on conv filters)",
          "1 buffer (α < 1)", "LMO per role: ColNorm embedding, Spectral hidden, Sign head, BiasRMS vectors "
          "(recipes: spectral, colnorm, rownorm)", 2.0**-6, "scion"),
    _spec("normuon", "NorMuon", "Li et al., arXiv 2510.05491",
          "ours: `NorMuon` (= pytorch-optimizer `NorMuon`, which overwrites `p.grad`)",
          "1 buffer + m-vector + AdamW's 2 on the rest", _HYBRID.format(m="NorMuon"), 0.02, "hybrid"),
    _spec("soap", "SOAP", "Vyas et al., arXiv 2409.11321", _LIB.format("SOAP"),
          "2 buffers + eigenbases (m² + n²)", _ALL, 3e-3, "single", requires="pytorch_optimizer"),
    _spec("shampoo", "Shampoo", "Gupta et al., arXiv 1802.09568; Anil et al., arXiv 2002.09018",
          _LIB.format("ScalableShampoo"), "statistics + inverse roots per block + graft", _ALL, 1e-3, "single",
          requires="pytorch_optimizer"),
    _spec("prodigy", "Prodigy", "Mishchenko & Defazio, arXiv 2306.06101", _LIB.format("Prodigy"),
          "4 buffers", _ALL, 1.0, "single", requires="pytorch_optimizer"),
    _spec("lion", "Lion", "Chen et al., arXiv 2302.06675", _LIB.format("Lion"), "1 buffer", _ALL, 1e-4, "single",
          requires="pytorch_optimizer"),
)}


def _get(name: str) -> OptimizerSpec:
    key = name.lower() if isinstance(name, str) else name
    try:
        return OPTIMIZERS[key]
    except (KeyError, TypeError):
        raise ValueError(f"Unknown optimizer {name!r}; available: {list_optimizers()}") from None


def list_optimizers(available_only: bool = True) -> list[str]:
    """Registered optimizer names, in table order; by default only those whose packages are installed."""
    return [n for n, s in OPTIMIZERS.items() if s.available or not available_only]


def _require(spec: OptimizerSpec) -> None:
    if spec.requires is not None:
        require(spec.requires, f"optimizer {spec.name!r}")  # ImportError naming the extra when missing or too old


def _build_single(spec: OptimizerSpec, params: Iterable[Tensor], lr: float, weight_decay: float,
                  kw: dict[str, Any]) -> Optimizer:
    name = spec.name
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **kw)
    if name == "sgd":
        kw = {"momentum": 0.9, "nesterov": True, **kw}
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, **kw)
    if name in ("andi", "andi-reference"):
        from .andi import ANDI

        if name == "andi-reference":
            if weight_decay != 0:
                raise ValueError("'andi-reference' reproduces the paper's script, which has no weight decay")
            return ANDI(params, lr=lr, compat="reference", **kw)
        return ANDI(params, lr=lr, weight_decay=weight_decay, **kw)
    if name == "muon-andi-paper":
        if weight_decay != 0:
            raise ValueError("'muon-andi-paper' reproduces the paper's script, which has no weight decay")
        return ScriptMuon(params, lr=lr, **kw)
    if name in LIBRARY_SPECS:
        return LIBRARY_SPECS[name].build(params, lr=lr, weight_decay=weight_decay, **kw)
    raise AssertionError(f"no builder for {name!r}")  # pragma: no cover - every single-kind entry is handled


def create_optimizer(
    name: str,
    model_or_params: nn.Module | Iterable[Tensor],
    lr: float | None = None,
    *,
    roles: Mapping[str, str] | None = None,
    aux_lr: float | None = None,
    aux_betas: tuple[float, float] = (0.9, 0.95),
    aux_eps: float = 1e-10,
    aux_weight_decay: float = 0.0,
    weight_decay: float = 0.0,
    **kw: Any,
) -> Optimizer:
    """Build the optimizer registered as ``name`` for a model (role-aware) or a bare iterable of parameters.

    Args:
        name: a name from :func:`list_optimizers` (case-insensitive).
        model_or_params: an ``nn.Module`` (roles from :func:`andi.param_roles`) or an iterable of tensors.
        lr: lr of the main optimizer (the matrix part of a hybrid arm); default: the entry's ``default_lr``.
        roles: role overrides for a model — a full ``param_roles`` mapping or ``{fnmatch pattern: role}``; used by
            hybrid arms and ``scion``, ignored by single-optimizer arms (every parameter goes to one optimizer).
        aux_lr, aux_betas, aux_eps, aux_weight_decay: AdamW settings for the non-matrix parameters of hybrid arms
            (``aux_lr`` default 3e-4, KellerJordan's); ignored by the other arms.
        weight_decay: weight decay of the main optimizer (decoupled, except torch SGD's L2 form); default 0 for
            every arm, including AdamW (torch's own default is 0.01: pass it explicitly to reproduce that).
        **kw: further keyword arguments of the main optimizer (e.g. ``momentum``, ``betas``, ``L`` for SinkGD,
            ``recipe``/``scales``/``unconstrained`` for Scion); unknown names raise ``TypeError``.

    Raises:
        ValueError: unknown name or inconsistent arguments.
        ImportError: the entry's optional package is missing; the message names ``pip install 'andi-optim[family]'``.
    """
    spec = _get(name)
    _require(spec)
    lr = spec.default_lr if lr is None else lr
    is_model = isinstance(model_or_params, nn.Module)
    if not is_model and roles is not None:
        raise ValueError("roles name parameters of a model: pass the nn.Module, not a bare parameter iterable")

    if spec.kind == "single":
        params = model_or_params.parameters() if is_model else model_or_params
        return _build_single(spec, params, lr, weight_decay, dict(kw))

    if spec.kind == "scion":
        settings = {"momentum": 0.1, "unconstrained": False, **kw}
        recipe = settings.pop("recipe", "spectral")
        scales = settings.pop("scales", None)
        if is_model:
            model = model_or_params
            role_map = param_roles(model, roles)
            groups = scion_role_groups(model.named_parameters(), role_map, recipe=recipe, scales=scales)
            return Scion(groups, lr=lr, weight_decay=weight_decay, **settings)
        if recipe != "spectral" or scales is not None:
            raise ValueError("Scion recipes assign norms per role and need an nn.Module; bare parameters use 'auto'")
        return Scion(list(model_or_params), lr=lr, norm="auto", weight_decay=weight_decay, **settings)

    # hybrid: matrix optimizer on hidden matrices, AdamW on the rest
    if is_model:
        model = model_or_params
        groups = param_groups(model, matrix=spec.algorithm, other="adamw", roles=param_roles(model, roles))
    else:
        tensors = list(model_or_params)
        if tensors and isinstance(tensors[0], dict):
            raise ValueError(f"create_optimizer({name!r}, ...) takes a model or tensors; build groups with "
                             "andi.param_groups and RoutedOptimizer for custom group layouts")
        matrices = [p for p in tensors if p.ndim >= 2]
        others = [p for p in tensors if p.ndim < 2]
        groups = [g for g in (dict(params=matrices, algorithm=spec.algorithm, role="hidden_matrix"),
                              dict(params=others, algorithm="adamw", role="vector")) if g["params"]]
    hyper = {
        spec.algorithm: {"lr": lr, "weight_decay": weight_decay, **kw},
        "adamw": {"lr": AUX_ADAMW_LR if aux_lr is None else aux_lr, "betas": tuple(aux_betas), "eps": aux_eps,
                  "weight_decay": aux_weight_decay},
    }
    used = {g["algorithm"] for g in groups}
    return RoutedOptimizer(groups, hyper={k: v for k, v in hyper.items() if k in used})


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
    for spec in OPTIMIZERS.values():
        lr = f"{spec.default_lr:g}" if spec.name != "scion" else "2^-6 (radius-scaled)"
        lines.append(
            f"| `{spec.name}` ({spec.label}) | {spec.paper} | {spec.source} | {spec.state} | {spec.split} | {lr} |"
        )
    return "\n".join(lines)
