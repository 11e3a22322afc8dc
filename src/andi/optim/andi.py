"""``andi.ANDI``: the ANDI optimizer as a drop-in :class:`torch.optim.Optimizer`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..functional.andi import andi_step, gradient_norms, resolve_backend, screen_gradient_norms
from ..functional.precondition import DEFAULT_EPS, DEFAULT_MIN_DIM
from ..functional.validation import (
    AndiHyperparameters,
    Backend,
    Compat,
    check_backend,
    check_step_tensors,
)
from ._base import (
    check_distinct_params,
    evaluate_closure,
    group_tensors,
    load_state_dict_pre_hooks_done,
    params_with_grads,
    run_load_state_dict_pre_hooks,
)

__all__ = ["ANDI"]

#: The fields of :class:`AndiHyperparameters`, read from each group.
_HYPERPARAMETERS = (
    "lr",
    "momentum",
    "nesterov",
    "weight_decay",
    "eps",
    "min_dim",
    "compat",
    "maximize",
    "skip_nonfinite",
    "momentum_dtype",
)
#: Keys every ANDI group has had since the first release (the others get defaults in ``__setstate__``).
_REQUIRED_GROUP_KEYS = ("lr", "momentum", "nesterov", "eps", "min_dim")
#: Defaults of keys added after the first release, filled in when an older state dict or pickle is loaded.
_LATER_KEYS = {
    "compat": "paper",
    "foreach": None,
    "fused": None,
    "maximize": False,
    "momentum_dtype": None,
    "skip_nonfinite": False,
    "weight_decay": 0.0,
    "backend": "auto",
}


class ANDI(Optimizer):
    r"""ANDI — Adaptive Norm-Distribution Interface (Algorithm 1 of the ANDI paper).

    .. math::
        \begin{aligned}
        &\textbf{input}: \eta \text{ (lr)},\ \mu \text{ (momentum)},\ \lambda \text{ (weight decay)},\
            \epsilon,\ \delta \text{ (min_dim)},\ \text{nesterov} \\
        &\textbf{for } t = 1, 2, \ldots \textbf{ and every parameter } \theta \text{ with gradient } G_t: \\
        &\quad \nu = \|G_t\|_F,\quad \tau = \sqrt{\nu^2 + 1} \\
        &\quad \textbf{if } \min(m, n) > \delta \text{ for } M = G_t \text{ viewed as } (d_1, d_2\cdots d_k): \\
        &\qquad r_i = \|M_{i,:}\|,\ c_j = \|M_{:,j}\|,\ \hat G_{ij} = M_{ij} / (r_i + c_j + \epsilon),\
            H_t = \tau\, \hat G / (\|\hat G\|_F + \epsilon) \\
        &\quad \textbf{else}:\ H_t = \tau\, G_t / (\nu + \epsilon) \\
        &\quad M_t = \mu M_{t-1} + H_t \quad (M_0 = 0) \\
        &\quad U_t = H_t + \mu M_t \text{ if nesterov else } M_t \\
        &\quad \theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\, U_t
        \end{aligned}

    One state tensor per parameter (``momentum_buffer``), :math:`O(N)` work per step.

    **ANDI is not scale-invariant**: :math:`\|H\|_F = \sqrt{\|G\|^2 + 1}` depends on the gradient's magnitude, so loss
    scaling (unscale AMP gradients first), mean vs sum reduction, gradient accumulation and clipping all change the
    step (see ``docs/algorithm.md``).

    Args:
        params: parameters or parameter groups.
        lr (float or Tensor): learning rate η (default 0.02). A 1-element Tensor avoids recompiles under
            ``torch.compile`` when a scheduler changes it.
        momentum (float): μ in [0, 1) (default 0.9).
        nesterov (bool): Nesterov momentum (default True; with ``momentum = 0`` it is plain, U = H).
        weight_decay (float): decoupled weight decay λ, applied as θ ← θ(1 − ηλ) (default 0, as in the paper).
        eps (float): ε > 0 guarding the divisions (default 1e-8, paper §4). Keeps Φ(0) = 0.
        min_dim (int): δ; a tensor viewed as an m × n matrix is equilibrated when ``min(m, n) > min_dim``
            (default 16, paper §4). Vectors, scalars and smaller matrices get the global energy normalisation.
        compat (str): ``"paper"`` (Algorithm 1; default) or ``"reference"``: the author's ``ANDI.py`` script bit for
            bit (eps added to each norm, τ = hypot(‖G‖ + 1e-8, 1) on matrices, first momentum buffer
            (1 + μ)·H₁, math in the parameter dtype, no weight decay); or ``"v7"``: the author's later class
            (``experiments/ANDI.py`` @5cb1d03, the paper's v7) bit for bit: the ``"reference"`` operations, the
            vector branch's τ = hypot(‖G‖ + 1e-8, 1) too, and weight decay θ ← θ(1 − ηλ) before the update.
            Use :func:`andi.weight_decay_groups` for the v7 script's decay groups.
        foreach (bool, optional): use the multi-tensor (``torch._foreach_*``) implementation. ``None`` picks it on
            accelerators, and on CPU only for many small tensors (measured: the single-tensor loop is faster on CPU
            for large ones, see :func:`andi.functional.eager.default_foreach`).
        fused (bool, optional): the fused step (:mod:`andi.functional.fused`): Triton kernels on CUDA when Triton is
            installed, else one ``torch.compile`` graph over every tensor (no host sync mid-step, hyperparameters as
            tensors so schedules never recompile). ``None`` leaves it off until the fused kernels have been proven on a
            GPU (:data:`andi.functional.fused.FUSED_BY_DEFAULT_ON`); ``True`` opts in, also on CPU, where its first
            step compiles C++ (tens of seconds).
        maximize (bool): maximize the objective instead of minimizing it (uses Φ(−G) = −Φ(G)).
        skip_nonfinite (bool): when a gradient holds NaN/Inf, skip that tensor's update and count it in
            :attr:`nonfinite_skips` instead of raising :class:`FloatingPointError` (default False). Either way no
            NaN is written into parameters or state, and a refused step changes nothing.
        momentum_dtype (torch.dtype, optional): dtype of the momentum buffer; default the parameter's dtype. Pass
            ``torch.float32`` to keep fp32 momentum for bf16/fp16 parameters.
        backend (str): the implementation, as in :func:`andi.functional.andi`: ``"auto"`` (default; ``foreach`` and
            ``fused`` refine it), ``"single"``, ``"foreach"``, ``"compiled"``, ``"triton"`` or ``"dtensor"``. A
            backend other than ``"auto"`` leaves ``foreach`` and ``fused`` as ``None``.

    Low-precision parameters (fp16/bf16): all norms and the preconditioner run in fp32; the result is rounded to the
    buffer dtype. Sparse gradients and complex parameters raise ``RuntimeError``.
    """

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 0.02,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 0.0,
        eps: float = DEFAULT_EPS,
        min_dim: int = DEFAULT_MIN_DIM,
        *,
        compat: Compat = "paper",
        foreach: bool | None = None,
        fused: bool | None = None,
        maximize: bool = False,
        skip_nonfinite: bool = False,
        momentum_dtype: torch.dtype | None = None,
        backend: Backend = "auto",
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            nesterov=nesterov,
            weight_decay=weight_decay,
            eps=eps,
            min_dim=min_dim,
            compat=compat,
            foreach=foreach,
            fused=fused,
            maximize=maximize,
            skip_nonfinite=skip_nonfinite,
            momentum_dtype=momentum_dtype,
            backend=backend,
        )
        _validate(defaults)
        #: Number of tensor updates skipped because of non-finite gradients (with ``skip_nonfinite=True``).
        self.nonfinite_skips = 0
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        tensors = group_tensors(params)
        check_distinct_params(tensors)
        for p in tensors:
            if p.is_complex():
                raise RuntimeError("ANDI does not support complex parameters; optimize torch.view_as_real(p) instead")
        _validate({**self.defaults, **param_group})
        super().add_param_group({**param_group, "params": params})

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("nonfinite_skips", 0)
        for group in self.param_groups:
            for key, value in _LATER_KEYS.items():
                group.setdefault(key, value)

    def _init_group(
        self,
        group: dict[str, Any],
        params: list[Tensor],
        grads: list[Tensor],
        bufs: list[Tensor | None],
    ) -> None:
        for p, grad in params_with_grads(group, "ANDI"):
            params.append(p)
            grads.append(grad)
            bufs.append(self.state[p].get("momentum_buffer"))

    @torch.no_grad()
    def step(self, closure: Callable[[], float | Tensor] | None = None) -> float | Tensor | None:
        """Perform one optimization step.

        Args:
            closure: optional callable that re-evaluates the model and returns the loss (run with grad enabled).
        """
        loss = evaluate_closure(closure)

        collected = []
        for index, group in enumerate(self.param_groups):
            params: list[Tensor] = []
            grads: list[Tensor] = []
            bufs: list[Tensor | None] = []
            self._init_group(group, params, grads, bufs)
            # Every check that can refuse the step runs for every group before the first write.
            hp = _validate(group, where=f"param_groups[{index}]")
            check_step_tensors(params, grads, bufs, names=_param_names(group, params))
            if params:
                backend = resolve_backend(params, group["backend"], foreach=group["foreach"], fused=group["fused"])
                collected.append((group, hp, backend, params, grads, bufs))
        if len(collected) > 1:
            # A refused step must change nothing: screen every group before the first one is updated.
            # (A single group is screened inside the functional at no extra cost.)
            screened = [g for _, hp, _, _, grads, _ in collected if not hp.skip_nonfinite for g in grads]
            if screened:
                screen_gradient_norms(screened, gradient_norms(screened))

        for _, hp, backend, params, grads, bufs in collected:
            self.nonfinite_skips += andi_step(params, grads, bufs, hp, backend=backend, check_inputs=False)
            for p, buf in zip(params, bufs):
                if buf is not None:
                    self.state[p]["momentum_buffer"] = buf
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state, after checking that it is ANDI's and fits these parameters (else nothing changes).

        Refused with ``ValueError`` naming the group or parameter: another optimizer's state dict (AdamW's, SGD's:
        missing ANDI hyperparameters, or per-parameter state other than ``momentum_buffer``), invalid
        hyperparameters (the rules of :func:`andi.functional.validation.check_hyperparameters`), a momentum buffer
        whose shape differs from its parameter's or whose dtype is not floating point. Momentum buffers kept in
        ``momentum_dtype`` are restored in that dtype, not the parameter's. As in torch, the
        ``register_load_state_dict_pre_hook`` hooks run first; the check runs on what they return.
        """
        state_dict = run_load_state_dict_pre_hooks(self, state_dict)
        _check_state_dict(self, state_dict)
        saved = {k: v.get("momentum_buffer") for k, v in state_dict["state"].items()}
        with load_state_dict_pre_hooks_done(self):
            super().load_state_dict(state_dict)
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                buf = saved.get(index)
                wanted = group["momentum_dtype"]
                if buf is not None and wanted is not None and p in self.state:
                    self.state[p]["momentum_buffer"] = buf.to(device=p.device, dtype=wanted, copy=True)
                index += 1


def _param_names(group: dict[str, Any], params: list[Tensor]) -> list[str] | None:
    """Names of the parameters with gradients (for messages), when the group was built from named parameters."""
    names = group.get("param_names")
    if names is None:
        return None
    by_id = {id(p): n for p, n in zip(group["params"], names)}
    return [by_id.get(id(p), "?") for p in params]


def _check_state_dict(optimizer: ANDI, state_dict: dict[str, Any]) -> None:
    """Refuse, before anything is loaded, a state dict that is not ANDI's or does not fit ``optimizer``."""
    if not isinstance(state_dict, dict) or "state" not in state_dict or "param_groups" not in state_dict:
        raise ValueError(
            "ANDI.load_state_dict: expected a dict with 'state' and 'param_groups' (from optimizer.state_dict())"
        )
    saved_groups = state_dict["param_groups"]
    if len(saved_groups) != len(optimizer.param_groups):
        raise ValueError(
            f"ANDI.load_state_dict: the state dict has {len(saved_groups)} parameter groups, this optimizer "
            f"{len(optimizer.param_groups)}"
        )
    params_by_index: dict[int, tuple[str, Tensor]] = {}
    for g, (group, saved) in enumerate(zip(optimizer.param_groups, saved_groups)):
        where = f"param_groups[{g}]"
        missing = [k for k in _REQUIRED_GROUP_KEYS if k not in saved]
        if missing:
            raise ValueError(
                f"ANDI.load_state_dict: {where} lacks {', '.join(map(repr, missing))}: this is not an ANDI state dict "
                f"(its keys are {sorted(k for k in saved if k not in ('params', 'param_names'))}; was it saved by "
                "another optimizer?)"
            )
        _validate({**_LATER_KEYS, **saved}, where=where)
        if len(saved["params"]) != len(group["params"]):
            raise ValueError(
                f"ANDI.load_state_dict: {where} holds {len(saved['params'])} parameters in the state dict, "
                f"{len(group['params'])} here"
            )
        names = group.get("param_names") or saved.get("param_names")
        for j, (key, p) in enumerate(zip(saved["params"], group["params"])):
            label = f"{where} parameter {j}" + (f" ({names[j]!r})" if names is not None and j < len(names) else "")
            params_by_index[key] = (label, p)
    for key, entry in state_dict["state"].items():
        if key not in params_by_index:
            continue
        label, p = params_by_index[key]
        foreign = sorted(str(k) for k in entry if k != "momentum_buffer")
        if foreign:
            raise ValueError(
                f"ANDI.load_state_dict: the state of {label} holds {foreign}; ANDI keeps only 'momentum_buffer' "
                "(was this state dict saved by another optimizer?)"
            )
        buf = entry.get("momentum_buffer")
        if buf is None:
            continue
        if not isinstance(buf, Tensor) or not buf.is_floating_point():
            kind = buf.dtype if isinstance(buf, Tensor) else type(buf).__name__
            raise ValueError(f"ANDI.load_state_dict: the momentum buffer of {label} is {kind}, not a floating tensor")
        if buf.shape != p.shape:
            raise ValueError(
                f"ANDI.load_state_dict: the momentum buffer of {label} has shape {tuple(buf.shape)}, the parameter "
                f"{tuple(p.shape)}; was the state dict saved for another model?"
            )


def _validate(group: dict[str, Any], where: str | None = None) -> AndiHyperparameters:
    """Check one group (constructor, ``add_param_group``, ``load_state_dict`` and every step) and return its
    hyperparameters as the record every backend reads; ``where`` prefixes the message (e.g. ``param_groups[1]``)."""
    try:
        hp = AndiHyperparameters(**{k: group[k] for k in _HYPERPARAMETERS})  # validated when built
        check_backend(group["backend"], group["foreach"], group["fused"])
    except ValueError as err:
        if where is None:
            raise
        raise ValueError(f"{where}: {err}") from None
    return hp
