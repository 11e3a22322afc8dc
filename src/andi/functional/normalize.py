r"""Row/column normalizations of the comparison family: SinkGD's Sinkhorn scaling, RMNP's row normalization and
Scion's linear minimization oracles (LMOs). Pure functions: tensors in, new tensors out, inputs never modified.

Every tensor with ``k >= 2`` dimensions is viewed as the matrix ``(d1, d2·…·dk)`` (:func:`andi.functional.as_matrix`),
the one reshape rule of this package; results come back in the input's shape. Exact formulas, defaults and sources
are in ``docs/design/family.md`` (SinkGD, RMNP, Scion).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .matrix import as_matrix
from .newton_schulz import DEFAULT_NS_STEPS, zeropower_via_newtonschulz5

__all__ = [
    "SCION_EPS",
    "SCION_NORMS",
    "SINKHORN_EPS",
    "lmo_bias_rms",
    "lmo_colnorm",
    "lmo_rownorm",
    "lmo_sign",
    "lmo_spectral",
    "row_normalize",
    "scion_lmo",
    "sr_sinkhorn",
]

#: Norm clamp of SR-Sinkhorn (the ``1e-8`` clamp of ``jdinalt/forgather``'s ``sinkgd.py``; the paper gives none).
SINKHORN_EPS = 1e-8
#: ε of every Scion LMO (``LIONS-EPFL/scion:scion.py``).
SCION_EPS = 1e-8


def _compute_dtype(t: Tensor) -> torch.dtype:
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def sr_sinkhorn(G: Tensor, L: int = 5, eps: float = SINKHORN_EPS) -> Tensor:
    r"""SinkGD's square-root Sinkhorn scaling (Scetbon et al., arXiv 2502.06742, Alg. "SR-Sinkhorn").

    For ``M = G`` viewed as :math:`m\times n`, repeat ``L`` times

    .. math::
        X \leftarrow \sqrt{n}\,X / \|X_{i,:}\|_2 \quad(\text{rows to norm } \sqrt n),\qquad
        X \leftarrow \sqrt{m}\,X / \|X_{:,j}\|_2 \quad(\text{columns to norm } \sqrt m)

    with every norm clamped below at ``eps``. At the fixed point each entry has RMS 1 and
    :math:`\|X\|_F = \sqrt{mn}`. Computed in fp32 for fp16/bf16 inputs; returned in ``G``'s dtype and shape.
    """
    if G.ndim < 2:
        raise ValueError(f"SR-Sinkhorn needs a tensor with at least 2 dimensions, got shape {tuple(G.shape)}")
    if isinstance(L, bool) or not isinstance(L, int) or L < 1:
        raise ValueError(f"Invalid number of Sinkhorn iterations L: {L} (expected an int >= 1)")
    X = as_matrix(G).to(_compute_dtype(G))
    m, n = X.shape
    sqrt_m, sqrt_n = math.sqrt(m), math.sqrt(n)
    for _ in range(L):
        X = X * (sqrt_n / X.norm(dim=1, keepdim=True).clamp(min=eps))
        X = X * (sqrt_m / X.norm(dim=0, keepdim=True).clamp(min=eps))
    return X.reshape(G.shape).to(G.dtype)


def row_normalize(G: Tensor, eps: float = 1e-12) -> Tensor:
    r"""Each row of ``G`` viewed as :math:`m\times n` divided by :math:`\max(\|G_{i,:}\|_2, \text{eps})`.

    This is ``torch.nn.functional.normalize(G, dim=-1)``, RMNP's normalization (``Dominator-Index/RMNP``).
    """
    if G.ndim < 2:
        raise ValueError(f"row_normalize needs a tensor with at least 2 dimensions, got shape {tuple(G.shape)}")
    M = as_matrix(G).to(_compute_dtype(G))
    return (M / M.norm(dim=1, keepdim=True).clamp(min=eps)).reshape(G.shape).to(G.dtype)


# ------------------------------------------------------------------------------------------------ Scion LMOs
# Each returns the LMO direction for a gradient (or momentum) ``g`` viewed as (d_out, d_in); ``scale`` is applied by
# the optimizer. ``transpose=True`` is for (vocab, d) embedding tables.


def _matrix_for_lmo(g: Tensor, transpose: bool) -> Tensor:
    if g.ndim < 2:
        raise ValueError(f"this Scion LMO needs a tensor with at least 2 dimensions, got shape {tuple(g.shape)}")
    M = as_matrix(g)
    return M.T if transpose else M


def lmo_colnorm(g: Tensor, normalized: bool = False, transpose: bool = False, eps: float = SCION_EPS) -> Tensor:
    r"""Scion ``ColNorm``: :math:`g_{:,j} / (\|g_{:,j}\|_2 / \sqrt{d_{out}} \cdot [d_{in}] + \epsilon)`.

    The factor :math:`[d_{in}]` applies when ``normalized``: columns get norm :math:`\sqrt{d_{out}}` (RMS 1), or
    :math:`\sqrt{d_{out}}/d_{in}` when ``normalized``.
    """
    M = _matrix_for_lmo(g, transpose)
    d_out, d_in = M.shape
    rms = M.norm(dim=0, keepdim=True) / math.sqrt(d_out)
    if normalized:
        rms = rms * d_in
    out = M / (rms + eps)
    return (out.T if transpose else out).reshape(g.shape)


def lmo_rownorm(g: Tensor, normalized: bool = True, transpose: bool = False, eps: float = SCION_EPS) -> Tensor:
    r"""Scion ``RowNorm``: :math:`g_{i,:} / (\|g_{i,:}\|_2 \cdot (\sqrt{d_{in}} \text{ if normalized}) + \epsilon)`."""
    M = _matrix_for_lmo(g, transpose)
    d_in = M.shape[1]
    norm = M.norm(dim=1, keepdim=True)
    if normalized:
        norm = norm * math.sqrt(d_in)
    out = M / (norm + eps)
    return (out.T if transpose else out).reshape(g.shape)


def lmo_sign(g: Tensor, normalized: bool = True) -> Tensor:
    r"""Scion ``Sign``: :math:`\mathrm{sign}(g)/d_{in}` (or :math:`\mathrm{sign}(g)` when not normalized)."""
    M = _matrix_for_lmo(g, False)
    out = torch.sign(M)
    if normalized:
        out = out / M.shape[1]
    return out.reshape(g.shape)


def lmo_bias_rms(g: Tensor, eps: float = SCION_EPS) -> Tensor:
    r"""Scion ``BiasRMS``: :math:`g / (\operatorname{RMS}(g) + \epsilon)` (RMS over the first dimension)."""
    rms = torch.sqrt(torch.mean(g * g, dim=0, keepdim=True)) if g.ndim > 0 else g.abs()
    return g / (rms + eps)


def lmo_spectral(g: Tensor, max_scale: bool = False, normalized: bool = True, steps: int = DEFAULT_NS_STEPS) -> Tensor:
    r"""Scion ``Spectral`` (2-D) and ``SpectralConv`` (3-D/4-D) LMOs: :math:`\mathrm{NS5}(g)\cdot s`.

    2-D: :math:`s = \sqrt{d_{out}/d_{in}}` (:math:`\sqrt{d_{out}}` when not ``normalized``; :math:`\max(1, s)` when
    ``max_scale``). Conv filters ``(out, in, k[, k])``: NS5 of the ``(out, in·k^r)`` view times
    :math:`\sqrt{out/in}/k^r` (``SpectralConv``; its own scale, ``max_scale``/``normalized`` do not apply).
    NS5 runs in bf16 with KellerJordan's coefficients, as in ``scion.py``; the result keeps that dtype.
    """
    M = _matrix_for_lmo(g, False)
    O = zeropower_via_newtonschulz5(M, steps=steps).reshape(g.shape)
    if g.ndim >= 3:
        d_out, d_in = g.shape[0], g.shape[1]
        k = g.shape[2]
        return O * (math.sqrt(d_out / d_in) / k ** (g.ndim - 2))
    d_out, d_in = g.shape
    s = math.sqrt(d_out / d_in) if normalized else math.sqrt(d_out)
    if max_scale:
        s = max(1.0, s)
    return O * s


def _lmo_auto(g: Tensor, **kwargs: Any) -> Tensor:
    if kwargs:
        raise ValueError(f"Scion norm 'auto' takes no options, got {sorted(kwargs)}")
    if g.ndim <= 1:
        return lmo_bias_rms(g)
    return lmo_spectral(g)


#: Scion's norms by name (case-insensitive in :func:`scion_lmo`); ``auto`` picks BiasRMS / Spectral / SpectralConv
#: from the tensor's dimension as ``scion.py``'s ``Auto`` does.
SCION_NORMS = {
    "auto": _lmo_auto,
    "spectral": lmo_spectral,
    "spectralconv": lmo_spectral,
    "colnorm": lmo_colnorm,
    "rownorm": lmo_rownorm,
    "sign": lmo_sign,
    "biasrms": lmo_bias_rms,
}


def scion_lmo(norm: str, g: Tensor, **kwargs: Any) -> Tensor:
    """Dispatch to the Scion LMO named ``norm`` (see :data:`SCION_NORMS`); unknown names raise ``ValueError``."""
    try:
        fn = SCION_NORMS[norm.lower()]
    except (KeyError, AttributeError):
        raise ValueError(f"Unknown Scion norm {norm!r}; expected one of {sorted(SCION_NORMS)}") from None
    return fn(g, **kwargs)
