r"""Muon in KellerJordan's reference form, for any weight with at least two dimensions (conv filters included).

``torch.optim.Muon`` (torch >= 2.9) is the implementation of choice for 2-D hidden matrices on accelerators and is what
the registry's ``muon`` arm uses whenever every matrix it receives is 2-D and its Newton–Schulz would run in bf16. It
rejects conv filters, so this module supplies the same math with KellerJordan's ``(out, in·kh·kw)`` view (``muon.py``:
``update.view(len(update), -1)``). On 2-D tensors :class:`Muon` performs the operations of ``torch.optim.Muon`` in the
same order, and with ``ns_dtype=torch.bfloat16`` in the same dtype: a test checks that the two then agree on CPU.

Newton–Schulz precision: ``torch.optim.Muon`` always iterates in bf16 (``_zeropower_via_newtonschulz`` calls
``grad.bfloat16()``; there is no option). :class:`Muon`'s default ``ns_dtype=None`` iterates in bf16 on accelerators and
in **float32 on CPU** (:func:`andi.functional.newton_schulz.resolve_ns_dtype`), because CPUs without native bf16
emulate it very slowly (over 3 minutes for one step on eight 1024×1024 matrices). :func:`make_muon` therefore builds
:class:`Muon` for parameters on the CPU, unless ``ns_dtype=torch.bfloat16`` is asked for.

Reference: K. Jordan et al., "Muon: An optimizer for hidden layers in neural networks" (2024),
https://kellerjordan.github.io/posts/muon/, code ``KellerJordan/Muon:muon.py`` (MIT).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..functional.muon import ADJUST_LR_FNS, adjusted_lr, muon, muon_update
from ..functional.newton_schulz import DEFAULT_NS_STEPS, NS5_COEFFICIENTS, NS_EPS, Coefficients, resolve_ns_dtype
from ._base import MatrixOptimizer, check_lr, check_range

__all__ = ["Muon", "adjusted_lr", "make_muon", "muon_update"]


class Muon(MatrixOptimizer):
    r"""Muon — MomentUm Orthogonalized by Newton–Schulz — for weights with ``ndim >= 2``.

    .. math::
        \begin{aligned}
        &M_t = \mu M_{t-1} + (1-\mu) G_t \quad (M_0 = 0) \\
        &U_t = (1-\mu) G_t + \mu M_t \text{ if nesterov else } M_t \\
        &O_t = \mathrm{NS5}\big(U_t \text{ viewed as } (d_1, d_2\cdots d_k)\big) \\
        &\theta_t = \theta_{t-1}(1 - \eta\lambda) - \eta\sqrt{\max(1, m/n)}\; O_t
        \end{aligned}

    Same arguments, defaults and ``momentum_buffer`` state as ``torch.optim.Muon`` (so checkpoints are
    interchangeable), except that conv filters are accepted, ``p.grad``/the buffer are never overwritten by the
    Newton–Schulz input normalization, and Newton–Schulz runs in float32 on CPU unless ``ns_dtype`` says otherwise.
    KellerJordan's recommended settings are ``lr=0.02, weight_decay=0`` (torch's defaults are ``lr=1e-3,
    weight_decay=0.1``); route embeddings, heads, biases and gains to AdamW (:func:`andi.param_groups`).

    Args:
        params: parameters (every one with ``ndim >= 2``) or parameter groups.
        lr (float or Tensor): η (default 1e-3, torch's).
        weight_decay (float): decoupled λ, applied as θ(1 − ηλ) with the unadjusted lr (default 0.1, torch's).
        momentum (float): μ in [0, 1) (default 0.95).
        nesterov (bool): Nesterov mixing of gradient and buffer (default True).
        ns_coefficients: ``(a, b, c)`` or a per-step schedule such as Polar Express
            (:data:`andi.functional.newton_schulz.POLAR_EXPRESS_COEFFICIENTS`).
        eps (float): lower bound of the NS input norm (default 1e-7).
        ns_steps (int): Newton–Schulz iterations (default 5).
        adjust_lr_fn (str, optional): ``None``/``"original"`` or ``"match_rms_adamw"``
            (:func:`andi.functional.muon.muon_shape_scale`).
        ns_safety (float): the NS input norm is multiplied by this first (default 1; Polar Express uses
            ``ns_safety=1.02, eps=1e-6``). Not an argument of ``torch.optim.Muon``.
        ns_dtype (torch.dtype, optional): dtype of the Newton–Schulz iteration. ``None`` (default): bf16 on
            accelerators, float32 on CPU, decided per gradient's device at each step. ``torch.bfloat16`` reproduces
            ``torch.optim.Muon`` (bf16 everywhere). Not an argument of ``torch.optim.Muon``.

    The update rule is :func:`andi.functional.muon.muon`.
    """

    _functional = staticmethod(muon)
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        weight_decay: float = 0.1,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_coefficients: Coefficients = NS5_COEFFICIENTS,
        eps: float = NS_EPS,
        ns_steps: int = DEFAULT_NS_STEPS,
        adjust_lr_fn: str | None = None,
        ns_safety: float = 1.0,
        ns_dtype: torch.dtype | None = None,
    ) -> None:
        check_lr(lr)
        check_range("momentum value", momentum, 0.0, 1.0)
        check_range("weight_decay value", weight_decay, 0.0, float("inf"))
        if not 0 <= ns_steps < 100:
            raise ValueError(f"Invalid ns_steps: {ns_steps} (expected 0 <= ns_steps < 100)")
        if adjust_lr_fn not in ADJUST_LR_FNS:
            raise ValueError(f"Unknown adjust_lr_fn {adjust_lr_fn!r}; expected None, 'original' or 'match_rms_adamw'")
        if ns_dtype is not None and not (isinstance(ns_dtype, torch.dtype) and ns_dtype.is_floating_point):
            raise ValueError(f"Invalid ns_dtype: {ns_dtype!r} (expected None or a floating torch.dtype)")
        defaults = dict(
            lr=lr,
            weight_decay=weight_decay,
            momentum=momentum,
            nesterov=nesterov,
            ns_coefficients=ns_coefficients,
            eps=eps,
            ns_steps=ns_steps,
            adjust_lr_fn=adjust_lr_fn,
            ns_safety=ns_safety,
            ns_dtype=ns_dtype,
        )
        super().__init__(params, defaults)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # ``load_state_dict`` ends here: groups saved before ``ns_dtype`` existed get its default.
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("ns_dtype", None)


def make_muon(params: Iterable[Tensor] | Iterable[dict[str, Any]], **kwargs: Any) -> Optimizer:
    """``torch.optim.Muon`` when it can take the job, else :class:`Muon` (same math).

    This is the ``"muon"`` algorithm of :class:`andi.optim.RoutedOptimizer`: the library implementation wherever it
    applies — every parameter 2-D, one ``(a, b, c)`` triple, no ``ns_safety``, and Newton–Schulz in bf16, the only
    dtype torch's class has — and the reference form otherwise (torch's class raises on conv filters and on per-step
    coefficient schedules such as Polar Express). With the default ``ns_dtype=None`` Newton–Schulz runs in bf16 on
    accelerators but in float32 on CPU (see the module docstring), so parameters on the CPU get :class:`Muon`;
    ``ns_dtype=torch.bfloat16`` keeps ``torch.optim.Muon`` there too. The device is the parameters' when the
    optimizer is built: build it after moving the model (:class:`Muon` itself decides per step, so either works).
    """
    groups = list(params)
    tensors = [p for g in groups for p in _group_params(g)]
    settings = [kwargs] + [g for g in groups if isinstance(g, dict)]
    torch_ok = (
        bool(tensors)
        and all(p.ndim == 2 for p in tensors)
        and all(s.get("ns_safety", 1.0) == 1.0 for s in settings)
        and all(_is_triple(s.get("ns_coefficients", NS5_COEFFICIENTS)) for s in settings)
        and all(
            resolve_ns_dtype(s.get("ns_dtype", kwargs.get("ns_dtype")), p.device) == torch.bfloat16
            for s in settings
            for p in tensors
        )
    )
    if torch_ok:
        kwargs = {k: v for k, v in kwargs.items() if k not in ("ns_safety", "ns_dtype")}
        return torch.optim.Muon(groups, **kwargs)
    return Muon(groups, **kwargs)


def _is_triple(coefficients: Any) -> bool:
    return len(coefficients) == 3 and all(isinstance(c, (int, float)) for c in coefficients)


def _group_params(group: Tensor | dict[str, Any]) -> list[Tensor]:
    if isinstance(group, Tensor):
        return [group]
    params = group["params"]
    if isinstance(params, Tensor):
        return [params]
    params = list(params)
    group["params"] = params  # materialize once: a generator must not be consumed twice
    return params
