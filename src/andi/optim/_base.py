"""The step template, validation helpers and argument documentation shared by the optimizer classes."""

from __future__ import annotations

import contextlib
import inspect
import math
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

import torch
from torch import Tensor
from torch.optim import Optimizer

__all__ = [
    "FunctionalOptimizer",
    "MatrixOptimizer",
    "check_distinct_params",
    "check_lr",
    "check_range",
    "evaluate_closure",
    "group_tensors",
    "load_state_dict_pre_hooks_done",
    "lr_value",
    "params_with_grads",
    "run_load_state_dict_pre_hooks",
]


def lr_value(lr: float | Tensor) -> float:
    """The learning rate as a Python float (for validation only; never called inside ``step``)."""
    if isinstance(lr, Tensor):
        if lr.numel() != 1:
            raise ValueError(f"Tensor lr must be 1-element, got shape {tuple(lr.shape)}")
        return float(lr.detach().reshape(()).item())
    return float(lr)


def check_lr(lr: float | Tensor) -> None:
    value = lr_value(lr)
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid learning rate: {value}")


def run_load_state_dict_pre_hooks(optimizer: Optimizer, state_dict: dict[str, Any]) -> dict[str, Any]:
    """Run ``optimizer``'s ``register_load_state_dict_pre_hook`` hooks on a shallow copy of ``state_dict``, as
    ``torch.optim.Optimizer.load_state_dict`` does first, so that validation sees what the hooks return."""
    state_dict = state_dict.copy()
    for pre_hook in optimizer._optimizer_load_state_dict_pre_hooks.values():
        result = pre_hook(optimizer, state_dict)
        if result is not None:
            state_dict = result
    return state_dict


@contextlib.contextmanager
def load_state_dict_pre_hooks_done(optimizer: Optimizer) -> Iterator[None]:
    """Within the block, ``optimizer`` has no load pre-hooks (they ran already: torch's loader must not rerun them)."""
    hooks = optimizer._optimizer_load_state_dict_pre_hooks
    optimizer._optimizer_load_state_dict_pre_hooks = OrderedDict()
    try:
        yield
    finally:
        optimizer._optimizer_load_state_dict_pre_hooks = hooks


def check_range(name: str, value: float, low: float, high: float, *, high_inclusive: bool = False) -> None:
    """Raise ``ValueError(f"Invalid {name}: {value}")`` unless ``low <= value < high`` (or ``<= high``)."""
    ok = low <= value <= high if high_inclusive else low <= value < high
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and ok):
        raise ValueError(f"Invalid {name}: {value}")


def group_tensors(params: Iterable[Any]) -> list[Tensor]:
    """The tensors of a group's ``params`` list, which holds tensors or ``(name, tensor)`` pairs (named parameters,
    ``model.named_parameters()``); anything else is returned as is for torch's own check to refuse."""
    return [p[1] if isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) else p for p in params]


def check_distinct_params(params: Iterable[Tensor]) -> None:
    seen: set[int] = set()
    for p in params:
        if id(p) in seen:
            raise ValueError(
                "optimizer parameter group contains the same tensor twice; each parameter may appear only once"
            )
        seen.add(id(p))


class FunctionalOptimizer(Optimizer):
    """The one ``step`` of the comparison family: a subclass is its constructor plus two declarations.

    ``_functional`` is the pure update rule (a ``staticmethod`` wrapping a function of :mod:`andi.functional`), called
    once per parameter group as ``_functional(params, grads, *state_lists, **hyperparameters)``:

    - ``params``, ``grads``: the group's parameters that have a gradient (sparse gradients are refused);
    - ``state_lists``: one list per name in ``_state_keys``, holding each parameter's state tensor under that name or
      ``None``; the functional creates missing tensors in place in the list (the torch SGD convention);
    - ``hyperparameters``: the group's value of every keyword-only argument of ``_functional`` (so the functional's
      signature is the one list of what a group must hold).

    Tensors the functional put into ``state_lists`` are then stored in ``self.state`` under their name; a parameter
    whose lists stay ``None`` gets no state entry. ``step`` runs under ``no_grad`` and its closure under
    ``enable_grad``. Nothing here reads a tensor on the host, so a step is free of host syncs whenever the
    functional is.
    """

    _functional: ClassVar[Callable[..., None]]
    _state_keys: ClassVar[tuple[str, ...]] = ()
    _hyperparameters: ClassVar[tuple[str, ...]] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_functional" in cls.__dict__:
            parameters = inspect.signature(cls._functional).parameters.values()
            cls._hyperparameters = tuple(p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY)

    def _init_group(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], state_lists: tuple[list, ...]
    ) -> None:
        """Append the group's parameters with gradients, their gradients and their state (``None`` if absent)."""
        for p, grad in params_with_grads(group, type(self).__name__):
            params.append(p)
            grads.append(grad)
            state = self.state.get(p, {})  # ``get``: a parameter without state must not gain an empty entry
            for key, values in zip(self._state_keys, state_lists):
                values.append(state.get(key))

    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> float | Tensor | None:
        """Perform one optimization step (``closure`` re-evaluates the loss with grad enabled)."""
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            state_lists: tuple[list[Tensor | None], ...] = tuple([] for _ in self._state_keys)
            self._init_group(group, params, grads, state_lists)
            if not params:
                continue
            self._functional(
                params, grads, *state_lists, **{key: _scalar_lr(key, group[key]) for key in self._hyperparameters}
            )
            for key, values in zip(self._state_keys, state_lists):
                for p, value in zip(params, values):
                    if value is not None:
                        self.state[p][key] = value
        return loss


class MatrixOptimizer(FunctionalOptimizer):
    """Base of the optimizers defined on matrices only (Muon, NorMuon, RMNP, SinkGD).

    Rejects duplicate parameters and 0/1-D parameters when a group is added, with a message that says where vectors
    belong; ``(d1, -1)``-viewable tensors of any higher rank are accepted.
    """

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        tensors = group_tensors(params)
        check_distinct_params(tensors)
        for p in tensors:
            if isinstance(p, Tensor) and p.ndim < 2:
                raise ValueError(
                    f"{type(self).__name__} only supports parameters with at least 2 dimensions, got one of shape "
                    f"{tuple(p.shape)}; route biases, gains and other vectors to AdamW "
                    "(andi.create_optimizer(name, model) and andi.param_groups do)"
                )
        param_group["params"] = params
        super().add_param_group(param_group)


def _scalar_lr(key: str, value: Any) -> Any:
    """A 1-element tensor lr of any shape as a 0-dim view (shares the caller's storage), so that no update takes the
    lr's shape; every other hyperparameter as it is."""
    if key == "lr" and isinstance(value, Tensor) and value.dim() > 0:
        return value.view(())
    return value


def evaluate_closure(closure: Callable[[], float | Tensor] | None) -> float | Tensor | None:
    """Run ``step``'s optional closure with gradients enabled (``step`` itself runs under ``no_grad``)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


def params_with_grads(group: dict[str, Any], optimizer_name: str) -> Iterator[tuple[Tensor, Tensor]]:
    """``(param, grad)`` for every parameter of ``group`` that has a gradient; sparse gradients are refused."""
    for p in group["params"]:
        grad = p.grad
        if grad is None:
            continue
        if grad.is_sparse:
            raise RuntimeError(f"{optimizer_name} does not support sparse gradients")
        yield p, grad
