"""andi: the ANDI optimizer (Adaptive Norm-Distribution Interface) for PyTorch."""

from .functional import andi_precondition
from .optim import ANDI

__version__ = "0.1.0"

__all__ = ["ANDI", "__version__", "andi_precondition"]
