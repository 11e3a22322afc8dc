"""Worker for the distributed tests: one rank of a gloo CPU group, started by ``_launch.launch``.

Runs the named scenarios in order; each one returns a dict of measurements (equality figures, collective logs) that
the pytest side asserts on. Every rank computes its own single-process reference on the full tensors, so ranks can
be checked independently. Usage: ``python _worker.py --out DIR --scenarios fsdp_gpt,ddp,...``.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import math
import os
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
import torch.nn.functional as F
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor, Partial, Replicate, Shard, distribute_tensor
from torch.distributed.tensor.debug import CommDebugMode
from torch.distributed.tensor.placement_types import _StridedShard
from torch.utils._python_dispatch import TorchDispatchMode

import andi
from andi.distributed import ShardedFallbackWarning, dtensor_grad_norms
from andi.functional import andi as andi_functional

RANK = int(os.environ.get("RANK", "0"))
WORLD = int(os.environ.get("WORLD_SIZE", "1"))
STEPS = 10


# ----------------------------------------------------------------------------------------------- models and data
class Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 3 * d), nn.GELU(), nn.Linear(3 * d, d))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    """The paper's char-GPT layout at toy size; odd vocabulary (uneven shards) and a 1-row head (empty shard)."""

    def __init__(self, vocab: int = 37, block: int = 9, d: int = 24, heads: int = 2, layers: int = 2) -> None:
        super().__init__()
        self.block = block
        self.tok_emb = nn.Embedding(vocab, d)
        self.pos_emb = nn.Embedding(block, d)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)
        self.value = nn.Linear(d, 1)  # 1 row: rank 1 of 2 holds an empty shard of weight and bias

    def forward(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = idx.shape[1]
        mask = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
        x = self.tok_emb(idx) + self.pos_emb(torch.arange(t))
        for blk in self.blocks:
            x = blk(x, mask)
        x = self.ln_f(x)
        return self.head(x), self.value(x)


def gpt_batch(step: int, batch: int = 8, vocab: int = 37, block: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1000 + step)
    data = torch.randint(vocab, (batch, block + 1), generator=g)
    return data[:, :-1], data[:, 1:]


def gpt_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    logits, value = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)) + value.square().mean()


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(20, 33)  # 33 rows: 17/16
        self.fc2 = nn.Linear(33, 1)  # 1 row: empty shard; a matrix with min_dim=0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.tanh(self.fc1(x)))


def mlp_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(2000 + step)
    return torch.randn(16, 20, generator=g), torch.randn(16, 1, generator=g)


def mlp_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.mse_loss(model(x), y)


def shard_gpt(model: TinyGPT) -> TinyGPT:
    mesh = init_device_mesh("cpu", (WORLD,))
    for blk in model.blocks:
        fully_shard(blk, mesh=mesh)
    fully_shard(model, mesh=mesh)
    return model


# ------------------------------------------------------------------------------------------------ measurements
class CollectiveLog(TorchDispatchMode):
    """Records every c10d / functional collective (name, total elements of its input tensors)."""

    PREFIXES = ("c10d::", "_c10d_functional::", "c10d_functional::")
    IGNORED = ("wait_tensor", "_wrap_tensor_autograd", "barrier", "monitored_barrier")  # not data movement

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if any(issubclass(t, DTensor) for t in types):
            return NotImplemented  # let DTensor lower itself to collectives first, then see those
        name = func._schema.name
        if name.startswith(self.PREFIXES) and name.split("::")[1] not in self.IGNORED:
            first = args[0] if args else None
            tensors = first if isinstance(first, (list, tuple)) else [first]
            numel = sum(t.numel() for t in tensors if isinstance(t, torch.Tensor))
            self.calls.append((name.split("::")[1], numel))
        return func(*args, **(kwargs or {}))


def full(t: torch.Tensor) -> torch.Tensor:
    return t.full_tensor() if isinstance(t, DTensor) else t


def rel_diffs(model: nn.Module, ref: nn.Module) -> dict[str, float]:
    out = {}
    ref_params = dict(ref.named_parameters())
    for name, p in model.named_parameters():
        a, b = full(p.detach()).double(), ref_params[name].detach().double()
        out[name] = float((a - b).norm() / b.norm().clamp_min(1e-30))
    return out


def expected_sizes(model: nn.Module, min_dim: int) -> dict[str, int]:
    """Elements of the two buckets predicted from the global shapes (independent of the implementation)."""
    vector = 0
    count = 0
    for p in model.parameters():
        count += 1
        if p.ndim >= 2:
            m, n = p.shape[0], math.prod(p.shape[1:])
            if min(m, n) > min_dim:
                vector += n
    return {"vector": vector, "scalar": count}


def train(
    model: nn.Module, opt: torch.optim.Optimizer, loss_fn: Callable, batches: Iterator, steps: int, log: bool = False
) -> dict[str, Any]:
    per_step: list[list[tuple[str, int]]] = []
    cdm_counts: list[int] = []
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model, next(batches))
        loss.backward()
        losses.append(float(loss))
        if log:
            with CommDebugMode() as cdm, CollectiveLog() as rec:
                opt.step()
            per_step.append(rec.calls)
            cdm_counts.append(cdm.get_total_counts())
        else:
            opt.step()
    return {"losses": losses, "collectives": per_step, "commdebug_counts": cdm_counts}


def batches_of(fn: Callable[[int], Any], start: int = 0) -> Iterator:
    step = start
    while True:
        yield fn(step)
        step += 1


# --------------------------------------------------------------------------------------------------- scenarios
def _fsdp_vs_single(
    model_fn: Callable[[], nn.Module],
    shard: Callable[[nn.Module], nn.Module],
    loss_fn: Callable,
    batch_fn: Callable,
    steps: int,
    opt_kw: dict[str, Any],
) -> dict[str, Any]:
    torch.manual_seed(0)
    model = model_fn()
    ref = copy.deepcopy(model)
    shard(model)
    opt = andi.ANDI(model.parameters(), **opt_kw)
    ref_opt = andi.ANDI(ref.parameters(), **opt_kw)
    ref_run = train(ref, ref_opt, loss_fn, batches_of(batch_fn), steps)
    run = train(model, opt, loss_fn, batches_of(batch_fn), steps, log=True)
    diffs = rel_diffs(model, ref)
    local_rows = {n: tuple(p.to_local().shape) for n, p in model.named_parameters()}
    bufs = [opt.state[p]["momentum_buffer"] for p in model.parameters()]
    return {
        "max_rel_diff": max(diffs.values()),
        "rel_diffs": diffs,
        "loss_diff": max(abs(a - b) for a, b in zip(run["losses"], ref_run["losses"])),
        "collectives": run["collectives"],
        "commdebug_counts": run["commdebug_counts"],
        "expected": expected_sizes(model, opt_kw.get("min_dim", 16)),
        "local_shapes": local_rows,
        "buffers_are_dtensors": all(isinstance(b, DTensor) for b in bufs),
        "buffer_placements_match": all(
            tuple(b.placements) == tuple(p.placements) for b, p in zip(bufs, model.parameters())
        ),
        "nonfinite_skips": opt.nonfinite_skips,
    }


def scenario_fsdp_gpt() -> dict[str, Any]:
    return _fsdp_vs_single(TinyGPT, shard_gpt, gpt_loss, gpt_batch, STEPS, {"lr": 0.02})


def scenario_fsdp_mlp_min0() -> dict[str, Any]:
    def shard(m: nn.Module) -> nn.Module:
        fully_shard(m, mesh=init_device_mesh("cpu", (WORLD,)))
        return m

    kw = {
        "lr": torch.tensor(0.01),
        "momentum": 0.8,
        "nesterov": False,
        "weight_decay": 0.1,
        "min_dim": 0,
        "maximize": False,
    }
    return _fsdp_vs_single(MLP, shard, mlp_loss, mlp_batch, STEPS, kw)


def scenario_fsdp_gpt_reference() -> dict[str, Any]:
    return _fsdp_vs_single(TinyGPT, shard_gpt, gpt_loss, gpt_batch, 5, {"lr": 0.01, "compat": "reference"})


def scenario_multigroup() -> dict[str, Any]:
    """Two parameter groups (matrices / the rest): exercises the optimizer's cross-group non-finite screen."""
    torch.manual_seed(0)
    model = TinyGPT()
    ref = copy.deepcopy(model)
    shard_gpt(model)

    def groups(m: nn.Module) -> list[dict[str, Any]]:
        mats = [p for p in m.parameters() if p.ndim >= 2]
        rest = [p for p in m.parameters() if p.ndim < 2]
        return [{"params": mats, "lr": 0.02}, {"params": rest, "lr": 0.005}]

    opt, ref_opt = andi.ANDI(groups(model)), andi.ANDI(groups(ref))
    train(ref, ref_opt, gpt_loss, batches_of(gpt_batch), 3)
    run = train(model, opt, gpt_loss, batches_of(gpt_batch), 3, log=True)
    return {"max_rel_diff": max(rel_diffs(model, ref).values()), "collectives": run["collectives"]}


def scenario_ddp() -> dict[str, Any]:
    """DDP, each rank on its half of the batch, vs one process on the whole batch."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.manual_seed(0)
    model = TinyGPT()
    ref = copy.deepcopy(model)
    ddp = DDP(model)
    opt, ref_opt = andi.ANDI(ddp.parameters()), andi.ANDI(ref.parameters())

    def half(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = gpt_batch(step)
        per = x.shape[0] // WORLD
        return x[RANK * per : (RANK + 1) * per], y[RANK * per : (RANK + 1) * per]

    train(ref, ref_opt, gpt_loss, batches_of(gpt_batch), STEPS)
    run = train(ddp, opt, gpt_loss, batches_of(half), STEPS, log=True)
    diffs = rel_diffs(model, ref)
    return {"max_rel_diff": max(diffs.values()), "optimizer_collectives": run["collectives"]}


def _placement_cases() -> list[dict[str, Any]]:
    mesh1 = init_device_mesh("cpu", (WORLD,))
    cases = [
        {"name": "shard0_uneven", "shape": (37, 20), "mesh": mesh1, "pl": [Shard(0)]},
        {"name": "shard0_conv", "shape": (33, 3, 3, 3), "mesh": mesh1, "pl": [Shard(0)]},
        {"name": "shard0_empty_matrix", "shape": (1, 20), "mesh": mesh1, "pl": [Shard(0)], "min_dim": 0},
        {"name": "shard0_vector", "shape": (3,), "mesh": mesh1, "pl": [Shard(0)]},
        {"name": "shard0_small_matrix", "shape": (5, 40), "mesh": mesh1, "pl": [Shard(0)]},
        {"name": "shard1", "shape": (20, 37), "mesh": mesh1, "pl": [Shard(1)]},
        {"name": "shard2_conv", "shape": (24, 5, 3, 3), "mesh": mesh1, "pl": [Shard(2)]},
        {"name": "replicate", "shape": (30, 20), "mesh": mesh1, "pl": [Replicate()]},
        {"name": "plain_buffer", "shape": (37, 20), "mesh": mesh1, "pl": [Shard(0)], "plain_buffer": True},
        {"name": "grad_mismatch", "shape": (30, 20), "mesh": mesh1, "pl": [Shard(0)], "grad_pl": [Replicate()]},
    ]
    if WORLD == 2:
        hsdp = init_device_mesh("cpu", (1, 2), mesh_dim_names=("replicate", "shard"))
        two_d = init_device_mesh("cpu", (2, 1), mesh_dim_names=("a", "b"))
        cases += [
            {"name": "hsdp", "shape": (37, 20), "mesh": hsdp, "pl": [Replicate(), Shard(0)]},
            {"name": "shard0_shard0", "shape": (37, 20), "mesh": two_d, "pl": [Shard(0), Shard(0)]},
            {"name": "rows_and_cols_fallback", "shape": (37, 20), "mesh": two_d, "pl": [Shard(0), Shard(1)]},
            {"name": "small_rows_and_cols", "shape": (5, 40), "mesh": two_d, "pl": [Shard(0), Shard(1)]},
            {"name": "strided_rows", "shape": (37, 20), "mesh": mesh1, "pl": [_StridedShard(0, split_factor=2)]},
            {"name": "partial_grad", "shape": (37, 20), "mesh": mesh1, "pl": [Shard(0)], "grad_pl": [Partial()]},
        ]
    return cases


def scenario_placements() -> dict[str, Any]:
    """fp64 DTensors of every layout vs the single-device functional on the full tensors, 2 steps each."""
    results = {}
    configs = [
        {"compat": "paper", "maximize": False, "nesterov": True, "weight_decay": 0.05},
        {"compat": "reference", "maximize": True, "nesterov": False, "weight_decay": 0.0},
        {"compat": "paper", "maximize": False, "nesterov": True, "weight_decay": 0.0, "momentum_dtype": torch.float32},
    ]
    for case in _placement_cases():
        for ci, cfg in enumerate(configs):
            g = torch.Generator().manual_seed(7)
            w = torch.randn(case["shape"], generator=g, dtype=torch.float64)
            grads = [torch.randn(case["shape"], generator=g, dtype=torch.float64) * (1 + k) for k in range(2)]
            mesh, pl = case["mesh"], case["pl"]
            p_dt = distribute_tensor(w.clone(), mesh, pl, src_data_rank=None)  # same w on every rank
            p_ref = w.clone()
            bufs: list[Any] = [None]
            ref_bufs: list[Any] = [None]
            kw = dict(lr=0.05, momentum=0.9, eps=1e-8, min_dim=case.get("min_dim", 16), skip_nonfinite=False, **cfg)
            calls: list[tuple[str, int]] = []
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                for G in grads:
                    gpl = case.get("grad_pl", pl)
                    if any(isinstance(x, Partial) for x in gpl):  # each rank holds G / world: the sum is G
                        g_dt = DTensor.from_local(G / WORLD, mesh, gpl, run_check=False)
                    else:
                        g_dt = distribute_tensor(G, mesh, gpl, src_data_rank=None)
                    with CollectiveLog() as rec:
                        andi_functional([p_dt], [g_dt], bufs, **kw)
                    calls.extend(rec.calls)
                    if case.get("plain_buffer"):  # e.g. a single-device state_dict loaded into the sharded run
                        bufs[0] = bufs[0].full_tensor()
                    andi_functional([p_ref], [G], ref_bufs, foreach=False, **kw)
            got = p_dt.full_tensor()
            rel = float((got - p_ref).norm() / p_ref.norm())
            buf = bufs[0].full_tensor() if isinstance(bufs[0], DTensor) else bufs[0]
            buf_rel = float((buf.double() - ref_bufs[0].double()).norm() / ref_bufs[0].double().norm())
            fallback_warnings = sum(issubclass(w_.category, ShardedFallbackWarning) for w_ in caught)
            results[f"{case['name']}/{ci}"] = {
                "rel": rel,
                "buf_rel": buf_rel,
                "calls": calls,
                "warnings": fallback_warnings,
                "buffer_is_dtensor": isinstance(bufs[0], DTensor) or bool(case.get("plain_buffer")),
                "buf_dtype_match": bufs[0].dtype == ref_bufs[0].dtype,
                "buffer_placements": not isinstance(bufs[0], DTensor)
                or tuple(bufs[0].placements) == tuple(p_dt.placements),
                "local_numel": p_dt.to_local().numel(),
            }
    return results


def scenario_nonfinite() -> dict[str, Any]:
    """NaN in rank 1's shard only: every rank must raise (nothing changed), or skip that tensor on every rank."""
    mesh = init_device_mesh("cpu", (WORLD,))
    g = torch.Generator().manual_seed(3)
    shapes = [(37, 20), (9,), (40, 24)]
    ws = [torch.randn(s, generator=g) for s in shapes]
    gs = [torch.randn(s, generator=g) for s in shapes]
    out: dict[str, Any] = {}
    for bad in (0, 1):  # a matrix, a vector
        ps = [distribute_tensor(w.clone(), mesh, [Shard(0)]) for w in ws]
        grads = [distribute_tensor(G.clone(), mesh, [Shard(0)]) for G in gs]
        if RANK == WORLD - 1:
            grads[bad].to_local().view(-1)[0] = float("nan")
        kw = dict(
            lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16, compat="paper", maximize=False
        )
        bufs: list[Any] = [None] * 3
        try:
            andi_functional(ps, grads, bufs, skip_nonfinite=False, **kw)
            raised = ""
        except FloatingPointError as exc:
            raised = str(exc)
        unchanged = all(torch.equal(p.full_tensor(), w) for p, w in zip(ps, ws)) and all(b is None for b in bufs)
        skipped = andi_functional(ps, grads, bufs, skip_nonfinite=True, **kw)
        ref = [w.clone() for w in ws]
        ref_bufs: list[Any] = [None] * 3
        keep = [i for i in range(3) if i != bad]
        andi_functional(
            [ref[i] for i in keep],
            [gs[i] for i in keep],
            [ref_bufs[i] for i in keep],
            skip_nonfinite=False,
            foreach=False,
            **kw,
        )
        others = max(float((ps[i].full_tensor() - ref[i]).norm() / ref[i].norm()) for i in keep)
        out[f"bad{bad}"] = {
            "raised": raised,
            "unchanged_after_raise": unchanged,
            "skipped": skipped,
            "bad_param_unchanged": torch.equal(ps[bad].full_tensor(), ws[bad]),
            "bad_buffer_none": bufs[bad] is None,
            "others_rel": others,
        }
    return out


def scenario_refusals() -> dict[str, Any]:
    """A refused sharded step changes nothing on any rank; a finite gradient whose fp32 squares overflow is updated
    like the single-device path; one whose norm is beyond float32 is refused as an overflow, not as NaN."""
    mesh = init_device_mesh("cpu", (WORLD,))
    g = torch.Generator().manual_seed(7)
    shapes = [(37, 20), (9,), (40, 24)]
    ws = [torch.randn(s, generator=g) for s in shapes]
    gs = [torch.randn(s, generator=g) for s in shapes]
    kw = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.0, eps=1e-8, min_dim=16)

    def sharded(tensors: list[torch.Tensor]) -> list[Any]:
        return [distribute_tensor(t.clone(), mesh, [Shard(0)]) for t in tensors]

    def state_after_one_step() -> tuple[list[Any], list[Any]]:
        ps, bufs = sharded(ws), [None] * 3
        andi_functional(ps, sharded(gs), bufs, **kw)
        return ps, bufs

    def attempt(ps: list[Any], grads: list[Any], bufs: list[Any]) -> dict[str, Any]:
        before = [full(p) for p in ps], [full(b) for b in bufs]
        try:
            andi_functional(ps, grads, bufs, **kw)
            raised = ""
        except (FloatingPointError, ValueError, TypeError) as exc:
            raised = f"{type(exc).__name__}: {exc}"
        unchanged = all(torch.equal(full(p), b) for p, b in zip(ps, before[0])) and all(
            torch.equal(full(buf), b) for buf, b in zip(bufs, before[1])
        )
        return {"raised": raised, "unchanged": unchanged}

    out: dict[str, Any] = {}
    ps, bufs = state_after_one_step()  # NaN in the last tensor, on the last rank's shard only
    grads = sharded(gs)
    if RANK == WORLD - 1:
        grads[-1].to_local().view(-1)[-1] = float("nan")
    out["nan_last"] = attempt(ps, grads, bufs)
    ps, bufs = state_after_one_step()  # the last buffer has the wrong global shape
    bufs[-1] = sharded([torch.zeros(24, 40)])[0]
    out["wrong_shape_buffer"] = attempt(ps, sharded(gs), bufs)
    ps, bufs = state_after_one_step()  # a finite gradient beyond float32's norm limit
    huge = [G.clone() for G in gs]
    huge[-1] = torch.full((40, 24), 3e38)
    out["overflow"] = attempt(ps, sharded(huge), bufs)
    # Squares overflow float32 but ‖G‖ fits: updated, equal to the single-device path on the full tensors.
    big = [G * 1e20 for G in gs]
    ps, bufs = sharded(ws), [None] * 3
    andi_functional(ps, sharded(big), bufs, **kw)
    ref, ref_bufs = [w.clone() for w in ws], [None] * 3
    andi_functional(ref, big, ref_bufs, foreach=False, **kw)
    out["rescued_rel"] = max(float((p.full_tensor() - r).norm() / r.norm()) for p, r in zip(ps, ref))
    return out


def scenario_grad_norms() -> dict[str, Any]:
    """``dtensor_grad_norms`` (the optimizer's cross-group non-finite screen) vs norms of the full tensors."""
    mesh = init_device_mesh("cpu", (WORLD,))
    g = torch.Generator().manual_seed(5)
    layouts = [
        ((37, 20), [Shard(0)]),
        ((20, 37), [Shard(1)]),
        ((3,), [Shard(0)]),
        ((1, 8), [Shard(0)]),
        ((6, 5), [Replicate()]),
    ]
    fulls = [torch.randn(shape, generator=g, dtype=torch.float64) for shape, _ in layouts]
    grads = [distribute_tensor(t, mesh, pl, src_data_rank=None) for t, (_, pl) in zip(fulls, layouts)]
    grads.append(fulls[0].clone())  # a plain tensor in the same call
    with CollectiveLog() as rec:
        norms = dtensor_grad_norms(grads)
    want = [torch.linalg.vector_norm(t) for t in [*fulls, fulls[0]]]
    rel = max(float(abs(n - w) / w) for n, w in zip(norms, want))
    if RANK == WORLD - 1:
        grads[1].to_local().view(-1)[0] = float("inf")
    flagged = [not bool(torch.isfinite(n)) for n in dtensor_grad_norms(grads)]
    return {"rel": rel, "calls": rec.calls, "flagged": flagged, "plain_types": [type(n).__name__ for n in norms]}


def _dcp_model(seed: int) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = shard_gpt(TinyGPT())
    return model, andi.ANDI(model.parameters(), lr=0.02, weight_decay=0.01)


def scenario_dcp_save(out: Path) -> dict[str, Any]:
    """Uninterrupted 6 steps with a DCP checkpoint after 3; then a fresh 2-rank job resumes from it."""
    ckpt = out / "ckpt"
    model, opt = _dcp_model(0)
    batches = batches_of(gpt_batch)
    train(model, opt, gpt_loss, batches, 3)
    msd, osd = get_state_dict(model, opt)
    dcp.save({"model": msd, "optim": osd}, checkpoint_id=str(ckpt))
    train(model, opt, gpt_loss, batches, 3)
    final = {n: full(p.detach()).clone() for n, p in model.named_parameters()}
    final_bufs = {n: full(opt.state[p]["momentum_buffer"]).clone() for n, p in model.named_parameters()}
    if RANK == 0:
        torch.save({"params": final, "bufs": final_bufs}, out / "uninterrupted.pt")
    dist.barrier()

    model2, opt2 = _dcp_model(123)  # different init: everything must come from the checkpoint
    msd2, osd2 = get_state_dict(model2, opt2)
    state = {"model": msd2, "optim": osd2}
    dcp.load(state, checkpoint_id=str(ckpt))
    set_state_dict(model2, opt2, model_state_dict=state["model"], optim_state_dict=state["optim"])
    train(model2, opt2, gpt_loss, batches_of(gpt_batch, start=3), 3)
    diff = max(float((full(p.detach()) - final[n]).abs().max()) for n, p in model2.named_parameters())
    buf_diff = max(
        float((full(opt2.state[p]["momentum_buffer"]) - final_bufs[n]).abs().max())
        for n, p in model2.named_parameters()
    )
    buffer_types = {type(opt2.state[p]["momentum_buffer"]).__name__ for p in model2.parameters()}
    return {"max_abs_diff": diff, "buf_max_abs_diff": buf_diff, "buffer_types": sorted(buffer_types)}


def scenario_dcp_load(out: Path) -> dict[str, Any]:
    """Load the 2-rank checkpoint on this (1-rank) job, FSDP2 on a 1-device mesh and a plain model: continue."""
    ckpt, saved = out / "ckpt", torch.load(out / "uninterrupted.pt")
    results = {}
    for kind in ("fsdp", "plain"):
        if kind == "fsdp":
            model, opt = _dcp_model(123)
        else:
            torch.manual_seed(123)
            model = TinyGPT()
            opt = andi.ANDI(model.parameters(), lr=0.02, weight_decay=0.01)
        msd, osd = get_state_dict(model, opt)
        state = {"model": msd, "optim": osd}
        dcp.load(state, checkpoint_id=str(ckpt))
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
        train(model, opt, gpt_loss, batches_of(gpt_batch, start=3), 3)
        rel = max(
            float((full(p.detach()) - saved["params"][n]).norm() / saved["params"][n].norm())
            for n, p in model.named_parameters()
        )
        results[kind] = {"max_rel_diff": rel}
    return results


def scenario_example() -> dict[str, Any]:
    """examples/fsdp2_gpt.py inside this process group: a few smoke-size steps, ANDI + AdamW routed."""
    import sys

    from andi.bench.tasks.data import load_tinyshakespeare

    try:
        load_tinyshakespeare(download=False)
    except (OSError, RuntimeError) as exc:
        return {"skipped": f"TinyShakespeare is not available offline: {exc}"}
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "examples"))
    import fsdp2_gpt

    args = fsdp2_gpt.parse_args(
        ["--steps", "12", "--size", "smoke", "--batch-size", "8", "--max-chars", "20000", "--log-every", "4"]
    )
    return {"last_loss": fsdp2_gpt.train(args), "uniform_loss": math.log(65)}


SCENARIOS: dict[str, Callable[..., dict[str, Any]]] = {
    "example": scenario_example,
    "fsdp_gpt": scenario_fsdp_gpt,
    "fsdp_mlp_min0": scenario_fsdp_mlp_min0,
    "fsdp_gpt_reference": scenario_fsdp_gpt_reference,
    "multigroup": scenario_multigroup,
    "ddp": scenario_ddp,
    "placements": scenario_placements,
    "nonfinite": scenario_nonfinite,
    "grad_norms": scenario_grad_norms,
    "refusals": scenario_refusals,
    "dcp_save": scenario_dcp_save,
    "dcp_load": scenario_dcp_load,
}
NEEDS_OUT = {"dcp_save", "dcp_load"}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scenarios", required=True)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=RANK, world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    results: dict[str, Any] = {}
    try:
        for name in args.scenarios.split(","):
            fn = SCENARIOS[name]
            try:
                results[name] = fn(args.out) if name in NEEDS_OUT else fn()
            except Exception:  # recorded for the test report; the other scenarios still run
                results[name] = {"error": traceback.format_exc()}
            dist.barrier()
    finally:
        torch.save(results, args.out / f"rank{RANK}.pt")
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
