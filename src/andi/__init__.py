"""andi: the ANDI optimizer (Adaptive Norm-Distribution Interface) for PyTorch, its comparison family, and
``andi-bench``."""

from .functional import andi_precondition
from .optim import ANDI, RoutedOptimizer, create_optimizer, list_optimizers, load_optimizer
from .routing import param_groups, param_roles

__version__ = "0.1.0"

__all__ = [
    "ANDI",
    "RoutedOptimizer",
    "__version__",
    "andi_precondition",
    "create_optimizer",
    "list_optimizers",
    "load_optimizer",
    "param_groups",
    "param_roles",
]
