"""One optimizer object over several inner optimizers, routed by each parameter group's ``algorithm``.

KellerJordan's ``MuonWithAuxAdam`` hard-codes one pair (Muon + Adam) and asserts exact group keys; dion routes by a
per-group ``algorithm`` inside one class. :class:`RoutedOptimizer` does the latter for *any* torch optimizers: each
group names its algorithm, one inner optimizer is built per algorithm over its groups, and the outer object is a
plain :class:`torch.optim.Optimizer` — one ``step(closure)``, one ``zero_grad``, one ``state_dict`` that round-trips
and resumes bit-exactly, and LR schedulers that act on its ``param_groups``, which are the very dicts the inner
optimizers read.

The algorithm names are the registry's entries (each entry's factory, :mod:`andi.optim._catalog`), plus
``muon-reference`` and whatever :func:`register_algorithm` adds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._base import run_load_state_dict_pre_hooks
from ._catalog import ALGORITHMS, Factory, register_algorithm

__all__ = ["ALGORITHMS", "RoutedOptimizer", "register_algorithm"]


class _RoutedState(MutableMapping):
    """``optimizer.state`` of a routed optimizer: a live view of the inner optimizers' states, keyed by parameter."""

    def __init__(self, owner: RoutedOptimizer) -> None:
        self._owner = owner

    def _inner_for(self, p: Tensor) -> Optimizer:
        try:
            return self._owner.inner[self._owner._algorithm_of[id(p)]]
        except KeyError:
            raise KeyError(p) from None

    def __getitem__(self, p: Tensor) -> Any:
        return self._inner_for(p).state[p]

    def __setitem__(self, p: Tensor, value: Any) -> None:
        self._inner_for(p).state[p] = value

    def __delitem__(self, p: Tensor) -> None:
        del self._inner_for(p).state[p]

    def __contains__(self, p: object) -> bool:
        return isinstance(p, Tensor) and id(p) in self._owner._algorithm_of and p in self._inner_for(p).state

    def __iter__(self) -> Iterator[Tensor]:
        for inner in self._owner.inner.values():
            yield from inner.state

    def __len__(self) -> int:
        return sum(len(inner.state) for inner in self._owner.inner.values())

    def __repr__(self) -> str:
        return f"RoutedState({len(self)} parameters with state)"


class RoutedOptimizer(Optimizer):
    r"""Apply a different optimizer to each kind of parameter, behind one :class:`torch.optim.Optimizer`.

    Every parameter group must carry ``algorithm`` (a name in :data:`ALGORITHMS`, or in ``algorithms``); all groups
    with the same algorithm go to one inner optimizer, built with ``hyper[algorithm]`` as its constructor
    keyword arguments (per-group keys such as ``lr`` override them, as usual in torch). Build the groups by hand or
    with :func:`andi.param_groups`::

        groups = andi.param_groups(model, matrix="muon", other="adamw")
        opt = RoutedOptimizer(groups, hyper={"muon": dict(lr=0.02, weight_decay=0.0),
                                             "adamw": dict(lr=3e-4, betas=(0.9, 0.95), eps=1e-10)})
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: min(1.0, (t + 1) / 100))

    Guarantees:

    - ``opt.param_groups`` holds the *same dict objects* the inner optimizers use, in the order given, so an LR
      scheduler (or a manual ``group["lr"] = ...``) acts on the inner optimizers; identity survives
      :meth:`load_state_dict`.
    - ``step(closure)`` evaluates the closure once (with grad enabled), then steps each inner optimizer in the
      order its algorithm first appears; parameters whose ``grad`` is ``None`` are skipped by the inner optimizers.
    - :meth:`state_dict` has torch's format — ``{"state": {index: ...}, "param_groups": [...]}``, indices
      numbering all parameters across groups in order — and loading it into an identically built optimizer
      restores every inner optimizer exactly, so training resumes bit for bit.
    - ``opt.state`` is a live mapping over the inner states (``opt.state[p]`` works for any parameter).
    - Every parameter must be in exactly one group (``ValueError`` otherwise).

    Args:
        params: parameter groups (dicts), each with ``algorithm``.
        hyper: ``{algorithm: {constructor kwarg: value}}``; keys must be algorithms used by some group.
        algorithms: extra or replacement factories ``{name: callable(groups, **kwargs) -> Optimizer}``.
    """

    def __init__(
        self,
        params: Iterable[dict[str, Any]],
        *,
        hyper: Mapping[str, Mapping[str, Any]] | None = None,
        algorithms: Mapping[str, Factory] | None = None,
    ) -> None:
        self._factories: dict[str, Factory] = {**ALGORITHMS, **dict(algorithms or {})}
        self._hyper = {str(k): dict(v) for k, v in (hyper or {}).items()}
        self.inner: dict[str, Optimizer] = {}
        self._algorithm_of: dict[int, str] = {}
        self._building = True
        super().__init__(params, defaults={})
        self._building = False
        used = {g["algorithm"] for g in self.param_groups}
        unused = sorted(set(self._hyper) - used)
        if unused:
            raise ValueError(f"hyper has settings for algorithms no group uses: {unused} (groups use {sorted(used)})")
        by_algorithm: dict[str, list[dict[str, Any]]] = {}
        for group in self.param_groups:
            by_algorithm.setdefault(group["algorithm"], []).append(group)
        for algorithm, groups in by_algorithm.items():
            self.inner[algorithm] = self._build(algorithm, groups)
        self._adopt_inner_groups()
        self.state = _RoutedState(self)  # type: ignore[assignment]

    # ------------------------------------------------------------------------------------------ construction
    def _build(self, algorithm: str, groups: list[dict[str, Any]]) -> Optimizer:
        try:
            factory = self._factories[algorithm]
        except KeyError:
            raise ValueError(
                f"Unknown algorithm {algorithm!r}; known: {sorted(self._factories)} "
                "(pass algorithms={name: factory} or use andi.optim.register_algorithm)"
            ) from None
        inner = factory(groups, **self._hyper.get(algorithm, {}))
        if not isinstance(inner, Optimizer):
            raise TypeError(f"factory for algorithm {algorithm!r} returned {type(inner).__name__}, not an Optimizer")
        return inner

    def _adopt_inner_groups(self) -> None:
        """Make ``self.param_groups[i]`` the dict object its inner optimizer holds (factories may copy dicts)."""
        by_first: dict[int, dict[str, Any]] = {}
        for inner in self.inner.values():
            for g in inner.param_groups:
                if g["params"]:
                    by_first[id(g["params"][0])] = g
        for i, group in enumerate(self.param_groups):
            if group["params"]:
                self.param_groups[i] = by_first[id(group["params"][0])]

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group (with ``algorithm``) to the inner optimizer of that algorithm, creating it if needed."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, got {type(param_group).__name__}")
        algorithm = param_group.get("algorithm")
        if not isinstance(algorithm, str):
            raise ValueError(
                "every parameter group of a RoutedOptimizer needs algorithm='<name>' (e.g. 'muon', 'adamw'); "
                "andi.param_groups(model) builds such groups"
            )
        if algorithm not in self._factories:
            raise ValueError(f"Unknown algorithm {algorithm!r}; known: {sorted(self._factories)}")
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        if any(isinstance(p, tuple) for p in params):
            names = [p[0] for p in params]
            params = [p[1] for p in params]
            param_group["param_names"] = names
        param_group["params"] = params
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, but one of the params is {type(p).__name__}")
            if id(p) in self._algorithm_of:
                raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in params}) != len(params):
            raise ValueError("a parameter group contains the same tensor twice")

        if self._building:
            self.param_groups.append(param_group)
        elif algorithm in self.inner:
            inner = self.inner[algorithm]
            if isinstance(inner, torch.optim.Muon) and any(p.ndim != 2 for p in params):
                raise ValueError(
                    "this 'muon' group holds torch.optim.Muon, which accepts only 2-D parameters; add conv filters "
                    "with algorithm='muon-reference' (same math) or pass them when the optimizer is created"
                )
            inner.add_param_group(param_group)
            self.param_groups.append(inner.param_groups[-1])
        else:
            self.inner[algorithm] = self._build(algorithm, [param_group])
            self.param_groups.append(self.inner[algorithm].param_groups[-1])
        for p in params:
            self._algorithm_of[id(p)] = algorithm

    # -------------------------------------------------------------------------------------------------- step
    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> float | Tensor | None:
        """Evaluate ``closure`` once (grad enabled), then step every inner optimizer."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for inner in self.inner.values():
            inner.step()
        return loss

    # ------------------------------------------------------------------------------------------ checkpoints
    def _global_index(self) -> dict[int, int]:
        index: dict[int, int] = {}
        for group in self.param_groups:
            for p in group["params"]:
                index[id(p)] = len(index)
        return index

    def _group_position(self) -> dict[int, int]:
        return {id(g): i for i, g in enumerate(self.param_groups)}

    def state_dict(self) -> dict[str, Any]:
        """Torch-format state dict of all inner optimizers, parameters numbered across all groups in order."""
        for pre_hook in self._optimizer_state_dict_pre_hooks.values():
            pre_hook(self)
        index = self._global_index()
        position = self._group_position()
        state: dict[int, Any] = {}
        groups: list[dict[str, Any] | None] = [None] * len(self.param_groups)
        for inner in self.inner.values():
            sd = inner.state_dict()
            local = [p for g in inner.param_groups for p in g["params"]]
            for i, value in sd["state"].items():
                state[index[id(local[i])]] = value
            for group, saved in zip(inner.param_groups, sd["param_groups"]):
                saved = dict(saved)
                saved["params"] = [index[id(local[i])] for i in saved["params"]]
                groups[position[id(group)]] = saved
        result: dict[str, Any] = {"state": dict(sorted(state.items())), "param_groups": groups}
        for post_hook in self._optimizer_state_dict_post_hooks.values():
            hook_result = post_hook(self, result)
            if hook_result is not None:
                result = hook_result
        return result

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load a :meth:`state_dict` of an identically built routed optimizer (same groups, algorithms, shapes)."""
        state_dict = run_load_state_dict_pre_hooks(self, state_dict)
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved_groups)} parameter groups, this optimizer has "
                f"{len(self.param_groups)}"
            )
        saved_index: dict[int, int] = {}  # id(param) -> index in the saved dict
        for group, saved in zip(self.param_groups, saved_groups):
            if len(group["params"]) != len(saved["params"]):
                raise ValueError(
                    "loaded state dict contains a parameter group that doesn't match the size of this optimizer's group"
                )
            if saved.get("algorithm", group["algorithm"]) != group["algorithm"]:
                raise ValueError(
                    f"loaded state dict routes a group to {saved.get('algorithm')!r}, this optimizer to "
                    f"{group['algorithm']!r}"
                )
            for p, i in zip(group["params"], saved["params"]):
                saved_index[id(p)] = i
        position = self._group_position()
        for inner in self.inner.values():
            old_groups = list(inner.param_groups)
            local_state: dict[int, Any] = {}
            local_groups = []
            counter = 0
            for group in old_groups:
                saved = dict(saved_groups[position[id(group)]])
                ids = []
                for p in group["params"]:
                    key = saved_index[id(p)]
                    if key in state_dict["state"]:
                        local_state[counter] = state_dict["state"][key]
                    ids.append(counter)
                    counter += 1
                saved["params"] = ids
                local_groups.append(saved)
            inner.load_state_dict({"state": local_state, "param_groups": local_groups})
            # torch replaces the group dicts on load; copy the loaded values back into the original objects so the
            # dicts shared with self.param_groups (and any LR scheduler) stay the live ones.
            for old, new in zip(old_groups, inner.param_groups):
                if old is not new:
                    old.clear()
                    old.update(new)
            inner.param_groups[:] = old_groups
        for post_hook in self._optimizer_load_state_dict_post_hooks.values():
            post_hook(self)

    # ---------------------------------------------------------------------------------------------- pickling
    def __getstate__(self) -> dict[str, Any]:
        return {
            "defaults": self.defaults,
            "param_groups": self.param_groups,
            "inner": self.inner,
            "_factories": self._factories,
            "_hyper": self._hyper,
            "_algorithm_of_groups": [(g["algorithm"], [p for p in g["params"]]) for g in self.param_groups],
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        pairs = state.pop("_algorithm_of_groups")
        super().__setstate__(state)
        self._building = False
        self._algorithm_of = {id(p): algorithm for algorithm, params in pairs for p in params}
        self.state = _RoutedState(self)  # type: ignore[assignment]

    def __repr__(self) -> str:
        parts = [f"{name}: {type(inner).__module__}.{type(inner).__name__}" for name, inner in self.inner.items()]
        lines = [f"RoutedOptimizer({', '.join(parts)})"]
        for i, g in enumerate(self.param_groups):
            role = f" role={g['role']}" if "role" in g else ""
            lines.append(f"  group {i}: algorithm={g['algorithm']}{role} tensors={len(g['params'])} lr={g.get('lr')}")
        return "\n".join(lines)
