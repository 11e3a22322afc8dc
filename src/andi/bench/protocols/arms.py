"""The arms of the fair protocols: :class:`ArmSpec` and the arm tables :data:`CORE_ARMS` and :data:`FAMILY_ARMS`.

An arm is one optimizer with its fixed non-lr hyperparameters, the centre of its lr grid and its parameter split
(docs/design/protocol.md (c) "Arms", docs/design/family.md §0). The protocols of :mod:`andi.bench.protocols` and
:mod:`andi.bench.protocols.study` choose among these arms; :mod:`andi.bench.protocols` re-exports every name here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["CORE_ARMS", "FAMILY_ARMS", "LATER_ARM_FIELDS", "ArmSpec", "arm_for_optimizer", "as_pairs", "lookup"]

#: Fields added to :class:`ArmSpec` after manifests existed, with the defaults at which they are left out of them.
LATER_ARM_FIELDS: dict[str, Any] = {"schedule": None, "decay_rule": "all"}


def lookup(table: tuple[tuple[str, Any], ...], key: str, default: Any) -> Any:
    """The value paired with ``key`` in a table of ``(key, value)`` pairs (a frozen dict), else ``default``."""
    return dict(table).get(key, default)


def as_pairs(mapping: Mapping[str, Any] | Sequence[tuple[str, Any]]) -> tuple[tuple[str, Any], ...]:
    """``mapping`` as sorted ``(str(key), value)`` pairs: hashable, and equal whatever the input order."""
    items = mapping.items() if isinstance(mapping, Mapping) else mapping
    return tuple(sorted((str(k), v) for k, v in items))


@dataclass(frozen=True)
class ArmSpec:
    """One optimizer arm of the fair protocol.

    ``base_lr`` is the centre of the lr grid (``task_base_lr`` overrides it per task); ``hybrid`` arms send
    hidden matrices to ``optimizer`` and every other parameter to an aux AdamW whose lr is the tuned AdamW lr
    of the task (β (0.9, 0.95), eps 1e-10). ``optimizer_kwargs`` and ``task_kwargs`` hold the fixed
    non-lr hyperparameters; ``source`` says where the defaults come from.
    """

    name: str
    optimizer: str
    base_lr: float
    label: str = ""
    roles: str = "standard"
    hybrid: bool = False
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()
    task_kwargs: tuple[tuple[str, tuple[tuple[str, Any], ...]], ...] = ()
    task_base_lr: tuple[tuple[str, float], ...] = ()
    weight_decay: float = 0.0
    source: str = ""
    #: The arm's own lr schedule (``None``: the protocol's) and weight-decay rule (``"v7"``: the author's groups).
    schedule: str | None = None
    decay_rule: str = "all"

    def __post_init__(self) -> None:
        if not self.base_lr > 0:
            raise ValueError(f"arm {self.name!r}: base lr must be positive, got {self.base_lr}")
        if self.roles not in ("standard", "all"):
            raise ValueError(f"arm {self.name!r}: roles must be 'standard' or 'all', got {self.roles!r}")

    def to_dict(self) -> dict[str, Any]:
        """Every field, except :data:`LATER_ARM_FIELDS` at their defaults (so earlier manifests read the same)."""
        spec = asdict(self)
        for name, default in LATER_ARM_FIELDS.items():
            if spec[name] == default:
                del spec[name]
        return spec

    @property
    def display(self) -> str:
        return self.label or self.name

    def base(self, task: str) -> float:
        return float(lookup(self.task_base_lr, task, self.base_lr))

    def kwargs(self, task: str, aux_lr: float | None = None) -> tuple[tuple[str, Any], ...]:
        kw = dict(self.optimizer_kwargs)
        kw.update(dict(lookup(self.task_kwargs, task, ())))
        if self.hybrid:
            if aux_lr is None:
                raise ValueError(f"hybrid arm {self.name!r} needs the tuned AdamW lr as aux_lr")
            kw.update(aux_lr=float(aux_lr), aux_betas=(0.9, 0.95), aux_eps=1e-10)
        return as_pairs(kw)


_GPT_ADAMW_BETAS = (("gpt", (("betas", (0.9, 0.95)),)),)

#: The three core arms of the fair protocol (docs/design/protocol.md (c) "Arms" and "Search space").
CORE_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec(
        "adamw",
        "adamw",
        1e-3,
        label="AdamW",
        roles="all",
        optimizer_kwargs=(("betas", (0.9, 0.999)), ("eps", 1e-8)),
        task_kwargs=_GPT_ADAMW_BETAS,
        source="torch.optim.AdamW defaults; β2 0.95 on GPT (protocol.md)",
    ),
    ArmSpec(
        "muon",
        "muon",
        0.02,
        label="Muon",
        hybrid=True,
        source="KellerJordan/Muon defaults: momentum 0.95, Nesterov, NS5 (family.md §3.3)",
    ),
    ArmSpec(
        "andi",
        "andi",
        0.02,
        label="ANDI",
        roles="all",
        source="ANDI paper mode, every parameter (andi.md §5 defaults: momentum 0.9, Nesterov)",
    ),
)


_SCION_SOURCE = (
    "LIONS-EPFL/scion README: α = 0.1, constrained; radii of the registry's recipe (shakespeare-char "
    "sweep: input 1, blocks 3, head 10); lr base 2^-4 for the CNN (README CNN recipe), 2^-6 elsewhere "
    "(README MLP recipe; the nanoGPT recipe's 2^-12 belongs to radii 50/3000, not these)"
)
_SCION_LR = (("cifar", 2.0**-4),)

#: Family arms of the fair protocol (docs/design/protocol.md (c) "Arms"), each with the split of
#: docs/design/family.md §0. ``andi-hybrid`` is ANDI with exactly the ``muon`` arm's split (hidden matrices to ANDI,
#: the rest to an AdamW at the tuned AdamW lr), beside ``andi``, which updates every parameter (the paper's setting).
FAMILY_ARMS: tuple[ArmSpec, ...] = (
    ArmSpec(
        "sgd",
        "sgd",
        0.05,
        label="SGD-Nesterov",
        roles="all",
        optimizer_kwargs=(("momentum", 0.9), ("nesterov", True)),
        source="torch.optim.SGD, momentum 0.9",
    ),
    ArmSpec(
        "andi-hybrid",
        "andi-hybrid",
        0.02,
        label="ANDI (hybrid)",
        hybrid=True,
        source="ANDI paper mode (andi.md §5 defaults) on hidden matrices, AdamW on the rest: the muon arm's split",
    ),
    ArmSpec(
        "sinkgd-l1",
        "sinkgd",
        1e-3,
        label="SinkGD L=1",
        hybrid=True,
        optimizer_kwargs=(("L", 1),),
        source="Scetbon et al. 2025, the paper's scale (no output normalization)",
    ),
    ArmSpec(
        "sinkgd-l5",
        "sinkgd",
        1e-3,
        label="SinkGD L=5",
        hybrid=True,
        optimizer_kwargs=(("L", 5),),
        source="Scetbon et al. 2025 default L = 5",
    ),
    ArmSpec("rmnp", "rmnp", 0.02, label="RMNP", hybrid=True, source="RMNP code defaults: momentum 0.95, Nesterov"),
    ArmSpec(
        "normuon",
        "normuon",
        0.02,
        label="NorMuon",
        hybrid=True,
        source="pytorch-optimizer NorMuon defaults (momentum 0.95, β2 0.95)",
    ),
    ArmSpec(
        "scion-colnorm",
        "scion",
        2.0**-6,
        label="Scion ColNorm",
        optimizer_kwargs=(("recipe", "colnorm"),),
        task_base_lr=_SCION_LR,
        source=_SCION_SOURCE,
    ),
    ArmSpec(
        "scion-rownorm",
        "scion",
        2.0**-6,
        label="Scion RowNorm",
        optimizer_kwargs=(("recipe", "rownorm"),),
        task_base_lr=_SCION_LR,
        source=_SCION_SOURCE,
    ),
)


def arm_for_optimizer(name: str) -> ArmSpec:
    """The fair-protocol arm of a registry optimizer that no protocol declares — a user's
    (:func:`andi.register_optimizer`, an installed package's entry point, or ``path/to/file.py:NAME``): its grid is
    centred on the entry's ``default_lr``, no fixed hyperparameters beyond its factory's own, and a hybrid entry
    gets the tuned AdamW lr for its aux AdamW like every hybrid arm. The arm is called by the spec's ``NAME`` (the
    registry name otherwise); its optimizer stays the full spec, which worker processes load again.

    Raises ``ValueError`` for a name the registry does not know (the message says why).
    """
    from andi.optim.registry import optimizer_spec

    spec = optimizer_spec(name)
    arm_name = name.rpartition(":")[2] if ":" in name else spec.name
    return ArmSpec(
        arm_name,
        name,
        spec.default_lr,
        label=spec.label,
        roles="standard" if spec.kind == "hybrid" else "all",
        hybrid=spec.kind == "hybrid",
        source=spec.source + (f" ({spec.origin}, sha256 {spec.origin_sha256[:12]})" if spec.origin_sha256 else ""),
    )
