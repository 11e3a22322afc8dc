"""Single-process checks of the sharded path's layout rules and of the communication table (no process group)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

dist_tensor = pytest.importorskip("torch.distributed.tensor", reason="torch build without DTensor")
from torch.distributed.tensor import Partial, Replicate, Shard  # noqa: E402

from andi.distributed import classify_placements  # noqa: E402


@pytest.mark.parametrize(
    ("placements", "ndim", "matrix", "expected"),
    [
        ([Shard(0)], 2, True, ("rows", (0,))),  # FSDP2
        ([Shard(0)], 4, True, ("rows", (0,))),  # conv filter viewed (out, in·kh·kw): rows stay whole
        ([Shard(1)], 2, True, ("cols", (0,))),
        ([Shard(-1)], 4, True, ("cols", (0,))),  # kw split: still whole columns of the view
        ([Replicate()], 2, True, ("whole", ())),
        ([Replicate(), Shard(0)], 2, True, ("rows", (1,))),  # HSDP: reduce over the shard dim only
        ([Shard(0), Shard(0)], 2, True, ("rows", (0, 1))),
        ([Shard(0), Shard(1)], 2, True, None),  # rows and columns split: gather
        ([Shard(0), Shard(1)], 2, False, ("rows", (0, 1))),  # global branch: ν² is a plain sum
        ([Partial()], 2, True, None),
        ([Partial()], 1, False, None),
        ([Shard(0)], 1, False, ("rows", (0,))),
    ],
)
def test_layout_rules(placements, ndim: int, matrix: bool, expected) -> None:
    assert classify_placements(placements, ndim, matrix) == expected


def test_communication_table_from_gpt2_shapes() -> None:
    path = Path(__file__).resolve().parents[2] / "examples" / "fsdp2_gpt.py"
    spec = importlib.util.spec_from_file_location("fsdp2_gpt_example", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    table = module.communication_table(world_sizes=(8,))
    d, layers = 768, 12
    assert "124,439,808 parameters" in table  # GPT-2 small with tied head: the shapes are right
    # ANDI: one column-sum vector per equilibrated matrix (n = its column count) + one scalar per tensor.
    vector = layers * (d + d + d + 4 * d) + 2 * d  # c_attn, attn.c_proj, c_fc, mlp.c_proj; wte, wpe
    assert f"vector all-reduce of {vector:,} floats + scalar all-reduce of {2 + 12 * layers + 2} floats" in table
    hidden = layers * (3 * d * d + d * d + 4 * d * d + 4 * d * d)
    assert f"{hidden:,} elements" in table
    ring = 2 * 7 / 8 * (vector + 2 + 12 * layers + 2) * 4 / 1e6
    assert f"| 8 | {ring:,.2f} MB |" in table
