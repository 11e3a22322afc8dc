"""Optimizer classes: thin wrappers that own state and call the pure functions in :mod:`andi.functional`."""

from .andi import ANDI
from .muon import Muon
from .normuon import NorMuon
from .registry import (
    OPTIMIZERS,
    create_optimizer,
    list_optimizers,
    load_optimizer,
    register_optimizer,
    unregister_optimizer,
)
from .rmnp import RMNP
from .routed import RoutedOptimizer, register_algorithm
from .scion import Scion
from .script_muon import ScriptMuon
from .sinkgd import SinkGD
from .user import OptimizerFactoryError

__all__ = [
    "ANDI",
    "OPTIMIZERS",
    "RMNP",
    "Muon",
    "NorMuon",
    "OptimizerFactoryError",
    "RoutedOptimizer",
    "Scion",
    "ScriptMuon",
    "SinkGD",
    "create_optimizer",
    "list_optimizers",
    "load_optimizer",
    "register_algorithm",
    "register_optimizer",
    "unregister_optimizer",
]
