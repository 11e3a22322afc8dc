r"""ANDI's stateless preconditioner :math:`H = \Phi(G)` (paper Algorithm 1, lines 3-12).

For a gradient tensor :math:`G` with :math:`\nu = \|G\|_F` and target energy :math:`\tau = \sqrt{\nu^2 + 1}`:

.. math::
    \begin{aligned}
    &\textbf{if } \min(m, n) > \delta \text{ for } M = G_{(d_1, -1)} \in \mathbb{R}^{m\times n}: \\
    &\qquad r_i = \|M_{i,:}\|_2,\quad c_j = \|M_{:,j}\|_2,\quad
          \hat G_{ij} = \frac{M_{ij}}{r_i + c_j + \epsilon},\quad
          H = \frac{\tau}{\|\hat G\|_F + \epsilon}\,\hat G \\
    &\textbf{else:}\qquad H = \frac{\tau}{\nu + \epsilon}\, G
    \end{aligned}

Properties (tested): :math:`\langle G, H\rangle > 0` for :math:`G \ne 0`, :math:`|\hat G_{ij}| \le 1/2`,
:math:`\|H\|_F = \tau` up to :math:`\epsilon`, :math:`\Phi(0) = 0`. Work is :math:`O(N)`, temporaries
:math:`O(m + n)` beyond the output.

``compat="reference"`` reproduces the author's script ``ANDI.py`` (VladimerKhasia/ANDI@29f90fe) operation by
operation: ``eps`` added to each norm, ``τ = hypot(‖G‖ + 1e-8, 1)`` on the matrix branch, no fp32 upcast.
``compat="v7"`` reproduces the author's later class (``experiments/ANDI.py`` @5cb1d03, the paper's v7), which differs
from it in one operation: the vector/small branch also takes ``τ = hypot(‖G‖ + 1e-8, 1)``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .matrix import as_matrix, matrix_shape, uses_equilibration
from .validation import COMPAT_MODES, Compat, check_step_tensors

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MIN_DIM",
    "SCRIPT_EPS",
    "AndiStats",
    "andi_precondition",
    "compute_dtype",
    "direction_from_stats",
    "energy_scale",
    "equilibrate",
    "gradient_stats",
    "reference_direction",
    "script_denominator",
    "script_scale",
]

#: ε of Algorithm 1 (paper §4, "ε = 1e-8"), guarding the divisions.
DEFAULT_EPS = 1e-8
#: δ of Algorithm 1 (paper §4, "δ = 16"): equilibrate only when both matrix sides exceed it.
DEFAULT_MIN_DIM = 16

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """The dtype the paper-mode reductions run in: fp32 for fp16/bf16, the tensor's own dtype otherwise."""
    return torch.float32 if dtype in _LOW_PRECISION else dtype


class AndiStats(NamedTuple):
    """Norms of one gradient, in compute dtype. ``row``/``col`` are ``None`` on the global branch."""

    norm: Tensor  # ν = ‖G‖_F, 0-dim
    row: Tensor | None  # r, shape (m, 1)
    col: Tensor | None  # c, shape (1, n)


def gradient_stats(grad: Tensor, *, min_dim: int) -> AndiStats:
    """First pass of Φ in paper mode: ν and, on the equilibration branch, the row and column norms.

    On the equilibration branch ν is taken from the row norms (``ν = ‖r‖₂``), so the gradient is read twice, not
    three times. Norms are sign-invariant, so ``maximize`` needs nothing here.
    """
    g = grad.to(compute_dtype(grad.dtype))
    if uses_equilibration(g.shape, min_dim):
        mat = as_matrix(g)
        if mat.device.type == "cpu":
            # The CPU kernel for a norm over dim 0 walks the matrix column by column (about 10x slower than a
            # contiguous pass at 1024x1024; measured in docs/performance.md). Squaring once and
            # reducing the square along both dims reads memory contiguously.
            squares = mat * mat
            row = squares.sum(dim=1, keepdim=True).sqrt_()
            col = squares.sum(dim=0, keepdim=True).sqrt_()
        else:
            row = torch.linalg.vector_norm(mat, dim=1, keepdim=True)
            col = torch.linalg.vector_norm(mat, dim=0, keepdim=True)
        return AndiStats(torch.linalg.vector_norm(row), row, col)
    return AndiStats(torch.linalg.vector_norm(g), None, None)


def energy_scale(norm: Tensor, reference_norm: Tensor, eps: float) -> Tensor:
    """τ / (‖X‖ + ε) with τ = sqrt(ν² + 1) computed as ``hypot(ν, 1)`` (no overflow for large ν)."""
    return torch.hypot(norm, torch.ones_like(norm)) / (reference_norm + eps)


def equilibrate(grad: Tensor, stats: AndiStats, *, eps: float) -> Tensor:
    """Ĝ = M / (r + c + ε) as a new tensor of ``grad``'s shape, in compute dtype."""
    assert stats.row is not None and stats.col is not None
    mat = as_matrix(grad.to(compute_dtype(grad.dtype)))
    # (r + ε) + c builds the denominator in one broadcast pass; the division then writes into it.
    denominator = (stats.row + eps) + stats.col
    return torch.div(mat, denominator, out=denominator).view(grad.shape)


def direction_from_stats(grad: Tensor, stats: AndiStats, *, eps: float, maximize: bool = False) -> Tensor:
    """Second pass of Φ in paper mode: H in compute dtype, a new tensor (``grad`` is never modified).

    ``maximize`` uses Φ(−G) = −Φ(G), exact in floating point since every operation is sign-symmetric.
    """
    if stats.row is None:
        g = grad.to(compute_dtype(grad.dtype))
        direction = g * energy_scale(stats.norm, stats.norm, eps)
    else:
        direction = equilibrate(grad, stats, eps=eps)
        direction.mul_(energy_scale(stats.norm, torch.linalg.vector_norm(direction), eps))
    return direction.neg_() if maximize else direction


#: The reference script hard-codes this epsilon (``ANDI.py``, VladimerKhasia/ANDI@29f90fe).
SCRIPT_EPS = 1e-8


def script_denominator(row_norm: Tensor, col_norm: Tensor) -> Tensor:
    """The script's equilibration denominator ``(‖M_i‖ + 1e-8) + (‖M_j‖ + 1e-8)``, in its order of operations."""
    return (row_norm + SCRIPT_EPS) + (col_norm + SCRIPT_EPS)


def script_scale(norm: Tensor, hat_norm: Tensor | None, *, compat: Compat = "reference") -> Tensor:
    """The script's energy scale: ``hypot(ν + 1e-8, 1) / (‖Ĝ‖ + 1e-8)`` on matrices (``hat_norm`` given), else
    ``hypot(ν, 1) / (ν + 1e-8)`` (``compat="reference"``) or ``hypot(ν + 1e-8, 1) / (ν + 1e-8)`` (``compat="v7"``,
    where the class adds ε to ν once and uses it twice). Shared by :func:`reference_direction` and the DTensor
    backend."""
    one = torch.ones_like(norm)
    if hat_norm is None:
        if compat == "v7":
            shifted = norm + SCRIPT_EPS
            return torch.hypot(shifted, one) / shifted
        return torch.hypot(norm, one) / (norm + SCRIPT_EPS)
    return torch.hypot(norm + SCRIPT_EPS, one) / (hat_norm + SCRIPT_EPS)


def reference_direction(
    grad: Tensor, *, min_dim: int = DEFAULT_MIN_DIM, maximize: bool = False, compat: Compat = "reference"
) -> Tensor:
    """Φ exactly as the author's script computes it (``compat="reference"``, ``ANDI.py`` @29f90fe) or as his later
    class does (``compat="v7"``, ``experiments/ANDI.py`` @5cb1d03), in the gradient's dtype.

    Both hard-code ``1e-8`` (:data:`SCRIPT_EPS`); ``min_dim`` is kept as a parameter (the 29f90fe script tests
    ``> 16``, the v7 class ``>= 17``: the same integers). How the scripts differ from Algorithm 1:
    ``docs/design/algorithm.md`` §3.
    """
    g = -grad if maximize else grad
    if g.ndim > 1:
        rows, cols = matrix_shape(g.shape)
        if rows > min_dim and cols > min_dim:
            g_mat = g.reshape(rows, cols)
            denominator = script_denominator(g_mat.norm(dim=1, keepdim=True), g_mat.norm(dim=0, keepdim=True))
            g_white = (g_mat / denominator).view(g.shape)
            return g_white * script_scale(g.norm(), g_white.norm(), compat=compat)
    return g * script_scale(g.norm(), None, compat=compat)


def andi_precondition(
    G: Tensor,
    *,
    eps: float = DEFAULT_EPS,
    min_dim: int = DEFAULT_MIN_DIM,
    compat: Compat = "paper",
) -> Tensor:
    r"""Return :math:`H = \Phi(G)` for one gradient tensor of any shape (pure: ``G`` is not modified).

    Args:
        G: gradient tensor, any shape (0-size allowed). ``ndim >= 2`` tensors are viewed as ``(d1, -1)``.
        eps: the ε of Algorithm 1 (ignored by the script modes, which hard-code 1e-8 like the scripts).
        min_dim: δ; equilibration applies when ``min(rows, cols) > min_dim``.
        compat: ``"paper"`` (Algorithm 1, fp32 reductions for fp16/bf16 input), ``"reference"`` (the author's
            script, bit for bit, in ``G``'s dtype) or ``"v7"`` (the author's later class, bit for bit).

    Returns:
        ``H`` with ``G``'s shape and dtype.
    """
    check_step_tensors([G], [G], [None])  # the one sparse/complex refusal
    if compat not in COMPAT_MODES:
        raise ValueError(f"Invalid compat mode: {compat!r} (expected one of {COMPAT_MODES})")
    if compat != "paper":
        return reference_direction(G, min_dim=min_dim, compat=compat)
    return direction_from_stats(G, gradient_stats(G, min_dim=min_dim), eps=eps).to(G.dtype)
