r"""Scion — stochastic conditional gradient with per-layer norm LMOs.

Reference: T. Pethick, W. Xie, K. Antonakopoulos, Z. Zhu, A. Silveti-Falls, V. Cevher, "Training Deep Learning Models
with Norm-Constrained LMOs", arXiv 2502.07529 (ICML 2025); code ``LIONS-EPFL/scion:scion.py``.

Written here rather than taken from a library because no package offers the ColNorm/RowNorm LMOs on conv filters,
which the benchmark's RMNP/Scion ablation ladder needs on ResNet-9: ``pytorch-optimizer``'s ``SCION`` (>= 4.1,
faithful on 2-D, checked in ``tests/optim/test_library_baselines.py``) accepts only 2-D tensors for them, and
``heavyball.Scion`` offers only the Auto norms and re-initializes the parameters on its first step. Here every
LMO sees the ``(d1, -1)`` view used throughout this package.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from torch import Tensor

from ..functional.normalize import SCION_NORMS
from ..functional.scion import scion
from ._base import FunctionalOptimizer, check_lr

__all__ = ["SCION_RECIPES", "Scion", "scion_role_groups"]


class Scion(FunctionalOptimizer):
    r"""Scion (``scion.py``'s ``Scion``): an LMO of the (averaged) gradient, scaled by the layer's radius.

    .. math::
        \begin{aligned}
        &d_t = (1-\alpha)\,d_{t-1} + \alpha\,G_t \quad (d_0 = 0;\ d_t = G_t \text{ when } \alpha = 1) \\
        &u_t = \rho \cdot \mathrm{lmo}(d_t) \\
        &\theta_t = (1-\eta)\,\theta_{t-1} - \eta\,u_t \quad\text{(constrained, default)}\qquad
         \theta_t = \theta_{t-1} - \eta\,u_t \quad\text{(unconstrained)}
        \end{aligned}

    ``momentum`` is :math:`\alpha = 1 - \beta_{\text{usual}}` (Scion's README calls 0.1 a good default, ~0.5 for short
    low-noise runs). The constrained form is weight decay with λ = 1 tied to the lr, which pulls the weights toward
    the norm ball of radius ``scale``; Scion's examples also *initialize* the weights on that ball (``opt.init()``),
    which this class deliberately does not do: every arm of the benchmark starts from the model's own init.

    Norms (``norm``, per group; see :mod:`andi.functional.normalize`): ``"auto"`` (BiasRMS / Spectral /
    SpectralConv by dimension), ``"spectral"`` (``norm_kwargs``: ``max_scale``, ``normalized``, ``steps``),
    ``"colnorm"`` / ``"rownorm"`` (``normalized``, ``transpose``), ``"sign"`` (``normalized``), ``"biasrms"``.
    Conv filters are seen as ``(out, in·kh·kw)`` by every LMO (``spectral`` applies SpectralConv's
    :math:`\sqrt{out/in}/k^2` scale to them).

    Args:
        params: parameters or groups; a group may set ``norm``, ``norm_kwargs``, ``scale``, ``momentum``, ``lr``.
        lr (float or Tensor): η (default 1e-3).
        momentum (float): α in (0, 1] (default 1.0: no averaging, as ``scion.py``).
        norm (str): the LMO (default ``"auto"``).
        norm_kwargs (dict, optional): options of the LMO.
        scale (float): radius ρ > 0 (default 1.0).
        unconstrained (bool): False (default, ``scion.py``'s) for the Frank–Wolfe update ``(1-η)θ - ηu``.
            Note: ``pytorch-optimizer``'s ``SCION`` defaults to the unconstrained form.
        weight_decay (float): decoupled λ for the *unconstrained* form only (default 0; the constrained form already
            decays with λ = 1).

    The update rule is :func:`andi.functional.scion.scion`.
    """

    _functional = staticmethod(scion)
    _state_keys = ("momentum_buffer",)

    def __init__(
        self,
        params: Iterable[Tensor] | Iterable[dict[str, Any]],
        lr: float | Tensor = 1e-3,
        momentum: float = 1.0,
        norm: str = "auto",
        norm_kwargs: Mapping[str, Any] | None = None,
        scale: float = 1.0,
        unconstrained: bool = False,
        weight_decay: float = 0.0,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            norm=norm,
            norm_kwargs=dict(norm_kwargs or {}),
            scale=scale,
            unconstrained=unconstrained,
            weight_decay=weight_decay,
        )
        _validate(defaults)
        super().__init__(params, defaults)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        _validate({**self.defaults, **param_group})
        if "norm_kwargs" in param_group:
            param_group["norm_kwargs"] = dict(param_group["norm_kwargs"] or {})
        super().add_param_group(param_group)


def _validate(group: Mapping[str, Any]) -> None:
    check_lr(group["lr"])
    alpha = group["momentum"]
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not 0 < alpha <= 1:
        raise ValueError(f"Invalid momentum value: {alpha} (Scion's momentum is α = 1 - β, in (0, 1])")
    if not (isinstance(group["scale"], (int, float)) and group["scale"] > 0):
        raise ValueError(f"Invalid scale (radius): {group['scale']} (must be > 0)")
    if str(group["norm"]).lower() not in SCION_NORMS:
        raise ValueError(f"Unknown Scion norm {group['norm']!r}; expected one of {sorted(SCION_NORMS)}")
    if group["weight_decay"] < 0:
        raise ValueError(f"Invalid weight_decay value: {group['weight_decay']}")
    if group["weight_decay"] != 0 and not group["unconstrained"]:
        raise ValueError(
            "Scion's constrained update already decays the weights (λ = 1 tied to the lr); weight_decay applies "
            "only with unconstrained=True"
        )


# ------------------------------------------------------------------------------------------------------ recipes
#: Per-role LMO recipes: role -> (norm, norm_kwargs, scale). Radii follow Scion's shakespeare-char width sweep
#: (``LIONS-EPFL/scion:examples/shallow-nanogpt``: input 1, blocks 3, head 10); ``"spectral"`` is its "Mixed"
#: mode (ColNorm embedding, Spectral blocks, Sign head). ``conv_first`` (also an MLP's input Linear, by override)
#: takes the input norm of the recipe; conv filters anywhere fall back to SpectralConv for ``spectral`` and use the
#: (out, -1) view for ``colnorm``/``rownorm``; vectors always get BiasRMS with radius 1 (our choice: the sweep has no
#: biases).
SCION_RECIPES: dict[str, dict[str, tuple[str, dict[str, Any], float]]] = {
    "spectral": {
        "embedding": ("colnorm", {"normalized": False, "transpose": True}, 1.0),
        "conv_first": ("spectral", {"max_scale": True}, 1.0),
        "hidden_matrix": ("spectral", {}, 3.0),
        "head": ("sign", {"normalized": True}, 10.0),
        "vector": ("biasrms", {}, 1.0),
    },
    "colnorm": {
        "embedding": ("colnorm", {"normalized": False, "transpose": True}, 1.0),
        "conv_first": ("colnorm", {"normalized": False}, 1.0),
        "hidden_matrix": ("colnorm", {"normalized": True}, 3.0),
        "head": ("colnorm", {"normalized": True}, 10.0),
        "vector": ("biasrms", {}, 1.0),
    },
    "rownorm": {
        "embedding": ("rownorm", {"normalized": False, "transpose": True}, 1.0),
        "conv_first": ("rownorm", {"normalized": False}, 1.0),
        "hidden_matrix": ("rownorm", {"normalized": True}, 3.0),
        "head": ("rownorm", {"normalized": True}, 10.0),
        "vector": ("biasrms", {}, 1.0),
    },
}


def scion_role_groups(
    named_params: Iterable[tuple[str, Tensor]],
    roles: Mapping[str, str],
    recipe: str = "spectral",
    scales: Mapping[str, float] | None = None,
) -> list[dict[str, Any]]:
    """Scion parameter groups, one per role present, with the recipe's LMO and radius (``scales`` overrides radii).

    Each group carries ``role``, ``param_names`` (torch's key for named groups), ``norm``, ``norm_kwargs`` and
    ``scale``. A conv filter (``ndim >= 3``) under the ``spectral`` recipe gets SpectralConv (``max_scale`` dropped).
    """
    if recipe not in SCION_RECIPES:
        raise ValueError(f"Unknown Scion recipe {recipe!r}; expected one of {sorted(SCION_RECIPES)}")
    table = SCION_RECIPES[recipe]
    unknown = set(scales or {}) - set(table)
    if unknown:
        raise ValueError(f"scales for unknown roles {sorted(unknown)}; roles are {sorted(table)}")
    buckets: dict[tuple[str, bool], list[tuple[str, Tensor]]] = {}
    for name, p in named_params:
        role = roles[name]
        buckets.setdefault((role, p.ndim >= 3), []).append((name, p))
    groups = []
    for (role, is_conv), items in buckets.items():
        norm, kwargs, scale = table[role]
        kwargs = dict(kwargs)
        if is_conv and norm == "spectral":
            kwargs = {}
        if scales and role in scales:
            scale = float(scales[role])
        groups.append(
            dict(
                params=[p for _, p in items],
                param_names=[n for n, _ in items],
                role=role,
                norm=norm,
                norm_kwargs=kwargs,
                scale=scale,
            )
        )
    return groups
