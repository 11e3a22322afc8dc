r"""The functional ANDI step: ``andi(params, grads, momentum_buffers, *, lr, ..., backend="auto")``.

For every tensor, with :math:`H_t = \Phi(G_t)` (:mod:`andi.functional.precondition`):

.. math::
    \begin{aligned}
    M_t &= \mu M_{t-1} + H_t, \qquad M_0 = 0 \\
    U_t &= H_t + \mu M_t \ \text{(Nesterov)} \quad\text{else}\quad U_t = M_t \\
    \theta_t &= \theta_{t-1}(1 - \eta\lambda) - \eta U_t
    \end{aligned}

Backends, all with the same result (tests hold them to 1e-6 relative in fp32) and the same contract (inputs checked
and every gradient screened before the first write, so a refused step leaves everything as it was):

==============  =======================================================================================
backend         how the step runs
==============  =======================================================================================
``"single"``    one tensor at a time (:mod:`andi.functional.eager`), the readable reference loop
``"foreach"``   ``torch._foreach_*`` over (device, dtype) buckets (:mod:`andi.functional.eager`)
``"compiled"``  one ``torch.compile`` graph over every tensor (:mod:`andi.functional.fused`)
``"triton"``    Triton kernels, CUDA only (:mod:`andi.functional.fused`)
``"dtensor"``   sharded parameters (FSDP2), two bucketed all-reduces per step (:mod:`andi.functional.dtensor`)
``"auto"``      ``"dtensor"`` for DTensors, else :func:`~andi.functional.fused.default_fused` /
                :func:`~andi.functional.eager.default_foreach` decide
==============  =======================================================================================

The per-tensor update all of them share is in :mod:`andi.functional.updates`; the hyperparameters travel as one
validated :class:`~andi.functional.validation.AndiHyperparameters`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .eager import _multi_tensor_andi, _single_tensor_andi, default_foreach
from .fused import _compiled_andi, _fused_andi, _triton_andi, default_fused
from .updates import is_dtensor, nonfinite_indices, screen_gradient_norms
from .validation import BACKENDS, AndiHyperparameters, Backend, Compat, check_backend, check_step_tensors

__all__ = [
    "BACKENDS",
    "Backend",
    "andi",
    "andi_step",
    "default_foreach",
    "gradient_norms",
    "nonfinite_indices",
    "resolve_backend",
    "screen_gradient_norms",
]


def _has_dtensor(tensors: list[Tensor]) -> bool:
    return any(is_dtensor(t) for t in tensors)


def resolve_backend(
    params: list[Tensor], backend: str = "auto", *, foreach: bool | None = None, fused: bool | None = None
) -> str:
    """The backend a call runs: ``backend`` itself when it is not ``"auto"``, else the choice for ``params``.

    ``foreach``/``fused`` are the optimizer-style flags (``torch.optim`` spelling) and only refine ``"auto"``:
    ``fused=True`` runs the fused step (Triton where it applies, else the compiled graph), ``foreach=True`` /
    ``False`` the foreach / single backend; ``None`` leaves the choice to :func:`~andi.functional.fused.default_fused`
    and :func:`~andi.functional.eager.default_foreach`. DTensor parameters always take ``"dtensor"``. The result is
    one of :data:`BACKENDS` (never ``"auto"``) or ``"fused"`` (Triton where it applies, else compiled).

    Examples:
        >>> resolve_backend([torch.zeros(3)], foreach=False)
        'single'
    """
    check_backend(backend, foreach, fused)
    dtensors = _has_dtensor(params)
    if backend != "auto":
        if dtensors and backend != "dtensor":
            raise ValueError(f"DTensor parameters need backend='dtensor' or 'auto', not {backend!r}")
        return backend
    if dtensors:
        return "dtensor"
    if fused or (fused is None and not foreach and default_fused(params)):
        return "fused"
    if foreach is None:
        foreach = default_foreach(params)
    return "foreach" if foreach else "single"


def _dtensor_backend(*args: object) -> int:
    from .dtensor import _dtensor_andi  # imports torch.distributed: only when sharded parameters are stepped

    return _dtensor_andi(*args)  # type: ignore[arg-type]


_IMPLEMENTATIONS = {
    "single": _single_tensor_andi,
    "foreach": _multi_tensor_andi,
    "fused": _fused_andi,
    "compiled": _compiled_andi,
    "triton": _triton_andi,
    "dtensor": _dtensor_backend,
}


def andi_step(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    hp: AndiHyperparameters,
    *,
    backend: str = "auto",
    check_inputs: bool = True,
) -> int:
    """:func:`andi` with the hyperparameters as one validated record; ``backend`` as resolved by
    :func:`resolve_backend` (``"auto"`` resolves here). ``check_inputs=False`` skips
    :func:`~andi.functional.validation.check_step_tensors` for a caller that has just run it (the optimizer checks
    every group before updating the first one)."""
    if check_inputs:
        check_step_tensors(params, grads, momentum_buffers)
    if not params:
        return 0
    if backend == "auto":
        backend = resolve_backend(params)
    return _IMPLEMENTATIONS[backend](params, grads, momentum_buffers, hp)


def andi(
    params: list[Tensor],
    grads: list[Tensor],
    momentum_buffers: list[Tensor | None],
    *,
    lr: float | Tensor,
    momentum: float,
    nesterov: bool,
    weight_decay: float,
    eps: float,
    min_dim: int,
    compat: Compat = "paper",
    maximize: bool = False,
    backend: Backend = "auto",
    foreach: bool | None = None,
    fused: bool | None = None,
    skip_nonfinite: bool = False,
    momentum_dtype: torch.dtype | None = None,
) -> int:
    r"""Apply one ANDI step in place to ``params`` (see the module docstring for the update rule and backends).

    ``momentum_buffers[i]`` may be ``None`` (no state yet); it is then created from :math:`H_1` and stored back into
    the list, the torch SGD convention. Gradients are never modified.

    Every input is checked before the first write (:mod:`andi.functional.validation`): invalid hyperparameters
    raise ``ValueError``; tensors that cannot be updated (wrong shapes or devices, sparse or complex) raise before any
    tensor is touched.

    Returns:
        The number of tensors skipped because their gradient was non-finite (only with ``skip_nonfinite=True``;
        otherwise a non-finite gradient raises :class:`FloatingPointError` before anything is modified). A finite
        gradient is updated whenever ``‖G‖_F`` is at most half the compute dtype's largest value (its norms are
        recomputed in float64 when the fast accumulation overflows); beyond that it is refused like a non-finite one,
        with a message that says so.

    Examples:
        >>> p, g = torch.ones(3), torch.tensor([3.0, 0.0, 4.0])
        >>> bufs = [None]
        >>> andi([p], [g], bufs, lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)
        0
        >>> bufs[0]  # M_1 = H = sqrt(‖g‖² + 1) · g / ‖g‖ = √26 · (0.6, 0, 0.8)
        tensor([3.0594, 0.0000, 4.0792])
    """
    hp = AndiHyperparameters(
        lr=lr,
        momentum=momentum,
        nesterov=nesterov,
        weight_decay=weight_decay,
        eps=eps,
        min_dim=min_dim,
        compat=compat,
        maximize=maximize,
        skip_nonfinite=skip_nonfinite,
        momentum_dtype=momentum_dtype,
    )
    check_step_tensors(params, grads, momentum_buffers)
    return andi_step(
        params,
        grads,
        momentum_buffers,
        hp,
        backend=resolve_backend(params, backend, foreach=foreach, fused=fused),
        check_inputs=False,
    )


def gradient_norms(grads: list[Tensor]) -> list[Tensor]:
    """‖G‖_F of every gradient (global norms for DTensor shards, one scalar all-reduce for all of them)."""
    if _has_dtensor(grads):
        from .dtensor import dtensor_grad_norms

        return dtensor_grad_norms(grads)
    return list(torch._foreach_norm(grads))
