"""andi: the ANDI optimizer (Adaptive Norm-Distribution Interface) for PyTorch, its comparison family, and
``andi-bench``."""

import warnings

# The optimizer needs torch alone; torch warns at import when numpy is absent, which is a supported setup here.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
    import torch  # noqa: F401

from .functional import andi_precondition
from .optim import (
    ANDI,
    RoutedOptimizer,
    create_optimizer,
    list_optimizers,
    load_optimizer,
    register_optimizer,
    unregister_optimizer,
)
from .routing import decayed_parameters, param_groups, param_roles, weight_decay_groups

__version__ = "0.1.0"

__all__ = [
    "ANDI",
    "RoutedOptimizer",
    "__version__",
    "andi_precondition",
    "create_optimizer",
    "decayed_parameters",
    "list_optimizers",
    "load_optimizer",
    "param_groups",
    "param_roles",
    "register_optimizer",
    "unregister_optimizer",
    "weight_decay_groups",
]
