"""Sharded ANDI (FSDP2 / DTensor): the public names of the DTensor backend, :mod:`andi.functional.dtensor`.

The backend itself lives beside the other backends in :mod:`andi.functional` (the math imports nothing above it);
``andi.ANDI`` and ``andi.functional.andi`` select it for DTensor parameters (``backend="auto"`` or ``"dtensor"``).
"""

from __future__ import annotations

from ..functional.dtensor import ShardedFallbackWarning, classify_placements, dtensor_grad_norms

__all__ = ["ShardedFallbackWarning", "classify_placements", "dtensor_grad_norms"]
