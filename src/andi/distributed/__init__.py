"""ANDI beyond one device: DDP, FSDP2 and DTensor.

* **DDP** needs nothing: gradients are all-reduced before ``step()`` and every replica computes the same update.
* **FSDP2 / DTensor**: :class:`andi.ANDI` detects DTensor parameters and runs :mod:`andi.functional.dtensor`, which
  computes exactly the full-tensor step while communicating one bucketed vector all-reduce (column sums of squares)
  and one bucketed scalar all-reduce per device mesh and step. Layouts without a local rule are gathered, with a
  one-time :class:`ShardedFallbackWarning`.
* **Checkpoints**: the momentum buffers are DTensors sharded like their parameters, so
  ``torch.distributed.checkpoint.state_dict.get_state_dict``/``set_state_dict`` with ``dcp.save``/``dcp.load``
  save and reshard them (e.g. 2 ranks -> 1 rank) like any torch optimizer state.

See ``docs/distributed.md`` for the torchrun command and the communication table.
"""

from __future__ import annotations

import torch.distributed as _dist

__all__ = ["is_available"]


def is_available() -> bool:
    """Whether this torch build has ``torch.distributed`` with DTensor (needed for the sharded path)."""
    if not _dist.is_available():
        return False
    try:
        import torch.distributed.tensor  # noqa: F401
    except ImportError:  # pragma: no cover - builds without distributed support
        return False
    return True


if is_available():
    from .sharded import ShardedFallbackWarning, classify_placements, dtensor_grad_norms

    __all__ += ["ShardedFallbackWarning", "classify_placements", "dtensor_grad_norms"]
