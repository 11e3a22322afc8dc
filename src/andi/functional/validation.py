"""One validation of ANDI's inputs, shared by every entry point, and the one error a refused step raises.

``check_hyperparameters`` is called by the optimizer's constructor, ``add_param_group``, ``load_state_dict``,
every ``step()`` (so a group edited by hand is caught before anything is written) and the functional
:func:`andi.functional.andi`.
``check_step_tensors`` checks the tensors of one step (shapes, devices, dtypes of parameters, gradients and momentum
buffers) before the first write. Both cost a few comparisons per group and per tensor and never synchronize with an
accelerator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "BACKENDS",
    "COMPAT_MODES",
    "SCRIPT_COMPAT_MODES",
    "AndiHyperparameters",
    "Backend",
    "Compat",
    "check_backend",
    "check_hyperparameters",
    "check_step_tensors",
    "nonfinite_gradient_error",
    "norm_limit",
]

Compat = Literal["paper", "reference", "v7"]
#: The values of ``compat``: Algorithm 1 of the paper; the author's script ``ANDI.py`` @29f90fe bit for bit
#: (``"reference"``); the author's later class of ``experiments/ANDI.py`` @5cb1d03, the paper's v7, bit for bit, with
#: its weight decay (``"v7"``).
COMPAT_MODES: tuple[str, ...] = ("paper", "reference", "v7")
#: The modes that replay one of the author's scripts op for op, in the parameter's dtype.
SCRIPT_COMPAT_MODES: tuple[str, ...] = ("reference", "v7")

Backend = Literal["auto", "single", "foreach", "compiled", "triton", "dtensor"]
#: The values of ``backend`` (:func:`andi.functional.andi`).
BACKENDS: tuple[str, ...] = ("auto", "single", "foreach", "compiled", "triton", "dtensor")


def _is_real_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_lr(lr: float | Tensor) -> None:
    if isinstance(lr, Tensor):
        if lr.numel() != 1 or not lr.is_floating_point():
            raise ValueError(
                "Invalid learning rate: Tensor lr must be 1-element and floating point, "
                f"got shape {tuple(lr.shape)}, dtype {lr.dtype}"
            )
        # Reading the value is free on CPU; on an accelerator (or while compiling) it would be a host sync.
        if lr.device.type != "cpu" or torch.compiler.is_compiling():
            return
        value = float(lr.detach().reshape(()).item())
    elif _is_real_number(lr):
        value = float(lr)
    else:
        raise ValueError(f"Invalid learning rate: {lr!r} (expected a float or a 1-element Tensor)")
    if not (math.isfinite(value) and value >= 0.0):
        raise ValueError(f"Invalid learning rate: {value} (must be finite and >= 0)")


def check_hyperparameters(
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    min_dim: int,
    compat: str = "paper",
    maximize: bool = False,
    skip_nonfinite: bool = False,
    momentum_dtype: torch.dtype | None = None,
) -> None:
    """Raise ``ValueError`` naming the first invalid hyperparameter of ANDI; return ``None`` when all are valid.

    The rules: ``lr`` finite and >= 0 (a float or a 1-element float Tensor); ``0 <= momentum < 1`` (Nesterov with
    ``momentum = 0`` is allowed, as torch's SGD allows a scheduler to write it: it is plain preconditioned SGD);
    ``weight_decay`` finite and >= 0; ``eps`` finite and > 0 (it keeps Φ(0) = 0 finite);
    ``min_dim`` an int >= 0; ``compat`` one of :data:`COMPAT_MODES`, and ``compat="reference"`` (the script) has no
    weight decay; both script modes (``"reference"``, ``"v7"``) keep momentum in the parameter dtype; the flags are
    bools; ``momentum_dtype`` a floating
    ``torch.dtype`` or ``None``. The choice of implementation is checked by :func:`check_backend`.

    Examples:
        >>> check_hyperparameters(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)
        >>> check_hyperparameters(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.0, eps=0.0, min_dim=16)
        Traceback (most recent call last):
        ...
        ValueError: Invalid epsilon value: 0.0 (must be finite and > 0: it keeps Φ(0) = 0 finite)
    """
    _check_lr(lr)
    if not (_is_real_number(momentum) and 0.0 <= momentum < 1.0):
        raise ValueError(f"Invalid momentum value: {momentum!r} (must be in [0, 1))")
    if nesterov not in (True, False):
        raise ValueError(f"Invalid nesterov value: {nesterov!r} (expected a bool)")
    if not (_is_real_number(weight_decay) and 0.0 <= weight_decay < math.inf):
        raise ValueError(f"Invalid weight_decay value: {weight_decay!r} (must be finite and >= 0)")
    if not (_is_real_number(eps) and 0.0 < eps < math.inf):
        raise ValueError(f"Invalid epsilon value: {eps!r} (must be finite and > 0: it keeps Φ(0) = 0 finite)")
    if isinstance(min_dim, bool) or not isinstance(min_dim, int) or min_dim < 0:
        raise ValueError(f"Invalid min_dim value: {min_dim!r} (must be an int >= 0)")
    if compat not in COMPAT_MODES:
        raise ValueError(f"Invalid compat mode: {compat!r} (expected 'paper', 'reference' or 'v7')")
    for name, flag in (("maximize", maximize), ("skip_nonfinite", skip_nonfinite)):
        if flag not in (True, False):
            raise ValueError(f"Invalid {name} value: {flag!r} (expected a bool)")
    if momentum_dtype is not None and not (
        isinstance(momentum_dtype, torch.dtype) and momentum_dtype.is_floating_point
    ):
        raise ValueError(f"Invalid momentum_dtype: {momentum_dtype!r} (expected a floating torch.dtype or None)")
    if compat == "reference" and weight_decay != 0:
        raise ValueError(
            "compat='reference' reproduces the 29f90fe script, which has no weight decay; use compat='v7' (the "
            "author's later class, with weight decay) or compat='paper'"
        )
    if compat in SCRIPT_COMPAT_MODES and momentum_dtype is not None:
        raise ValueError(f"compat={compat!r} keeps momentum in the parameter dtype; momentum_dtype is not allowed")


def check_backend(backend: str = "auto", foreach: bool | None = None, fused: bool | None = None) -> None:
    """Raise ``ValueError`` unless ``backend`` is one of :data:`BACKENDS` and the optimizer-style flags fit it:
    ``foreach``/``fused`` are ``None`` or bools, not both ``True``, and both ``None`` when ``backend`` names the
    implementation itself (anything but ``"auto"``)."""
    for name, flag in (("foreach", foreach), ("fused", fused)):
        if flag not in (None, True, False):
            raise ValueError(f"Invalid {name} value: {flag!r} (expected None, True or False)")
    if foreach and fused:
        raise ValueError("`fused` and `foreach` cannot be `True` together.")
    if backend not in BACKENDS:
        raise ValueError(f"Invalid backend: {backend!r} (expected one of {', '.join(map(repr, BACKENDS))})")
    if backend != "auto" and (foreach is not None or fused is not None):
        raise ValueError(f"backend={backend!r} already names the implementation; leave foreach and fused as None")


def _describe(index: int, names: Sequence[str] | None) -> str:
    if names is not None and index < len(names):
        return f"parameter {index} ({names[index]!r})"
    return f"parameter {index}"


def check_step_tensors(
    params: Sequence[Tensor],
    grads: Sequence[Tensor],
    momentum_buffers: Sequence[Tensor | None],
    *,
    names: Sequence[str] | None = None,
) -> None:
    """Refuse, before anything is written, a step whose tensors cannot all be updated.

    Checks: the three lists have the same length; every gradient is dense, real and has its parameter's shape and
    device; every parameter is real floating point; every momentum buffer (when present) is a real floating tensor
    of its parameter's shape on its device. Sparse gradients and complex tensors raise ``RuntimeError``, the rest
    ``ValueError``/``TypeError``, each naming the parameter. DTensor buffers and parameters are compared by their
    global shape (a plain buffer of the global shape is accepted too: it is cut into shards on use).
    """
    if not (len(params) == len(grads) == len(momentum_buffers)):
        raise ValueError("andi: params, grads and momentum_buffers must have the same length")
    strided = torch.strided
    for i, (p, g, buf) in enumerate(zip(params, grads, momentum_buffers)):
        # The common case in a handful of attribute reads; the diagnosis below runs only when something is off.
        plain = type(p) in _PLAIN
        if (
            p.dtype.is_floating_point
            and g.dtype.is_floating_point
            and g.layout is strided
            and g.shape == p.shape
            and (not plain or g.device == p.device)
            and (
                buf is None
                or (
                    isinstance(buf, Tensor)
                    and buf.dtype.is_floating_point
                    and buf.shape == p.shape
                    and (not plain or type(buf) not in _PLAIN or buf.device == p.device)
                )
            )
        ):
            continue
        _diagnose(i, p, g, buf, plain, names)


_PLAIN = (Tensor, torch.nn.Parameter)


def _diagnose(i: int, p: Tensor, g: Tensor, buf: Tensor | None, plain: bool, names: Sequence[str] | None) -> None:
    """Raise the error that explains why parameter ``i`` cannot be updated."""
    what = _describe(i, names)
    if g.is_sparse or g.layout != torch.strided:
        raise RuntimeError(f"ANDI does not support sparse gradients ({what})")
    if p.is_complex() or g.is_complex():
        raise RuntimeError(f"ANDI does not support complex tensors ({what}); optimize torch.view_as_real(p)")
    if not p.is_floating_point() or not g.is_floating_point():
        raise TypeError(f"ANDI: {what} has dtype {p.dtype} (gradient {g.dtype}); both must be floating point")
    if g.shape != p.shape:
        raise ValueError(f"ANDI: the gradient of {what} has shape {tuple(g.shape)}, the parameter {tuple(p.shape)}")
    if plain and g.device != p.device:
        raise ValueError(f"ANDI: the gradient of {what} is on {g.device}, the parameter on {p.device}")
    if not isinstance(buf, Tensor):
        raise TypeError(f"ANDI: the momentum buffer of {what} is a {type(buf).__name__}, not a Tensor")
    if not buf.is_floating_point():
        raise TypeError(f"ANDI: the momentum buffer of {what} has dtype {buf.dtype}; it must be floating point")
    if buf.shape != p.shape:
        raise ValueError(
            f"ANDI: the momentum buffer of {what} has shape {tuple(buf.shape)}, the parameter {tuple(p.shape)}; "
            "was the state dict saved for another model?"
        )
    raise ValueError(f"ANDI: the momentum buffer of {what} is on {buf.device}, the parameter on {p.device}")


def norm_limit(dtype: torch.dtype) -> float:
    """The largest gradient norm ``‖G‖_F`` that ANDI updates in ``dtype`` (its compute dtype).

    Row and column norms add up to at most ``2‖G‖`` in the denominator ``r_i + c_j + ε``, and ``‖H‖ = sqrt(‖G‖² + 1)``
    must be representable, so the limit is half the dtype's largest finite value (1.7e38 in float32).
    """
    return torch.finfo(dtype).max / 2


def nonfinite_gradient_error(
    index: int,
    *,
    overflow_norm: float | None = None,
    dtype: torch.dtype | None = None,
    distributed: bool = False,
) -> FloatingPointError:
    """The error of a refused step: a gradient holding NaN/Inf, or (``overflow_norm`` given) a finite gradient whose
    norm is beyond :func:`norm_limit` of ``dtype``. The message says that nothing was modified and what to do."""
    where = "on every rank " if distributed else ""
    if overflow_norm is not None:
        name = str(dtype).removeprefix("torch.") if dtype is not None else "the compute dtype"
        limit = norm_limit(dtype) if dtype is not None else float("nan")
        cause = (
            f"finite gradient whose norm ‖G‖ = {overflow_norm:.3g} overflows {name} (ANDI's update needs "
            f"‖G‖ <= {limit:.3g})"
        )
        advice = "Scale the loss down, clip the gradient, or optimize the parameter in float64."
    else:
        cause = "non-finite gradient (NaN or Inf)"
        advice = (
            "With AMP, call scaler.unscale_(optimizer) before step() (GradScaler skips such steps itself), or "
            "construct ANDI(..., skip_nonfinite=True) to skip these tensors and count them."
        )
    return FloatingPointError(
        f"ANDI: {cause} for parameter {index} of the group; the step was refused {where}and no parameter or state "
        f"was changed. {advice}"
    )


@dataclass(frozen=True)
class AndiHyperparameters:
    r"""ANDI's hyperparameters for one call, validated once when built and read by every backend.

    The update rule they parameterise (per tensor, :math:`H = \Phi(G)` with ``eps`` and ``min_dim``):
    :math:`M \leftarrow \mu M + H`, :math:`U = H + \mu M` (``nesterov``) or :math:`M`,
    :math:`\theta \leftarrow \theta(1 - \eta\lambda) - \eta U`.

    Examples:
        >>> hp = AndiHyperparameters(lr=0.02, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)
        >>> hp.compat
        'paper'
        >>> AndiHyperparameters(lr=0.02, momentum=1.0, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)
        Traceback (most recent call last):
        ...
        ValueError: Invalid momentum value: 1.0 (must be in [0, 1))
    """

    lr: float | Tensor
    momentum: float
    nesterov: bool
    weight_decay: float
    eps: float
    min_dim: int
    compat: Compat = "paper"
    maximize: bool = False
    skip_nonfinite: bool = False
    momentum_dtype: torch.dtype | None = None

    def __post_init__(self) -> None:
        check_hyperparameters(
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            weight_decay=self.weight_decay,
            eps=self.eps,
            min_dim=self.min_dim,
            compat=self.compat,
            maximize=self.maximize,
            skip_nonfinite=self.skip_nonfinite,
            momentum_dtype=self.momentum_dtype,
        )
        if isinstance(self.lr, Tensor) and self.lr.dim() > 0:
            # A 1-element lr of any shape is a scalar: a 0-dim view (it shares the caller's storage, so a scheduler
            # writing the tensor in place still takes effect) keeps every update's shape that of its parameter.
            object.__setattr__(self, "lr", self.lr.view(()))
