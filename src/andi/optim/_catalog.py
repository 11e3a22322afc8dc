"""The optimizer catalogue: one :class:`OptimizerSpec` per registered name, holding how to build it.

Both :mod:`andi.optim.registry` (``create_optimizer``, the README table) and :mod:`andi.optim.routed`
(:class:`~andi.optim.RoutedOptimizer`'s algorithm names) read this one table, so a name, its factory and its default
lr are written once. It is a module of its own because the registry builds hybrid arms with ``RoutedOptimizer`` while
``RoutedOptimizer`` resolves ``algorithm=`` names through the table: both import this module and it imports neither.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.optim import Optimizer

from ._library import is_available, library_factory
from .andi import ANDI
from .muon import Muon, make_muon
from .normuon import NorMuon
from .rmnp import RMNP
from .scion import Scion
from .script_dmuon import ScriptDMuon
from .script_muon import ScriptMuon
from .sinkgd import SinkGD

__all__ = ["ALGORITHMS", "OPTIMIZERS", "AlgorithmTable", "Factory", "OptimizerSpec", "register_algorithm"]

#: ``(params or param groups, **hyperparameters) -> Optimizer``. A factory must keep the group dicts it is given
#: (every ``torch.optim.Optimizer`` subclass does): ``RoutedOptimizer`` shares them with its own ``param_groups``.
Factory = Callable[..., Optimizer]


@dataclass(frozen=True)
class OptimizerSpec:
    """One registry entry: how to build the optimizer, and one row of the README table.

    ``factory`` is also :class:`~andi.optim.RoutedOptimizer`'s algorithm ``name`` (the matrix part of a hybrid arm,
    the whole optimizer of a single arm). ``defaults`` are keyword arguments ``create_optimizer`` passes on top of
    the factory's own defaults (the caller's keywords win). ``weight_decay=False`` marks a replay of a script that
    has none: the factory is not given ``weight_decay`` and ``create_optimizer`` refuses a non-zero one.
    """

    name: str
    label: str
    paper: str
    source: str
    state: str
    split: str
    default_lr: float
    kind: str  # "single" (one optimizer, every parameter), "hybrid" (matrix + aux AdamW), "scion" (LMO per role)
    factory: Factory
    defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    weight_decay: bool = True
    requires: str | None = None  # optional module
    #: Hybrid arms: defaults of the aux AdamW over the registry's (lr 3e-4, β (0.9, 0.95), ε 1e-10, no decay).
    aux_defaults: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: Hybrid arms whose aux AdamW takes the main lr and weight decay (one lr for both parts, as D-Muon).
    aux_shares_main: bool = False
    #: User entries (:mod:`andi.optim.user`): the file, module or entry point they came from and its SHA-256.
    origin: str | None = None
    origin_sha256: str | None = None

    @property
    def available(self) -> bool:
        return self.requires is None or is_available(self.requires)


def _andi_reference(params: Any, **kwargs: Any) -> Optimizer:
    """ANDI in the paper script's bit-exact form (``compat="reference"``)."""
    return ANDI(params, compat="reference", **kwargs)


def _andi_v7(params: Any, **kwargs: Any) -> Optimizer:
    """ANDI in the bit-exact form of the author's v7 class (``compat="v7"``, with weight decay)."""
    return ANDI(params, compat="v7", **kwargs)


_ALL = "all parameters"
_HYBRID = "hidden matrices → {m}; embeddings, first conv, head, vectors → AdamW"
_LIB = "pytorch-optimizer ≥ 4.1 `{}`"

#: Registry entries in table order.
OPTIMIZERS: dict[str, OptimizerSpec] = {
    spec.name: spec
    for spec in (
        OptimizerSpec(
            name="andi",
            label="ANDI",
            paper="Khasia, ANDI (2025), Algorithm 1",
            source='ours: `andi.ANDI` (compat="paper")',
            state="1 buffer",
            split=_ALL,
            default_lr=0.02,
            kind="single",
            factory=ANDI,
        ),
        OptimizerSpec(
            name="andi-reference",
            label="ANDI, script mode",
            paper="the ANDI paper's script `ANDI.py` @29f90fe",
            source='ours: `andi.ANDI` (compat="reference")',
            state="1 buffer",
            split=_ALL,
            default_lr=0.02,
            kind="single",
            factory=_andi_reference,
            weight_decay=False,
        ),
        OptimizerSpec(
            name="andi-v7",
            label="ANDI, v7 script mode",
            paper="the author's v7 experiment `experiments/ANDI.py` @5cb1d03",
            source='ours: `andi.ANDI` (compat="v7")',
            state="1 buffer",
            split=_ALL,
            default_lr=0.09,
            kind="single",
            factory=_andi_v7,
        ),
        OptimizerSpec(
            name="andi-hybrid",
            label="ANDI (hybrid)",
            paper="Khasia, ANDI (2025), Algorithm 1, with Muon's parameter split",
            source='ours: `andi.ANDI` (compat="paper") + torch `AdamW`',
            state="1 buffer + AdamW's 2 on the rest",
            split=_HYBRID.format(m="ANDI"),
            default_lr=0.02,
            kind="hybrid",
            factory=ANDI,
        ),
        OptimizerSpec(
            name="adamw",
            label="AdamW",
            paper="Loshchilov & Hutter, arXiv 1711.05101",
            source="torch `torch.optim.AdamW`",
            state="2 buffers",
            split=_ALL,
            default_lr=1e-3,
            kind="single",
            factory=torch.optim.AdamW,
        ),
        OptimizerSpec(
            name="sgd",
            label="SGD-Nesterov",
            paper="Sutskever et al., ICML 2013",
            source="torch `torch.optim.SGD` (momentum 0.9, Nesterov)",
            state="1 buffer",
            split=_ALL,
            default_lr=0.05,
            kind="single",
            factory=torch.optim.SGD,
            defaults={"momentum": 0.9, "nesterov": True},
        ),
        OptimizerSpec(
            name="muon",
            label="Muon",
            paper="Jordan et al. 2024, kellerjordan.github.io/posts/muon",
            source="torch `torch.optim.Muon` (2-D); ours: reference form for conv filters",
            state="1 buffer + AdamW's 2 on the rest",
            split=_HYBRID.format(m="Muon"),
            default_lr=0.02,
            kind="hybrid",
            factory=make_muon,  # torch.optim.Muon when every tensor is 2-D, else the reference form (conv filters)
        ),
        OptimizerSpec(
            name="d-muon",
            label="D-Muon",
            paper="Semenov et al., arXiv 2509.01440 (Muon with Liu et al.'s AdamW-matched scale, arXiv 2502.16982)",
            source="ours: `andi.optim.Muon` (0.2·√max(m, n) scale, decay on every parameter) + torch `AdamW`",
            state="1 buffer + AdamW's 2 on the rest",
            split=_HYBRID.format(m="Muon") + " (one lr and weight decay for both)",
            default_lr=1e-3,
            kind="hybrid",
            factory=make_muon,
            defaults={"adjust_lr_fn": "match_rms_adamw", "momentum": 0.95, "nesterov": True},
            aux_defaults={"betas": (0.8, 0.999), "eps": 1e-8},
            aux_shares_main=True,
        ),
        OptimizerSpec(
            name="d-muon-v7",
            label="D-Muon, v7 script",
            paper="the author's v7 experiment `experiments/ANDI.py` @5cb1d03 (replay only)",
            source="ours: `ScriptDMuon` (no library has it)",
            state="1 buffer on NS tensors, AdamW's 2 + step on the rest",
            split="by shape: 2-D with both sides > 32 and 4-D with > 32 outputs → NS; the rest → AdamW",
            default_lr=0.02,
            kind="single",
            factory=ScriptDMuon,
        ),
        OptimizerSpec(
            name="muon-andi-paper",
            label="ANDI-script Muon",
            paper="the ANDI paper's script `ANDI.py` @29f90fe (replay only)",
            source="ours: `ScriptMuon` (no library has it)",
            state="1 buffer",
            split="all parameters; NS when both sides > 32, else SGD-Nesterov",
            default_lr=0.02,
            kind="single",
            factory=ScriptMuon,
            weight_decay=False,
        ),
        OptimizerSpec(
            name="sinkgd",
            label="SinkGD",
            paper="Scetbon et al., arXiv 2502.06742",
            source="ours: `SinkGD` (no code released)",
            state="0 + AdamW's 2 on the rest",
            split=_HYBRID.format(m="SinkGD (L = 5; L=1 option)"),
            default_lr=1e-3,
            kind="hybrid",
            factory=SinkGD,
        ),
        OptimizerSpec(
            name="rmnp",
            label="RMNP",
            paper="Deng et al., arXiv 2603.20527",
            source="ours: `RMNP` (released code is CUDA/DDP-only)",
            state="1 buffer + AdamW's 2 on the rest",
            split=_HYBRID.format(m="RMNP"),
            default_lr=0.02,
            kind="hybrid",
            factory=RMNP,
        ),
        OptimizerSpec(
            name="scion",
            label="Scion",
            paper="Pethick et al., arXiv 2502.07529",
            source="ours: `Scion` (Col/Row LMOs on conv filters)",
            state="1 buffer (α < 1)",
            split="LMO per role: ColNorm embedding, Spectral hidden, Sign head, BiasRMS vectors "
            "(recipes: spectral, colnorm, rownorm)",
            default_lr=2.0**-6,
            kind="scion",
            factory=Scion,
            defaults={"momentum": 0.1, "unconstrained": False},
        ),
        OptimizerSpec(
            name="normuon",
            label="NorMuon",
            paper="Li et al., arXiv 2510.05491",
            source="ours: `NorMuon` (= pytorch-optimizer `NorMuon`, which overwrites `p.grad`)",
            state="1 buffer + m-vector + AdamW's 2 on the rest",
            split=_HYBRID.format(m="NorMuon"),
            default_lr=0.02,
            kind="hybrid",
            factory=NorMuon,
        ),
        OptimizerSpec(
            name="soap",
            label="SOAP",
            paper="Vyas et al., arXiv 2409.11321",
            source=_LIB.format("SOAP"),
            state="2 buffers + eigenbases (m² + n²)",
            split=_ALL,
            default_lr=3e-3,
            kind="single",
            factory=library_factory("soap"),
            requires="pytorch_optimizer",
        ),
        OptimizerSpec(
            name="shampoo",
            label="Shampoo",
            paper="Gupta et al., arXiv 1802.09568; Anil et al., arXiv 2002.09018",
            source=_LIB.format("ScalableShampoo"),
            state="statistics + inverse roots per block + graft",
            split=_ALL,
            default_lr=1e-3,
            kind="single",
            factory=library_factory("shampoo"),
            requires="pytorch_optimizer",
        ),
        OptimizerSpec(
            name="prodigy",
            label="Prodigy",
            paper="Mishchenko & Defazio, arXiv 2306.06101",
            source=_LIB.format("Prodigy"),
            state="4 buffers",
            split=_ALL,
            default_lr=1.0,
            kind="single",
            factory=library_factory("prodigy"),
            requires="pytorch_optimizer",
        ),
        OptimizerSpec(
            name="lion",
            label="Lion",
            paper="Chen et al., arXiv 2302.06675",
            source=_LIB.format("Lion"),
            state="1 buffer",
            split=_ALL,
            default_lr=1e-4,
            kind="single",
            factory=library_factory("lion"),
            requires="pytorch_optimizer",
        ),
    )
}


class AlgorithmTable(MutableMapping[str, Factory]):
    """``RoutedOptimizer``'s algorithms: every catalogue entry's factory under its name, plus routing-only ones.

    Entries are read from :data:`OPTIMIZERS` at every lookup, so the two cannot drift apart and an entry added there
    is routable at once. Names set here (:func:`register_algorithm`) are routing-only algorithms, or overrides that
    shadow an entry's factory for routing alone; deleting one removes it (the entry's own factory shows again).
    """

    def __init__(self, entries: Mapping[str, OptimizerSpec], routing_only: Mapping[str, Factory]) -> None:
        self._entries = entries
        self._registered: dict[str, Factory] = dict(routing_only)

    def __getitem__(self, name: str) -> Factory:
        if name in self._registered:
            return self._registered[name]
        return self._entries[name].factory

    def __setitem__(self, name: str, factory: Factory) -> None:
        self._registered[name] = factory

    def __delitem__(self, name: str) -> None:
        if name not in self._registered:
            raise KeyError(f"{name!r} is not a registered algorithm (a catalogue entry leaves by leaving OPTIMIZERS)")
        del self._registered[name]

    def __iter__(self) -> Iterator[str]:
        yield from self._entries
        yield from (name for name in self._registered if name not in self._entries)

    def __len__(self) -> int:
        return len(self._entries.keys() | self._registered.keys())

    def __repr__(self) -> str:
        return f"AlgorithmTable({sorted(self)})"


#: Every algorithm name a :class:`~andi.optim.RoutedOptimizer` group may carry: the catalogue's names, and
#: ``muon-reference`` (KellerJordan's reference Muon, which also takes conv filters; ``muon`` is ``torch.optim.Muon``
#: when every tensor is 2-D).
ALGORITHMS = AlgorithmTable(OPTIMIZERS, {"muon-reference": Muon})


def register_algorithm(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make ``factory`` available to every :class:`~andi.optim.RoutedOptimizer` as ``algorithm=name``."""
    if name in ALGORITHMS and not overwrite:
        raise ValueError(f"algorithm {name!r} is already registered; pass overwrite=True to replace it")
    ALGORITHMS[name] = factory
