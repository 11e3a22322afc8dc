"""Optional library implementations of comparison optimizers, imported lazily behind the ``[family]`` extra.

Only ``pytorch-optimizer`` is used (>= 4.1: 3.9.0 had Muon/SCION fidelity bugs; ``docs/design/family.md``, Muon
and Scion). Its classes accept ``**kwargs`` and silently ignore unknown names, so every factory here checks the
keyword arguments against the constructor's signature first. ``heavyball`` is not used: it ``torch.compile``-s its steps
by default (``max-autotune``, minutes on a CPU), clears ``p.grad`` after ``step()`` (``consume_grad=True``), its
Muon's Nesterov form is not KellerJordan's and its Scion re-initializes parameters.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
from collections.abc import Callable, Iterable
from typing import Any

from torch import Tensor
from torch.optim import Optimizer

__all__ = ["EXTRA", "LIBRARY_SPECS", "LibraryFactory", "LibrarySpec", "is_available", "library_factory", "require"]

#: The pip extra that installs every optional library.
#: What the ``family`` extra adds, as a requirement pip can install anywhere (andi-optim itself is not on PyPI yet).
EXTRA = "pytorch-optimizer>=4.1"
#: Minimum versions whose math the tests check (``tests/optim/test_library_baselines.py``).
MIN_VERSIONS = {"pytorch_optimizer": (4, 1)}
_DISTRIBUTIONS = {"pytorch_optimizer": "pytorch-optimizer"}


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def is_available(module: str) -> bool:
    """Whether ``module`` can be imported here at a supported version (without importing it)."""
    try:
        if importlib.util.find_spec(module) is None:
            return False
    except (ImportError, ValueError):
        return False
    minimum = MIN_VERSIONS.get(module)
    if minimum is None:
        return True
    try:
        installed = importlib.metadata.version(_DISTRIBUTIONS.get(module, module))
    except importlib.metadata.PackageNotFoundError:
        return True  # importable but not installed as a distribution (vendored/dev checkout): trust it
    return _version_tuple(installed) >= minimum


def require(module: str, what: str) -> Any:
    """Import ``module`` or raise ``ImportError`` naming the optimizer and the extra that provides it."""
    dist = _DISTRIBUTIONS.get(module, module)
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"{what} needs the optional package '{dist}', which is not installed. "
            f"Install the comparison family with: pip install '{EXTRA}' (the 'family' extra)"
        ) from exc
    minimum = MIN_VERSIONS.get(module)
    if minimum is not None:
        try:
            installed = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed is not None and _version_tuple(installed) < minimum:
            need = ".".join(map(str, minimum))
            raise ImportError(
                f"{what} needs {dist} >= {need} (found {installed}; older versions compute a different update). "
                f"Upgrade with: pip install -U '{EXTRA}'"
            )
    return mod


def _check_kwargs(cls: type, kwargs: dict[str, Any], what: str) -> None:
    params = inspect.signature(cls.__init__).parameters
    accepted = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)} - {"self", "params"}
    unknown = sorted(set(kwargs) - accepted)
    if unknown:
        raise TypeError(f"{what} got unexpected keyword arguments {unknown}; it accepts {sorted(accepted)}")


class LibrarySpec:
    """How to build one library optimizer: module, class, and our defaults on top of the library's."""

    def __init__(self, name: str, module: str, cls: str, defaults: dict[str, Any] | None = None) -> None:
        self.name, self.module, self.cls = name, module, cls
        self.defaults = dict(defaults or {})

    @property
    def source(self) -> str:
        return f"{_DISTRIBUTIONS.get(self.module, self.module)} {self.module}.{self.cls}"

    def build(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], **kwargs: Any) -> Optimizer:
        mod = require(self.module, f"optimizer {self.name!r}")
        cls = getattr(mod, self.cls)
        kwargs = {**self.defaults, **kwargs}
        _check_kwargs(cls, kwargs, f"{self.cls} ({self.source})")
        return picklable_class(self.name)(params, **kwargs)


#: Attributes torch's ``Optimizer`` keeps on every instance (its own ``__getstate__`` carries what it needs of them).
_TORCH_ATTRIBUTES = frozenset({"defaults", "state", "param_groups"})
_PICKLABLE_PREFIX = "_Picklable_"


class _KeepsInstanceState:
    """Mixin for a library class that keeps settings as instance attributes (``self.maximize = ...``), which torch's
    ``Optimizer.__getstate__`` drops: they are pickled (and deep-copied) with the object, so the copy steps like the
    original."""

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()  # type: ignore[misc]
        state["_library_attributes"] = {
            k: v for k, v in self.__dict__.items() if k not in _TORCH_ATTRIBUTES and not k.startswith("_")
        }
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        extra = state.pop("_library_attributes", {})
        super().__setstate__(state)  # type: ignore[misc]
        self.__dict__.update(extra)


_PICKLABLE: dict[str, type] = {}


def picklable_class(name: str) -> type:
    """The library class of registry entry ``name`` with :class:`_KeepsInstanceState` mixed in; it is an attribute
    of this module (created on first lookup, see ``__getattr__``), so pickle finds it by name in any process."""
    if name not in _PICKLABLE:
        spec = LIBRARY_SPECS[name]
        base = getattr(require(spec.module, f"optimizer {name!r}"), spec.cls)
        qualname = f"{_PICKLABLE_PREFIX}{name}"
        cls = type(base.__name__, (_KeepsInstanceState, base), {"__module__": __name__, "__qualname__": qualname})
        _PICKLABLE[name] = cls
    return _PICKLABLE[name]


def __getattr__(attribute: str) -> type:
    if attribute.startswith(_PICKLABLE_PREFIX) and attribute[len(_PICKLABLE_PREFIX) :] in LIBRARY_SPECS:
        return picklable_class(attribute[len(_PICKLABLE_PREFIX) :])
    raise AttributeError(f"module {__name__!r} has no attribute {attribute!r}")


#: Library optimizers by registry name. ``defaults`` are the keyword arguments we set on top of the library's own
#: defaults (each documented in the family table, docs/family.md); everything else is the library's default.
LIBRARY_SPECS: dict[str, LibrarySpec] = {
    # SOAP (Vyas et al., arXiv 2409.11321): library defaults = nikhilvyas/SOAP's (lr 3e-3, β (0.95, 0.95),
    # precondition every 10 steps); weight decay 0 unless asked, like every arm here.
    "soap": LibrarySpec("soap", "pytorch_optimizer", "SOAP", {"weight_decay": 0.0}),
    # Shampoo in its scalable form (Anil et al., arXiv 2002.09018): blocked preconditioners, layer-wise grafting.
    # Ours: AdaGrad grafting and a preconditioner refresh every 10 steps (the library's 1000 would leave a
    # 2,500-step run almost unpreconditioned). graft_type 2 = pytorch_optimizer LayerWiseGrafting.ADAGRAD
    # (RMSProp grafting diverged on the harness transformer at every lr tried).
    "shampoo": LibrarySpec(
        "shampoo",
        "pytorch_optimizer",
        "ScalableShampoo",
        {"graft_type": 2, "preconditioning_compute_steps": 10, "start_preconditioning_step": 10},
    ),
    # Prodigy (Mishchenko & Defazio, arXiv 2306.06101): library defaults = facebookresearch/prodigy's (lr 1.0).
    "prodigy": LibrarySpec("prodigy", "pytorch_optimizer", "Prodigy"),
    # Lion (Chen et al., arXiv 2302.06675): library defaults = the paper's (β (0.9, 0.99)).
    "lion": LibrarySpec("lion", "pytorch_optimizer", "Lion"),
}


class LibraryFactory:
    """A ``(params, **kwargs) -> Optimizer`` factory for the library optimizer registered as ``name``.

    A module-level class rather than a closure, so that optimizers holding it (the hybrid router keeps its
    factories) pickle.
    """

    def __init__(self, name: str) -> None:
        spec = LIBRARY_SPECS[name]
        self.name = name
        self.__name__ = f"make_{name}"
        self.__doc__ = f"Build {spec.source} (imported lazily; needs pip install '{EXTRA}')."

    def __call__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], **kwargs: Any) -> Optimizer:
        if isinstance(kwargs.get("lr"), Tensor):
            raise ValueError(f"{self.name} (a library optimizer) takes a float lr, not a Tensor")
        return LIBRARY_SPECS[self.name].build(params, **kwargs)

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return LibraryFactory, (self.name,)

    def __repr__(self) -> str:
        return f"LibraryFactory({self.name!r})"


def library_factory(name: str) -> Callable[..., Optimizer]:
    """A ``(params, **kwargs) -> Optimizer`` factory for the library optimizer registered as ``name``."""
    return LibraryFactory(name)
