"""Pure math: tensors in, tensors out. Nothing here owns optimizer state or imports the optimizer classes."""

from .andi import andi
from .matrix import as_matrix, matrix_shape, uses_equilibration
from .newton_schulz import NS5_COEFFICIENTS, POLAR_EXPRESS_COEFFICIENTS, zeropower_via_newtonschulz5
from .normalize import row_normalize, scion_lmo, sr_sinkhorn
from .precondition import DEFAULT_EPS, DEFAULT_MIN_DIM, andi_precondition

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MIN_DIM",
    "NS5_COEFFICIENTS",
    "POLAR_EXPRESS_COEFFICIENTS",
    "andi",
    "andi_precondition",
    "as_matrix",
    "matrix_shape",
    "row_normalize",
    "scion_lmo",
    "sr_sinkhorn",
    "uses_equilibration",
    "zeropower_via_newtonschulz5",
]
