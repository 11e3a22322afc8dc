"""Shape conventions shared by every structured optimizer in the package.

A tensor with ``k >= 2`` dimensions is treated as the matrix ``(d1, d2·…·dk)``: ``nn.Linear`` weights are used as
stored (out, in), convolution filters become (out, in·kh·kw). This follows the ANDI paper's §2.1 ("we reshape the
gradient into a matrix form") and the reference script; it is the one reshape rule used everywhere here.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["as_matrix", "matrix_shape", "uses_equilibration"]


def matrix_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, int] | None:
    """The ``(rows, cols)`` a tensor of ``shape`` is viewed as, or ``None`` for 0-D and 1-D tensors."""
    if len(shape) < 2:
        return None
    rows = int(shape[0])
    cols = 1
    for d in shape[1:]:
        cols *= int(d)
    return rows, cols


def as_matrix(t: Tensor) -> Tensor:
    """View ``t`` (``ndim >= 2``) as ``(t.shape[0], -1)``; a view when ``t`` is contiguous."""
    if t.ndim < 2:
        raise ValueError(f"as_matrix needs a tensor with at least 2 dimensions, got shape {tuple(t.shape)}")
    rows, cols = matrix_shape(t.shape)  # explicit: reshape(0, -1) is ambiguous for 0-row tensors
    return t.reshape(rows, cols)


def uses_equilibration(shape: torch.Size | tuple[int, ...], min_dim: int) -> bool:
    """Whether ANDI's row/column equilibration applies: ``ndim >= 2`` and ``min(rows, cols) > min_dim``.

    The comparison is strict (the paper: dimensions "exceeding" δ). Always decided on the *global* shape, never on a
    shard of it.
    """
    mat = matrix_shape(shape)
    return mat is not None and min(mat) > min_dim
