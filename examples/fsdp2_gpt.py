"""Train the paper's character-level NanoGPT with FSDP2 + ANDI, and print ANDI's communication cost.

ANDI runs on the hidden matrices and AdamW on embeddings, head and vectors (routed by ``andi.param_groups``), or
ANDI on every parameter (``--optimizer andi``, the paper's setting). Parameters are sharded by rows with
``torch.distributed.fsdp.fully_shard``; ANDI's step on the ``Shard(0)`` DTensors equals the single-device step and
adds two small all-reduces per step (see the README's "Distributed" section)::

    torchrun --nproc-per-node 2 examples/fsdp2_gpt.py --steps 200                   # CPU, gloo
    torchrun --nproc-per-node 8 examples/fsdp2_gpt.py --device cuda --size paper    # GPUs, nccl
    torchrun --nproc-per-node 2 examples/fsdp2_gpt.py --steps 50 --checkpoint ckpt  # DCP save at the end ...
    torchrun --nproc-per-node 1 examples/fsdp2_gpt.py --steps 50 --resume ckpt      # ... and resume on 1 rank
    python examples/fsdp2_gpt.py --comm-table                                       # ANDI vs Muon, 124M GPT-2

Without ``torchrun`` (no ``RANK`` in the environment) it runs as a single-rank group. Rank 0 prints the loss and,
once, the collectives that one optimizer step issued (counted with ``torch.distributed``'s ``CommDebugMode``).
"""

from __future__ import annotations

import argparse
import math
import os
import socket
import time
import warnings
from collections.abc import Iterator, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

SIZES = {
    "paper": {"block_size": 64, "n_embd": 128, "n_head": 4, "n_layer": 4},  # 818,176 parameters, as in the paper
    "small": {"block_size": 64, "n_embd": 64, "n_head": 4, "n_layer": 2},
    "smoke": {"block_size": 16, "n_embd": 32, "n_head": 2, "n_layer": 1},
}
GPT2_124M = {"vocab_size": 50257, "block_size": 1024, "n_embd": 768, "n_layer": 12}
BYTES_FP32 = 4


# ----------------------------------------------------------------------------------------------- communication table
class _GPT2Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.ModuleDict({"c_attn": nn.Linear(d, 3 * d), "c_proj": nn.Linear(d, d)})
        self.mlp = nn.ModuleDict({"c_fc": nn.Linear(d, 4 * d), "c_proj": nn.Linear(4 * d, d)})


class _GPT2(nn.Module):
    """GPT-2 small (124M) with nanoGPT's parameter names and shapes; built on the meta device, never run."""

    def __init__(self, vocab_size: int, block_size: int, n_embd: int, n_layer: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab_size, n_embd)
        self.wpe = nn.Embedding(block_size, n_embd)
        self.h = nn.ModuleList(_GPT2Block(n_embd) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as in GPT-2


def communication_table(world_sizes: Sequence[int] = (2, 8, 64), min_dim: int = 16) -> str:
    """Markdown table: extra bytes each rank sends per optimizer step under FSDP2 (``Shard(0)``), from the shapes.

    Ring collectives: an all-reduce of N elements sends 2(P-1)/P·N per rank, an all-gather of N elements
    (P-1)/P·N, a reduce-scatter (P-1)/P·N. ANDI: one all-reduce of the column-sum-of-squares vectors (Σ n over the
    equilibrated matrices) plus one of the scalars (one per tensor). Exact Muon needs every hidden matrix whole:
    either every rank all-gathers it (``full_tensor()``), or each matrix is gathered to one owner rank and its
    update scattered back (dion-style all-to-all; 2(P-1)/P²·Σmn per rank on average).
    """
    with torch.device("meta"):
        model = _GPT2(**GPT2_124M)
    named = list(model.named_parameters())
    total = sum(p.numel() for _, p in named)
    hidden = [(n, p) for n, p in named if p.ndim >= 2 and n.startswith("h.")]  # Muon's split: hidden matrices only

    def andi_elements(params: list[tuple[str, Tensor]]) -> tuple[int, int]:
        vector = sum(
            math.prod(p.shape[1:])
            for _, p in params
            if p.ndim >= 2 and min(p.shape[0], math.prod(p.shape[1:])) > min_dim
        )
        return vector, len(params)

    andi_all = andi_elements(named)
    andi_hidden = andi_elements(hidden)
    muon_elems = sum(p.numel() for _, p in hidden)

    def mb(elements: float) -> str:
        return f"{elements * BYTES_FP32 / 1e6:,.2f} MB"

    lines = [
        f"GPT-2 small, {total:,} parameters ({len(named)} tensors; lm_head tied to wte); fp32; per rank and "
        "optimizer step, in addition to FSDP2's own parameter all-gathers and gradient reduce-scatter.",
        "",
        f"- ANDI, every parameter (paper): vector all-reduce of {andi_all[0]:,} floats + scalar all-reduce of "
        f"{andi_all[1]} floats",
        f"- ANDI on the {len(hidden)} hidden matrices (AdamW elsewhere, no communication): {andi_hidden[0]:,} + "
        f"{andi_hidden[1]} floats",
        f"- Muon on the same {len(hidden)} hidden matrices: they hold {muon_elems:,} elements that must be whole",
        "",
        "| ranks P | ANDI, all params | ANDI, hidden matrices | Muon, all-gather | Muon, gather-to-owner + scatter "
        "| FSDP2 gradient reduce-scatter (reference) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for p in world_sizes:
        ring = 2 * (p - 1) / p
        lines.append(
            f"| {p} | {mb(ring * sum(andi_all))} | {mb(ring * sum(andi_hidden))} | {mb((p - 1) / p * muon_elems)} "
            f"| {mb(2 * (p - 1) / p**2 * muon_elems)} | {mb((p - 1) / p * total)} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------- training
def _setup(device_kind: str) -> tuple[int, int, torch.device]:
    if not dist.is_initialized():
        if "RANK" not in os.environ:  # plain `python examples/fsdp2_gpt.py`: a one-rank group on a free port
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            os.environ.update(RANK="0", WORLD_SIZE="1", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if device_kind == "cuda":
        local = int(os.environ.get("LOCAL_RANK", rank))
        torch.cuda.set_device(local)
        return rank, world, torch.device("cuda", local)
    return rank, world, torch.device("cpu")


def _batches(
    tokens: Tensor, block: int, batch: int, seed: int, device: torch.device
) -> Iterator[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.arange(block + 1)
    while True:
        ix = torch.randint(len(tokens) - block - 1, (batch,), generator=generator)
        windows = tokens[ix[:, None] + offsets].to(device)
        yield windows[:, :-1], windows[:, 1:]


def _build(args: argparse.Namespace, vocab: int, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    import andi
    from andi.bench.tasks.char_gpt import CharGPT
    from andi.optim.routed import RoutedOptimizer
    from andi.routing import param_groups, param_roles

    torch.manual_seed(args.seed)
    model = CharGPT(vocab, **SIZES[args.size]).to(device)
    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    # CharGPT calls each block's layers one by one, so shard the attention and MLP modules (their forward hooks
    # gather the rows just in time) and the root (embeddings, LayerNorms, head).
    # The residual adds are out of place, so FSDP2's warning about modules returning views does not apply here.
    warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
    for block in model.blocks:
        fully_shard(block[1], mesh=mesh)
        fully_shard(block[3], mesh=mesh)
    fully_shard(model, mesh=mesh)
    if args.optimizer == "andi":
        opt: torch.optim.Optimizer = andi.ANDI(model.parameters(), lr=args.lr)
    else:  # after fully_shard: the groups must hold the DTensor parameters
        roles = param_roles(
            model, {"tok_emb.weight": "embedding", "pos_emb.weight": "embedding", "head.weight": "head"}
        )
        groups = param_groups(model, matrix="andi", other="adamw", roles=roles)
        opt = RoutedOptimizer(
            groups,
            hyper={
                "andi": {"lr": args.lr},
                "adamw": {"lr": args.aux_lr, "betas": (0.9, 0.95), "eps": 1e-10, "weight_decay": 0.0},
            },
        )
    return model, opt


def _checkpoint(model: nn.Module, opt: torch.optim.Optimizer, path: str, *, load: bool) -> None:
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

    model_sd, optim_sd = get_state_dict(model, opt)
    state = {"model": model_sd, "optim": optim_sd}
    if load:
        dcp.load(state, checkpoint_id=path)
        set_state_dict(model, opt, model_state_dict=state["model"], optim_state_dict=state["optim"])
    else:
        dcp.save(state, checkpoint_id=path)


def train(args: argparse.Namespace) -> float:
    """Run the training loop; returns the last logged (rank-averaged) loss."""
    from torch.distributed.tensor.debug import CommDebugMode

    from andi.bench.tasks.data import load_tinyshakespeare

    rank, world, device = _setup(args.device)
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be divisible by the number of ranks ({world})")
    text = load_tinyshakespeare(args.data_root)
    vocab = sorted(set(text))
    lut = {c: i for i, c in enumerate(vocab)}
    tokens = torch.tensor([lut[c] for c in text[: args.max_chars]], dtype=torch.long)
    model, opt = _build(args, len(vocab), device)
    if args.resume:
        _checkpoint(model, opt, args.resume, load=True)
    batches = _batches(
        tokens, SIZES[args.size]["block_size"], args.batch_size // world, args.seed + 1000 * rank, device
    )
    last = float("nan")
    t0 = time.perf_counter()
    for step in range(1, args.steps + 1):
        x, y = next(batches)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if step == 1:  # count what one optimizer step sends (forward/backward traffic is FSDP2's own)
            with CommDebugMode() as comm:
                opt.step()
            counts = {str(k).split(".")[-1]: v for k, v in comm.get_comm_counts().items()}
            if rank == 0:
                print(f"optimizer collectives in one step on {world} rank(s): {counts or 'none'}", flush=True)
        else:
            opt.step()
        if step % args.log_every == 0 or step == args.steps:
            avg = loss.detach().clone()
            dist.all_reduce(avg)
            last = float(avg) / world
            if rank == 0:
                elapsed = time.perf_counter() - t0
                print(f"step {step:5d}  loss {last:.4f}  ({elapsed / step * 1e3:.0f} ms/step)", flush=True)
    if args.checkpoint:
        _checkpoint(model, opt, args.checkpoint, load=False)
        if rank == 0:
            print(f"saved a distributed checkpoint to {args.checkpoint}", flush=True)
    return last


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32, help="global batch (split over the ranks)")
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--optimizer", choices=("andi+adamw", "andi"), default="andi+adamw")
    parser.add_argument("--lr", type=float, default=0.05, help="ANDI lr (the paper's best for this GPT: 0.05)")
    parser.add_argument("--aux-lr", type=float, default=3e-4, help="AdamW lr for embeddings, head and vectors")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--data-root", default=None, help="folder holding tinyshakespeare/input.txt")
    parser.add_argument("--max-chars", type=int, default=None, help="use only the first N characters")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--log-every", type=int, default=25)
    parser.add_argument("--checkpoint", default=None, help="save model+optimizer with torch.distributed.checkpoint")
    parser.add_argument("--resume", default=None, help="load a checkpoint saved with --checkpoint (any world size)")
    parser.add_argument("--comm-table", action="store_true", help="print ANDI vs Muon bytes per step and exit")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    if args.comm_table:
        print(communication_table())
        return
    owns_group = not dist.is_initialized()
    try:
        train(args)
    finally:
        if owns_group and dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":
    main()
