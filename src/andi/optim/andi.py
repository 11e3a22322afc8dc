"""``andi.ANDI``: the ANDI optimizer as a drop-in :class:`torch.optim.Optimizer`."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Literal

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..functional.andi import _screen, andi, gradient_norms
from ..functional.precondition import DEFAULT_EPS, DEFAULT_MIN_DIM
from ._base import DOCS, check_distinct_params, check_lr, check_range, evaluate_closure, params_with_grads

__all__ = ["ANDI"]

_COMPAT_MODES = ("paper", "reference")


class ANDI(Optimizer):
    r"""ANDI — Adaptive Norm-Distribution Interface (Algorithm 1 of the ANDI paper).

    .. math::
        \begin{aligned}
        &\textbf{input}: \eta \text{ (lr)},\ \mu \text{ (momentum)},\ \lambda \text{ (weight decay)},\
            \epsilon,\ \delta \text{ (min\_dim)},\ \text{nesterov} \\
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
    step (see the README).

    Args:
        params: parameters or parameter groups.
        lr (float or Tensor): learning rate η (default 0.02). A 1-element Tensor avoids recompiles under
            ``torch.compile`` when a scheduler changes it.
        momentum (float): μ in [0, 1) (default 0.9).
        nesterov (bool): Nesterov momentum (default True; requires ``momentum > 0``).
        weight_decay (float): decoupled weight decay λ, applied as θ ← θ(1 − ηλ) (default 0, as in the paper).
        eps (float): ε > 0 guarding the divisions (default 1e-8, paper §4). Keeps Φ(0) = 0.
        min_dim (int): δ; a tensor viewed as an m × n matrix is equilibrated when ``min(m, n) > min_dim``
            (default 16, paper §4). Vectors, scalars and smaller matrices get the global energy normalisation.
        compat (str): ``"paper"`` (Algorithm 1; default) or ``"reference"``: the author's ``ANDI.py`` script bit for
            bit (eps added to each norm, τ = hypot(‖G‖ + 1e-8, 1) on matrices, first momentum buffer
            (1 + μ)·H₁, math in the parameter dtype, no weight decay).
        {foreach}
        fused (bool, optional): the fused step (:mod:`andi.functional.fused`): Triton kernels on CUDA when Triton is
            installed, else one ``torch.compile`` graph over every tensor (no host sync mid-step, hyperparameters as
            tensors so schedules never recompile). ``None`` picks it for dense tensors on one CUDA device. ``True``
            also works on CPU, but its first step compiles C++ (tens of seconds).
        {maximize}
        skip_nonfinite (bool): when a gradient holds NaN/Inf, skip that tensor's update and count it in
            :attr:`nonfinite_skips` instead of raising :class:`FloatingPointError` (default False). Either way no
            NaN is written into parameters or state, and a refused step changes nothing.
        momentum_dtype (torch.dtype, optional): dtype of the momentum buffer; default the parameter's dtype. Pass
            ``torch.float32`` to keep fp32 momentum for bf16/fp16 parameters.

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
        compat: Literal["paper", "reference"] = "paper",
        foreach: bool | None = None,
        fused: bool | None = None,
        maximize: bool = False,
        skip_nonfinite: bool = False,
        momentum_dtype: torch.dtype | None = None,
    ) -> None:
        defaults = dict(
            lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, eps=eps, min_dim=min_dim,
            compat=compat, foreach=foreach, fused=fused, maximize=maximize, skip_nonfinite=skip_nonfinite,
            momentum_dtype=momentum_dtype,
        )
        _validate(defaults)
        #: Number of tensor updates skipped because of non-finite gradients (with ``skip_nonfinite=True``).
        self.nonfinite_skips = 0
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        params = param_group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        check_distinct_params(params)
        for p in params:
            if isinstance(p, Tensor) and p.is_complex():
                raise RuntimeError("ANDI does not support complex parameters; optimize torch.view_as_real(p) instead")
        merged = {**self.defaults, **param_group, "params": params}
        _validate(merged)
        super().add_param_group({**param_group, "params": params})

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self.__dict__.setdefault("nonfinite_skips", 0)
        for group in self.param_groups:
            group.setdefault("compat", "paper")
            group.setdefault("foreach", None)
            group.setdefault("fused", None)
            group.setdefault("maximize", False)
            group.setdefault("momentum_dtype", None)
            group.setdefault("skip_nonfinite", False)
            group.setdefault("weight_decay", 0.0)

    def _init_group(
        self, group: dict[str, Any], params: list[Tensor], grads: list[Tensor], bufs: list[Tensor | None],
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
        for group in self.param_groups:
            params: list[Tensor] = []
            grads: list[Tensor] = []
            bufs: list[Tensor | None] = []
            self._init_group(group, params, grads, bufs)
            if params:
                collected.append((group, params, grads, bufs))
        if len(collected) > 1:
            # A refused step must change nothing: screen every group before the first one is updated.
            # (A single group is screened inside the functional at no extra cost.)
            screened = [g for group, _, grads, _ in collected if not group["skip_nonfinite"] for g in grads]
            if screened:
                _screen(gradient_norms(screened), skip_nonfinite=False)

        for group, params, grads, bufs in collected:
            skipped = andi(
                params, grads, bufs, lr=group["lr"], momentum=group["momentum"], nesterov=group["nesterov"],
                weight_decay=group["weight_decay"], eps=group["eps"], min_dim=group["min_dim"],
                compat=group["compat"], maximize=group["maximize"], foreach=group["foreach"], fused=group["fused"],
                skip_nonfinite=group["skip_nonfinite"], momentum_dtype=group["momentum_dtype"],
            )
            self.nonfinite_skips += skipped
            for p, buf in zip(params, bufs):
                if buf is not None:
                    self.state[p]["momentum_buffer"] = buf
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load state; momentum buffers kept in ``momentum_dtype`` are restored in that dtype, not the param's."""
        saved = {k: v.get("momentum_buffer") for k, v in state_dict["state"].items()}
        super().load_state_dict(state_dict)
        index = 0
        for group in self.param_groups:
            for p in group["params"]:
                buf = saved.get(index)
                wanted = group["momentum_dtype"]
                if buf is not None and wanted is not None and p in self.state:
                    self.state[p]["momentum_buffer"] = buf.to(device=p.device, dtype=wanted, copy=True)
                index += 1


def _validate(group: dict[str, Any]) -> None:
    check_lr(group["lr"])
    check_range("momentum value", group["momentum"], 0.0, 1.0)
    if group["nesterov"] and group["momentum"] == 0:
        raise ValueError("Nesterov momentum requires a momentum > 0")
    check_range("weight_decay value", group["weight_decay"], 0.0, float("inf"))
    eps = group["eps"]
    if not (isinstance(eps, (int, float)) and not isinstance(eps, bool) and eps > 0 and eps < float("inf")):
        raise ValueError(f"Invalid epsilon value: {eps} (must be > 0: it keeps Φ(0) = 0 finite)")
    min_dim = group["min_dim"]
    if isinstance(min_dim, bool) or not isinstance(min_dim, int) or min_dim < 0:
        raise ValueError(f"Invalid min_dim value: {min_dim} (must be an int >= 0)")
    if group["compat"] not in _COMPAT_MODES:
        raise ValueError(f"Invalid compat mode: {group['compat']!r} (expected 'paper' or 'reference')")
    if group["compat"] == "reference":
        if group["weight_decay"] != 0:
            raise ValueError("compat='reference' reproduces the script, which has no weight decay; use compat='paper'")
        if group["momentum_dtype"] is not None:
            raise ValueError("compat='reference' keeps momentum in the parameter dtype; momentum_dtype is not allowed")
    if group["skip_nonfinite"] not in (True, False):
        raise ValueError(f"Invalid skip_nonfinite value: {group['skip_nonfinite']!r} (expected a bool)")
    for flag in ("foreach", "fused"):
        if group[flag] not in (None, True, False):
            raise ValueError(f"Invalid {flag} value: {group[flag]!r} (expected None, True or False)")
    if group["foreach"] and group["fused"]:
        raise ValueError("`fused` and `foreach` cannot be `True` together.")
    if group["momentum_dtype"] is not None and not (
        isinstance(group["momentum_dtype"], torch.dtype) and group["momentum_dtype"].is_floating_point
    ):
        raise ValueError(f"Invalid momentum_dtype: {group['momentum_dtype']!r} (expected a floating torch.dtype)")


ANDI.__doc__ = (ANDI.__doc__ or "").replace("{foreach}", DOCS["foreach"]).replace("{maximize}", DOCS["maximize"])
