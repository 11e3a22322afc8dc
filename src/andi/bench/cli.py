"""``andi-bench``: run the benchmark protocols and write reports.

Subcommands::

    andi-bench quick  [--out DIR] [--size smoke|cpu] [--data-root DIR] [--device cpu] [--threads N]
    andi-bench run    --protocol fair|replay [--task gpt,cifar] [--optimizers andi,adamw,muon]
                      [--size full|cpu|smoke] [--device cuda] [--out DIR] ...
    andi-bench report DIR [--out FILE] [--no-figures]
    andi-bench list
    andi-bench step   ...   (optimizer-step micro-benchmarks, forwarded to andi.bench.stepbench)

Every run is stored as one JSON record in the output directory, keyed by its config hash: re-running the
same command resumes an interrupted sweep without redoing finished runs. Progress bars appear on an
interactive terminal and stay off when ``CI`` is set or stderr is not a TTY.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from andi.bench.protocol import (
    CORE_ARMS,
    PROTOCOLS,
    QUICK,
    QUICK_SMOKE,
    FairProtocol,
    ReplayProtocol,
    get_protocol,
)

if TYPE_CHECKING:
    from andi.bench.sweep import Sweep

__all__ = ["build_parser", "main"]

logger = logging.getLogger("andi.bench")

DEFAULT_RESULTS = Path("andi-bench-results")
CORE_ARM_NAMES = tuple(a.name for a in CORE_ARMS)
QUICK_SIZES = {"cpu": QUICK, "smoke": QUICK_SMOKE}


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None, help="dataset folder (default: ../shared/data if present, "
                   "else ~/.cache/andi/data)")
    p.add_argument("--device", default="cpu", help="torch device for every run (default: cpu)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float64", "bfloat16"),
                   help="parameter dtype (default: float32)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch intra-op threads for every run (default: torch's). On a busy CPU, 1 avoids "
                   "the heavy slowdown of oversubscribed threads; the count is stored in every record")
    p.add_argument("--no-report", action="store_true", help="do not write report.md after the sweep")
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="force progress bars (default: only on a terminal, never with CI=true)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="andi-bench", description="Benchmark ANDI against AdamW, Muon and the family: the paper's replay "
        "and an equal-budget fair protocol, with resumable sweeps and a markdown report.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser("quick", help="the embedded default: paper tasks at CPU size, AdamW/Muon/ANDI, equal "
                       "3-point lr grids, a report with figures (a few minutes on 2 cores)")
    q.add_argument("--out", type=Path, default=None, help=f"results directory (default: {DEFAULT_RESULTS}/quick)")
    q.add_argument("--size", choices=sorted(QUICK_SIZES), default="cpu",
                   help="cpu (default, a few minutes) or smoke (seconds; what CI runs)")
    _add_common(q)

    r = sub.add_parser("run", help="run one protocol (fair or replay) on some tasks")
    r.add_argument("--protocol", choices=sorted(PROTOCOLS), default="fair")
    r.add_argument("--task", type=_csv, default=None, help="comma-separated tasks (default: saddle,cifar,gpt)")
    r.add_argument("--optimizers", type=_csv, default=None,
                   help="comma-separated arms of the fair protocol, or 'all' (default: andi,adamw,muon); "
                   "adamw is always added since it sets the target and the aux lr")
    r.add_argument("--size", choices=("full", "cpu", "smoke"), default="cpu",
                   help="task size: full (the paper's; GPU for cifar/gpt), cpu or smoke (default: cpu)")
    r.add_argument("--steps", type=int, default=None, help="override the step count of every run")
    r.add_argument("--tuning-seeds", type=_ints, default=None, help="fair: override the tuning seeds")
    r.add_argument("--reporting-seeds", type=_ints, default=None, help="fair: override the reporting seeds")
    r.add_argument("--out", type=Path, default=None,
                   help=f"results directory (default: {DEFAULT_RESULTS}/<protocol>)")
    _add_common(r)

    rep = sub.add_parser("report", help="write report.md and figures from a results directory")
    rep.add_argument("dir", type=Path)
    rep.add_argument("--out", type=Path, default=None, help="report path (default: DIR/report.md)")
    rep.add_argument("--no-figures", action="store_true", help="markdown only, no PNGs")

    sub.add_parser("list", help="tasks, optimizers and protocols")
    sub.add_parser("step", help="optimizer-step micro-benchmarks (arguments are forwarded; see `step --help`)",
                   add_help=False)
    return parser


def _write_report(out: Path) -> Path:
    from andi.bench.report import generate_report

    path = generate_report(out)
    print(f"report: {path}")
    return path


def _sweep(out: Path, args: argparse.Namespace) -> Sweep:
    from andi.bench.sweep import Sweep

    if args.threads is not None:
        if args.threads < 1:
            raise SystemExit(f"andi-bench: --threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)

    return Sweep(out, data_root=args.data_root, progress=args.progress)


def _summary(what: str, sweep: Sweep, elapsed: float, out: Path) -> None:
    corrupt = f", {len(sweep.store.corrupt)} corrupt record(s) recomputed" if sweep.store.corrupt else ""
    print(f"{what}: {sweep.computed} runs computed, {sweep.reused} reused{corrupt} in {elapsed:.1f} s -> {out}")


def cmd_quick(args: argparse.Namespace) -> int:
    from andi.bench.sweep import run_protocol

    protocol = QUICK_SIZES[args.size]
    out = args.out or DEFAULT_RESULTS / "quick"
    sweep = _sweep(out, args)
    t0 = time.perf_counter()
    run_protocol(protocol, sweep, size=args.size, device=args.device, dtype=args.dtype)
    elapsed = time.perf_counter() - t0
    _summary(f"quick ({args.size})", sweep, elapsed, out)
    if not args.no_report:
        _write_report(out)
    return 0


def _fair_arms(protocol: FairProtocol, requested: list[str] | None) -> list[str] | None:
    if requested is None:  # the core arms; family arms by name or with 'all'
        return [a.name for a in protocol.arms if a.name in CORE_ARM_NAMES]
    if requested == ["all"]:
        available = set(_available_optimizers())
        missing = [a.name for a in protocol.arms if a.optimizer not in available]
        if missing:
            logger.warning("skipping arms whose optimizer is not installed: %s", ", ".join(missing))
        return [a.name for a in protocol.arms if a.optimizer in available]
    unknown = [n for n in requested if n not in {a.name for a in protocol.arms}]
    if unknown:
        raise SystemExit(f"andi-bench: unknown arm(s) {unknown} for protocol {protocol.name!r}; "
                         f"available: {', '.join(a.name for a in protocol.arms)}")
    return requested


def cmd_run(args: argparse.Namespace) -> int:
    from andi.bench.sweep import run_protocol

    protocol = get_protocol(args.protocol)
    if isinstance(protocol, ReplayProtocol):
        if args.optimizers is not None:
            raise SystemExit("andi-bench: the replay protocol has fixed arms (AdamW, the script's Muon, ANDI); "
                             "drop --optimizers")
        if args.tuning_seeds is not None or args.reporting_seeds is not None:
            raise SystemExit("andi-bench: the replay protocol's seeds are fixed (42, 1337)")
        arms = None
    else:
        changes = {}
        if args.tuning_seeds is not None:
            changes["tuning_seeds"] = args.tuning_seeds
        if args.reporting_seeds is not None:
            changes["reporting_seeds"] = args.reporting_seeds
        try:
            protocol = dataclasses.replace(protocol, **changes) if changes else protocol
        except ValueError as e:
            raise SystemExit(f"andi-bench: {e}") from None
        arms = _fair_arms(protocol, args.optimizers)
    out = args.out or DEFAULT_RESULTS / protocol.name
    sweep = _sweep(out, args)
    t0 = time.perf_counter()
    run_protocol(protocol, sweep, tasks=args.task, size=args.size, arms=arms, steps=args.steps,
                 device=args.device, dtype=args.dtype)
    _summary(protocol.name, sweep, time.perf_counter() - t0, out)
    if not args.no_report:
        _write_report(out)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from andi.bench.report import generate_report

    if not args.dir.is_dir():
        raise SystemExit(f"andi-bench: {args.dir} is not a directory")
    try:
        path = generate_report(args.dir, args.out, figures=not args.no_figures)
    except FileNotFoundError as e:
        raise SystemExit(f"andi-bench: {e}") from None
    print(f"report: {path}")
    return 0


def _available_optimizers() -> list[str]:
    import andi

    lister = getattr(andi, "list_optimizers", None)
    if lister is None:  # the registry itself, should the top-level re-export be missing
        from andi.optim.registry import list_optimizers as lister
    return list(lister())


def cmd_list(args: argparse.Namespace) -> int:
    from andi.bench.tasks import TASKS

    print("tasks:")
    for name, cls in TASKS.items():
        sizes = ", ".join(f"{s}: {spec.steps} steps" for s, spec in cls.sizes.items())
        better = "higher" if cls.higher_is_better else "lower"
        print(f"  {name:<24} metric {cls.primary_metric} ({better} is better); {sizes}")
    print("optimizers:")
    print("  " + ", ".join(_available_optimizers()))
    print("protocols:")
    for name, p in PROTOCOLS.items():
        if isinstance(p, ReplayProtocol):
            desc = (f"the paper's script: {p.steps} steps, batch {p.batch_size}, seeds {list(p.seeds)}, "
                    f"ANDI grid {list(p.andi_grid)} on seed {p.search_seed}, fixed AdamW/script-Muon lrs")
        else:
            desc = (f"{p.description}; arms {', '.join(a.name for a in p.arms)}; "
                    f"tuning seeds {list(p.tuning_seeds)}, reporting seeds {list(p.reporting_seeds)}")
        print(f"  {name:<12} {desc}")
    return 0


def cmd_step(argv: Sequence[str]) -> int:
    from andi.bench.stepbench import cli_main

    return int(cli_main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``andi-bench``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "step":  # forward everything, including --help, to the step benchmark
        return cmd_step(argv[1:])
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="andi-bench: %(message)s")
    handlers = {"quick": cmd_quick, "run": cmd_run, "report": cmd_report, "list": cmd_list}
    return handlers[args.command](args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
