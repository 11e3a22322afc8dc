"""Pure math: tensors in, tensors out. Nothing here owns optimizer state or imports anything above it.

ANDI's step (:func:`andi`, backends chosen with ``backend=``), its preconditioner (:func:`andi_precondition`), its
validated hyperparameter record, and the comparison family's update rules as functions in the torch.optim functional
style (each updates ``params`` and its state lists in place).
"""

from .andi import BACKENDS, andi, andi_step, resolve_backend
from .matrix import as_matrix, matrix_shape, uses_equilibration
from .muon import muon, muon_shape_scale
from .newton_schulz import NS5_COEFFICIENTS, POLAR_EXPRESS_COEFFICIENTS, zeropower_via_newtonschulz5
from .normalize import row_normalize, scion_lmo, sr_sinkhorn
from .normuon import normuon
from .precondition import DEFAULT_EPS, DEFAULT_MIN_DIM, andi_precondition
from .rmnp import rmnp
from .scion import scion
from .script_muon import script_muon
from .sinkgd import sinkgd
from .validation import AndiHyperparameters, check_hyperparameters, check_step_tensors

__all__ = [
    "BACKENDS",
    "DEFAULT_EPS",
    "DEFAULT_MIN_DIM",
    "NS5_COEFFICIENTS",
    "POLAR_EXPRESS_COEFFICIENTS",
    "AndiHyperparameters",
    "andi",
    "andi_precondition",
    "andi_step",
    "as_matrix",
    "check_hyperparameters",
    "check_step_tensors",
    "matrix_shape",
    "muon",
    "muon_shape_scale",
    "normuon",
    "resolve_backend",
    "rmnp",
    "row_normalize",
    "scion",
    "scion_lmo",
    "script_muon",
    "sinkgd",
    "sr_sinkhorn",
    "uses_equilibration",
    "zeropower_via_newtonschulz5",
]
