"""Pure math: tensors in, tensors out. Nothing here owns optimizer state or imports the optimizer classes."""

from .andi import andi
from .matrix import as_matrix, matrix_shape, uses_equilibration
from .precondition import DEFAULT_EPS, DEFAULT_MIN_DIM, andi_precondition

__all__ = [
    "DEFAULT_EPS",
    "DEFAULT_MIN_DIM",
    "andi",
    "andi_precondition",
    "as_matrix",
    "matrix_shape",
    "uses_equilibration",
]
