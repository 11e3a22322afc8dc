"""What one benchmark run is: :class:`RunConfig`, every setting that determines a run, and its key.

A protocol describes its runs as :class:`RunConfig` objects; :mod:`andi.bench.execution.runner` executes one and
:mod:`andi.bench.execution.store` files its record under :meth:`RunConfig.key` (the resume key: the sha256 of the
config's canonical JSON). Imports: :mod:`andi.bench.protocols.schedules`, :mod:`andi.bench.tasks` (the sizes), and
:mod:`andi.routing` (the weight-decay rules); no torch work happens here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from andi.bench.protocols.schedules import SCHEDULES
from andi.bench.tasks.base import SIZES
from andi.routing import DECAY_RULES

__all__ = ["EVAL_SCHEDULES", "EVAL_SPLITS", "ROLE_MODES", "RunConfig"]

EVAL_SPLITS = ("val", "test", "none")
ROLE_MODES = ("standard", "all")
EVAL_SCHEDULES = ("standard", "v7")
#: Fields added after records existed: left out of :meth:`RunConfig.to_dict` (and so of every key) at these values,
#: so the configs and keys of every earlier run are unchanged.
_LATER_FIELDS = {"decay_rule": "all", "eval_schedule": "standard", "task_source": None, "optimizer_source": None}
_DTYPES = ("float32", "float64", "bfloat16", "float16")


def _freeze(value: Any) -> Any:
    """Lists (from JSON) to tuples, recursively, so configs stay hashable and compare equal after a round trip."""
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    return value


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines one run. ``None`` fields take the task/size default.

    ``optimizer_kwargs`` are extra keyword arguments of :func:`andi.create_optimizer` (e.g.
    ``(("aux_lr", 1e-3),)``); they are stored sorted by name. ``roles="standard"`` routes parameters by
    :func:`andi.param_roles` plus the task's overrides (hidden matrices to the matrix optimizer, the rest to
    AdamW for hybrid arms); ``"all"`` gives every parameter the role ``hidden_matrix`` so the named optimizer
    updates all of them. ``eval_every=0`` disables intermediate evaluations (the final one still runs unless
    ``eval_split="none"``). ``decay_rule`` chooses which parameters ``weight_decay`` applies to (``"all"``, or the
    author's v7 groups ``"v7"``); ``eval_schedule="v7"`` evaluates and scores as the v7 experiment (module docstring).
    """

    task: str
    size: str = "cpu"
    optimizer: str = "andi"
    lr: float = 0.02
    steps: int | None = None
    batch_size: int | None = None
    init_seed: int = 0
    data_seed: int = 0
    schedule: str = "wsd"
    warmup_frac: float = 0.02
    decay_frac: float = 0.4
    weight_decay: float = 0.0
    optimizer_kwargs: tuple[tuple[str, Any], ...] = ()
    roles: str = "standard"
    eval_every: int | None = None
    eval_split: str = "val"
    train_record_every: int = 1
    device: str = "cpu"
    dtype: str = "float32"
    decay_rule: str = "all"
    eval_schedule: str = "standard"
    #: SHA-256 of the source file of a task from outside the package (:mod:`andi.bench.tasks.external`), filled in
    #: when the config is made: part of the key, so runs of a changed task file are never mixed with old records.
    task_source: str | None = None
    #: The same for an optimizer from outside the package (:mod:`andi.optim.user`): SHA-256 of its source file.
    optimizer_source: str | None = None

    def __post_init__(self) -> None:
        def fix(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        if self.task_source is None:
            from andi.bench.tasks import external_task_source

            fix("task_source", external_task_source(self.task))
        if self.optimizer_source is None:
            from andi.optim.registry import optimizer_origin

            fix("optimizer_source", optimizer_origin(self.optimizer)[1])

        for name in ("lr", "warmup_frac", "decay_frac", "weight_decay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"RunConfig.{name} must be a finite number, got {value!r}")
            fix(name, float(value))
        for name in ("steps", "batch_size", "eval_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ValueError(f"RunConfig.{name} must be None or a non-negative int, got {value!r}")
        if self.steps == 0 or self.batch_size == 0:
            raise ValueError("RunConfig.steps and batch_size must be positive when given")
        for name in ("init_seed", "data_seed", "train_record_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"RunConfig.{name} must be an int, got {value!r}")
        if self.train_record_every < 1:
            raise ValueError(f"RunConfig.train_record_every must be >= 1, got {self.train_record_every}")
        if self.lr <= 0:
            raise ValueError(f"RunConfig.lr must be positive, got {self.lr}")
        for name, allowed in (
            ("size", SIZES),
            ("schedule", SCHEDULES),
            ("eval_split", EVAL_SPLITS),
            ("roles", ROLE_MODES),
            ("dtype", _DTYPES),
            ("decay_rule", DECAY_RULES),
            ("eval_schedule", EVAL_SCHEDULES),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"RunConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        items = self.optimizer_kwargs.items() if isinstance(self.optimizer_kwargs, Mapping) else self.optimizer_kwargs
        kwargs = tuple(sorted((str(k), _freeze(v)) for k, v in items))
        if len({k for k, _ in kwargs}) != len(kwargs):
            raise ValueError(f"RunConfig.optimizer_kwargs has duplicate names: {kwargs}")
        clash = {"lr", "roles", "weight_decay"} & {k for k, _ in kwargs}
        if clash:
            raise ValueError(f"RunConfig.optimizer_kwargs may not set {sorted(clash)}: use the RunConfig fields")
        try:
            json.dumps([_thaw(v) for _, v in kwargs], allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"RunConfig.optimizer_kwargs must be JSON-serialisable: {exc}") from None
        fix("optimizer_kwargs", kwargs)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; ``optimizer_kwargs`` becomes a ``{name: value}`` mapping (tuples as lists)."""
        d = asdict(self)
        d["optimizer_kwargs"] = {k: _thaw(v) for k, v in self.optimizer_kwargs}
        for name, default in _LATER_FIELDS.items():
            if d[name] == default:
                del d[name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RunConfig:
        """Inverse of :meth:`to_dict` (unknown keys raise)."""
        names = {f.name for f in fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown RunConfig fields: {sorted(unknown)}")
        return cls(**dict(d))

    def key(self) -> str:
        """sha256 hex digest of the canonical JSON of :meth:`to_dict` (sorted keys, no spaces): the resume key."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()
