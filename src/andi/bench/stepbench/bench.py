r"""``andi-bench step``: how long ``optimizer.step()`` takes, against the memory-bandwidth limit.

Times ``optimizer.step()`` alone — gradients pre-filled, warm-up steps excluded, synchronised (CUDA events after a
``torch.cuda.synchronize()`` on GPU, ``time.perf_counter`` on CPU), median of ``repeats`` ≥ 20 — for every ANDI path
(single-tensor, foreach, compiled, fused Triton) against ``torch.optim.AdamW`` (foreach and fused),
``torch.optim.SGD`` (Nesterov), ``torch.optim.Muon`` (2-D tensors only) and the registry's optimizers at their
default lrs (the arms: :mod:`andi.bench.stepbench.arms`).

For each (shape set, optimizer) it reports the median step time, the ratio to the baseline (fused AdamW on CUDA,
foreach AdamW on CPU — the issue's targets), the optimizer-state bytes per parameter and the *effective bandwidth*

.. math::  \text{GB/s} = 7 \cdot N \cdot \text{bytes per element} \,/\, t_\text{step}

— the traffic of one fused AdamW step (read ``G, m, v, θ``; write ``m, v, θ``) and of one ANDI step on the
equilibration branch (read ``G`` three times, read and write ``M`` and ``θ``) — against the device's peak: a known
HBM figure for the GPU by name, or a measured STREAM-style copy/triad bandwidth on CPU.

Shape sets: ``gpt124m`` (every weight of GPT-2 small), ``32x4096^2``, ``8x1024^2`` (CPU size), ``square-sweep`` (one
n×n matrix for n = 256…8192, capped at 2048 on CPU unless ``max_side`` says otherwise), ``tiny`` (CI), and any
``KxN^2`` or ``KxMxN``.

Python API: :func:`run_step_bench` returns a result dict (``meta`` + ``rows``); :func:`write_outputs`
(:mod:`andi.bench.stepbench.report`) writes ``step_bench.json``, ``step_bench.md`` and ``step_bench.png``.
CLI: :func:`cli_main`.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer

from andi.bench.stepbench.arms import Arm, available_arms, baseline_arm, default_arms, registry_arms
from andi.bench.stepbench.report import format_markdown, plot_results, write_outputs
from andi.bench.stepbench.shapes import SHAPE_SETS, Case, refuse_unfit, resolve_shape_set
from andi.bench.util import device_info, sync, versions

__all__ = [
    "SHAPE_SETS",
    "Arm",
    "Case",
    "available_arms",
    "baseline_arm",
    "cli_main",
    "default_arms",
    "format_markdown",
    "measure_peak_bandwidth",
    "plot_results",
    "resolve_shape_set",
    "run_step_bench",
    "write_outputs",
]

#: Bytes moved per parameter element by one step in the bandwidth model, in units of the element size.
TRAFFIC_ELEMENTS = 7
_INTERLEAVE_ROUNDS = 4
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16, "float64": torch.float64}
# Theoretical peak memory bandwidth (GB/s, 1e9 B/s) of common GPUs, from the vendors' data sheets; the first
# substring found in torch.cuda.get_device_name() wins, so the more specific names come first.
_GPU_PEAK_GBPS: tuple[tuple[str, float], ...] = (
    ("GH200", 4000.0),
    ("H200", 4800.0),
    ("H100 NVL", 3900.0),
    ("H100 PCIe", 2000.0),
    ("H100", 3350.0),
    ("H800", 3350.0),
    ("A100-SXM4-80GB", 2039.0),
    ("A100 80GB PCIe", 1935.0),
    ("A100", 1555.0),
    ("L40S", 864.0),
    ("L4", 300.0),
    ("A10G", 600.0),
    ("V100", 900.0),
    ("RTX 4090", 1008.0),
    ("B200", 8000.0),
    ("MI300X", 5300.0),
)


# ----------------------------------------------------------------------------------------------------------------
# Device facts
# ----------------------------------------------------------------------------------------------------------------
def _best_seconds(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Fastest of ``repeats`` synchronised calls after one warm-up call (STREAM reports the best time too)."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def measure_peak_bandwidth(device: torch.device | str, *, mib: int = 256, repeats: int = 10) -> dict[str, Any]:
    """Peak memory bandwidth in GB/s: the data-sheet figure for known GPUs, else a measured STREAM-style bound.

    Measured on ``mib`` MiB fp32 arrays, best of ``repeats`` (as STREAM), STREAM byte counting:
    ``dst.copy_(src)`` (2 × size, "copy"), ``torch.add(b, c, alpha=3, out=a)`` (3 × size, "triad") and the in-place
    ``a.add_(b, alpha=0.5)``
    (3 × size, "axpy": read two arrays, write one back in place — an optimizer step's access pattern, and free of
    the write-allocate traffic that lowers copy and triad). The largest is the estimate: a practical ceiling for
    this machine and thread count, not the DRAM's rating.
    """
    device = torch.device(device)
    n = mib * 2**20 // 4
    x, y, z = (torch.empty(n, device=device).uniform_() for _ in range(3))
    copy = 2 * x.nbytes / _best_seconds(lambda: x.copy_(y), device, repeats) / 1e9
    triad = 3 * x.nbytes / _best_seconds(lambda: torch.add(y, z, alpha=3.0, out=x), device, repeats) / 1e9
    axpy = 3 * x.nbytes / _best_seconds(lambda: x.add_(y, alpha=0.5), device, repeats) / 1e9
    out: dict[str, Any] = {
        "copy_gbps": copy,
        "triad_gbps": triad,
        "axpy_gbps": axpy,
        "peak_gbps": max(copy, triad, axpy),
        "source": f"measured (max of STREAM copy/triad/in-place axpy, {mib} MiB fp32)",
    }
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, gbps in _GPU_PEAK_GBPS:
            if key in name:
                out.update(peak_gbps=gbps, source=f"data sheet: {key} ({gbps:g} GB/s)")
                break
    return out


def _load_average() -> list[float] | None:
    """1/5/15-minute load averages (a CPU timing taken under load is noisy: the JSON says so)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not available on every platform
        return None


# ----------------------------------------------------------------------------------------------------------------
# Timing
# ----------------------------------------------------------------------------------------------------------------
class _Trial:
    """One arm on one case: its own parameters, gradients and optimizer (or why it did not run)."""

    def __init__(self, arm: Arm, *, status: str = "ok", reason: str | None = None) -> None:
        self.arm, self.status, self.reason = arm, status, reason
        self.params: list[Tensor] = []
        self.optimizer: Optimizer | None = None
        self.numel = self.n_tensors = 0
        self.times: list[float] = []
        self._state_bytes = 0

    @classmethod
    def build(cls, arm: Arm, case: Case, device: torch.device, dtype: torch.dtype, seed: int) -> _Trial:
        trial = cls(arm)
        shapes = [s for s in case.shapes if len(s) == 2] if arm.matrices_only else list(case.shapes)
        trial.numel = sum(math.prod(s) for s in shapes)
        trial.n_tensors = len(shapes)
        gen = torch.Generator(device=device).manual_seed(seed)
        for shape in shapes:
            p = torch.nn.Parameter(torch.randn(shape, generator=gen, device=device, dtype=dtype))
            p.grad = torch.randn(shape, generator=gen, device=device, dtype=dtype)
            trial.params.append(p)
        if shapes:
            trial.optimizer = arm.build(trial.params)
        return trial

    def step(self, device: torch.device) -> float:
        assert self.optimizer is not None
        sync(device)
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            self.optimizer.step()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1e3
        t0 = time.perf_counter()
        self.optimizer.step()
        return time.perf_counter() - t0

    def state_bytes(self) -> int:
        """Sum of ``nbytes`` over the optimizer's state tensors (kept after :meth:`release`)."""
        if self.optimizer is not None:
            self._state_bytes = sum(
                v.numel() * v.element_size()
                for state in self.optimizer.state.values()
                for v in state.values()
                if isinstance(v, Tensor)
            )
        return self._state_bytes

    def release(self, device: torch.device) -> None:
        """Drop the tensors, keep the numbers (large cases do not fit several arms at once)."""
        self.state_bytes()
        self.optimizer, self.params = None, []
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _row(trial: _Trial, case: Case, device: torch.device, dtype: torch.dtype, peak: float, warmup: int) -> dict:
    t = sorted(trial.times)
    row: dict[str, Any] = {
        "case": case.name,
        "shape_set": case.shape_set,
        "optimizer": trial.arm.name,
        "description": trial.arm.description,
        "status": trial.status,
        "reason": trial.reason,
        "device": device.type,
        "dtype": str(dtype).removeprefix("torch."),
        "numel": trial.numel,
        "case_numel": case.numel,
        "n_tensors": trial.n_tensors,
        "warmup": warmup,
        "repeats": len(t),
        "times_s": trial.times,
    }
    if trial.status != "ok" or not t:
        return row
    median = statistics.median(t)
    elem = torch.empty((), dtype=dtype).element_size()
    traffic = TRAFFIC_ELEMENTS * trial.numel * elem
    state = trial.state_bytes()
    row.update(
        median_s=median,
        p25_s=t[len(t) // 4],
        p75_s=t[(3 * len(t)) // 4],
        min_s=t[0],
        mean_s=statistics.fmean(t),
        ns_per_param=median / trial.numel * 1e9,
        traffic_bytes=traffic,
        gbps=traffic / median / 1e9,
        frac_of_peak=traffic / median / 1e9 / peak if peak > 0 else None,
        state_bytes=state,
        state_bytes_per_param=state / trial.numel,
    )
    return row


def _estimate_bytes(case: Case, n_arms: int, dtype: torch.dtype) -> int:
    """Memory for holding every arm of a case at once: params + grads + up to two state buffers each."""
    return n_arms * 4 * case.numel * torch.empty((), dtype=dtype).element_size()


def _run_case(
    case: Case,
    arms: Sequence[Arm],
    device: torch.device,
    dtype: torch.dtype,
    *,
    repeats: int,
    warmup: int,
    seed: int,
    max_seconds: float | None,
    interleave: bool,
    log: Callable[[str], None],
) -> list[_Trial]:
    """Warm up then time every arm; interleaved arms take turns step by step, rotating who goes first."""

    def start(arm: Arm) -> _Trial:
        reason = arm.unavailable(device)
        if reason is not None:
            log(f"  {arm.name}: skipped ({reason})")
            return _Trial(arm, status="skipped", reason=reason)
        try:
            trial = _Trial.build(arm, case, device, dtype, seed)
            if trial.optimizer is None:
                return _Trial(arm, status="skipped", reason="no tensor of a shape this optimizer accepts")
            last = 0.0
            for _ in range(warmup):
                last = trial.step(device)
        except Exception as exc:  # recorded in the row and logged: one broken arm must not stop the benchmark
            log(f"  {arm.name}: ERROR {type(exc).__name__}: {exc}")
            return _Trial(arm, status="error", reason=f"{type(exc).__name__}: {exc}")
        if max_seconds is not None and last * repeats > max_seconds:
            trial.release(device)
            trial.status = "skipped"
            trial.reason = (
                f"estimated {last * repeats:.0f} s for {repeats} steps (last warm-up step {last:.3g} s) "
                f"exceeds max_seconds={max_seconds:g}"
            )
            log(f"  {arm.name}: skipped ({trial.reason})")
        return trial

    trials: list[_Trial] = []
    if interleave:
        # Arms take turns in blocks of ~repeats/4 timed steps, each block after one untimed step: the switch from
        # another arm (cold caches; BLAS threads of a matmul-heavy arm still spinning) is not timed.
        trials = [start(a) for a in arms]
        live = [t for t in trials if t.status == "ok"]
        block = max(1, math.ceil(repeats / _INTERLEAVE_ROUNDS))
        for r in range(math.ceil(repeats / block)):
            k = r % max(len(live), 1)
            for trial in live[k:] + live[:k]:
                trial.step(device)
                for _ in range(min(block, repeats - len(trial.times))):
                    trial.times.append(trial.step(device))
        for trial in live:
            trial.release(device)
    else:
        for arm in arms:
            trial = start(arm)
            trials.append(trial)
            if trial.status != "ok":
                continue
            trial.times = [trial.step(device) for _ in range(repeats)]
            log(f"  {arm.name}: median {statistics.median(trial.times) * 1e3:.3f} ms")
            trial.release(device)
    return trials


def run_step_bench(
    shape_sets: Iterable[str] = ("8x1024^2",),
    optimizers: Iterable[str] | None = None,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype = torch.float32,
    repeats: int = 20,
    *,
    warmup: int = 3,
    max_side: int | None = None,
    max_seconds: float | None = None,
    interleave: str | bool = "auto",
    seed: int = 0,
    peak: Mapping[str, Any] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the step benchmark and return ``{"schema", "kind", "meta", "rows"}`` (JSON-serialisable).

    Args:
        shape_sets: names understood by :func:`resolve_shape_set`.
        optimizers: arm names (:func:`available_arms`); ``None`` = :func:`default_arms`. The baseline arm
            (:func:`baseline_arm`) is always added so every row has a ratio.
        device, dtype: where and in which dtype parameters, gradients and state live.
        repeats: timed steps per arm and case (≥ 1; the issue's protocol uses ≥ 20); the median is reported.
        warmup: untimed steps first (the first step creates state; compiled arms compile there).
        max_side: largest side of ``square-sweep`` (default 2048 on CPU, 8192 on CUDA).
        max_seconds: skip an arm (recorded with the reason) whose estimated timed run on a case exceeds this.
        interleave: ``True`` = all arms of a case live at once and take turns in 4 rounds of ``repeats / 4``
            timed steps, each round's block after one untimed step (robust to load drift on a shared machine),
            ``False`` = one after another (less memory), ``"auto"`` = interleave when that fits in 2 GiB on CPU or
            a quarter of free CUDA memory.
        peak: a precomputed :func:`measure_peak_bandwidth` result (measured here when ``None``).
        log: progress sink, e.g. ``print``.
    """
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", torch.cuda.current_device())
    dtype = _DTYPES[dtype] if isinstance(dtype, str) else dtype
    if repeats < 1 or warmup < 1:
        raise ValueError(f"repeats and warmup must be >= 1, got repeats={repeats}, warmup={warmup}")
    log = log or (lambda msg: None)
    known = available_arms()
    names = list(optimizers) if optimizers is not None else default_arms(device)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"Unknown optimizer arm(s) {unknown}; available: {', '.join(known)}")
    base = baseline_arm(device)
    if base not in names:
        names.append(base)
    cases = [c for s in shape_sets for c in resolve_shape_set(s, device_type=device.type, max_side=max_side)]
    peak_info = dict(peak) if peak is not None else measure_peak_bandwidth(device)
    peak_gbps = float(peak_info["peak_gbps"])
    load_before = _load_average()

    rows = []
    for case in cases:
        if isinstance(interleave, bool):
            inter = interleave
        else:
            budget = 2 * 2**30 if device.type == "cpu" else torch.cuda.mem_get_info(device)[0] // 4
            inter = _estimate_bytes(case, len(names), dtype) <= budget
        log(f"{case.name}: {len(case.shapes)} tensors, {case.numel:,} parameters{' (interleaved)' if inter else ''}")
        trials = _run_case(
            case,
            [known[n] for n in names],
            device,
            dtype,
            repeats=repeats,
            warmup=warmup,
            seed=seed,
            max_seconds=max_seconds,
            interleave=inter,
            log=log,
        )
        case_rows = [_row(t, case, device, dtype, peak_gbps, warmup) for t in trials]
        ref = next((r for r in case_rows if r["optimizer"] == base and r["status"] == "ok"), None)
        for r in case_rows:
            ok = r["status"] == "ok" and ref is not None
            r["baseline"] = base
            r["ratio_to_baseline"] = r["median_s"] / ref["median_s"] if ok else None
            if inter and r["status"] == "ok":
                log(f"  {r['optimizer']}: median {r['median_s'] * 1e3:.3f} ms")
        rows.extend(case_rows)
        del trials
        gc.collect()
    meta = {
        "device": device_info(device),
        "dtype": str(dtype).removeprefix("torch."),
        "repeats": repeats,
        "warmup": warmup,
        "seed": seed,
        "baseline": base,
        "peak_bandwidth": peak_info,
        "traffic_model": f"{TRAFFIC_ELEMENTS} * N * element_size bytes per step",
        "versions": versions(),
        "shape_sets": list(shape_sets),
        "max_side": max_side,
        "max_seconds": max_seconds,
        "timer": "cuda events after synchronize" if device.type == "cuda" else "time.perf_counter",
        "load_average": {"before": load_before, "after": _load_average()},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return {"schema": 1, "kind": "step-bench", "meta": meta, "rows": rows}


# ----------------------------------------------------------------------------------------------------------------
# CLI
# ----------------------------------------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="andi-bench step",
        description="Time optimizer.step() alone for ANDI's paths and the baselines; JSON + markdown + PNG.",
    )
    p.add_argument(
        "--shapes",
        nargs="+",
        default=["8x1024^2"],
        metavar="SET",
        help=f"shape sets: {', '.join(SHAPE_SETS)}, KxN^2 or KxMxN (default 8x1024^2)",
    )
    p.add_argument(
        "--optimizers",
        nargs="+",
        default=None,
        metavar="ARM",
        help="arms (see --list); 'default' = built-ins usable here, 'all' = also the registry's",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--dtype", default="float32", choices=sorted(_DTYPES))
    p.add_argument("--repeats", type=int, default=20, help="timed steps per arm (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps first (default 3)")
    p.add_argument("--max-side", type=int, default=None, help="largest square-sweep side (CPU default 2048)")
    p.add_argument(
        "--max-seconds",
        type=float,
        default=None,
        help="skip an arm whose timed run on a case is estimated to exceed this",
    )
    p.add_argument("--interleave", choices=("auto", "on", "off"), default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--peak-gbps",
        type=float,
        default=None,
        help="peak bandwidth to report against (default: data sheet for known GPUs, else measured)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads for a CPU run")
    p.add_argument(
        "--out", default="andi-bench-results/step", help="output directory (default andi-bench-results/step)"
    )
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--list", action="store_true", help="list shape sets and arms, then exit")
    p.add_argument("--quiet", action="store_true")
    return p


def cli_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``andi-bench step``; returns the exit status (1 when an arm raised)."""
    args = _parser().parse_args(argv)
    device = (
        torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if args.device == "auto"
        else torch.device(args.device)
    )
    if args.list:
        print("shape sets:", ", ".join(SHAPE_SETS), "(and KxN^2, KxMxN)")
        for name, arm in available_arms().items():
            why = arm.unavailable(device)
            print(f"  {name:20s} {arm.description}" + (f"  [unavailable: {why}]" if why else ""))
        return 0
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    arms = args.optimizers
    if arms == ["default"]:
        arms = None
    elif arms == ["all"]:
        arms = default_arms(device) + list(registry_arms())
    log = (lambda msg: None) if args.quiet else (lambda msg: print(msg, file=sys.stderr, flush=True))
    try:
        refuse_unfit(args.shapes, device, _DTYPES[args.dtype], args.max_side)
        result = run_step_bench(
            args.shapes,
            arms,
            device,
            args.dtype,
            args.repeats,
            warmup=args.warmup,
            max_side=args.max_side,
            max_seconds=args.max_seconds,
            interleave={"on": True, "off": False}.get(args.interleave, "auto"),
            seed=args.seed,
            log=log,
            peak=None if args.peak_gbps is None else {"peak_gbps": args.peak_gbps, "source": "given (--peak-gbps)"},
        )
    except ValueError as exc:
        print(f"andi-bench step: {exc}", file=sys.stderr)
        return 2
    paths = write_outputs(result, args.out, plot=not args.no_plot)
    print(format_markdown(result))
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 1 if any(r["status"] == "error" for r in result["rows"]) else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(cli_main())
