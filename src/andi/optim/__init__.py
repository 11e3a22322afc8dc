"""Optimizer classes: thin wrappers that own state and call the pure functions in :mod:`andi.functional`."""

from .andi import ANDI

__all__ = ["ANDI"]
