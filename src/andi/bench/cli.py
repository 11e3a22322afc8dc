"""``andi-bench``: run the benchmark protocols and write reports.

Subcommands::

    andi-bench quick  [--out DIR] [--size smoke|cpu] [--data-root DIR] [--device cpu] [--threads N]
    andi-bench run    --protocol fair|replay|study|study-saddle-full|width|quick|quick-smoke
                      [--task gpt,cifar] [--optimizers andi,adamw,muon] [--size full|cpu|smoke] [--device cuda]
                      [--out DIR] ...
    (both)            [--executor serial|local|ray] [--workers N] [--workers-per-gpu K] [--ray-address ADDR]
                      [--claim-timeout SECONDS]
    andi-bench report DIR|ARCHIVE [--out FILE] [--no-figures]   (ARCHIVE: a .tar, .tar.gz or .tar.xz of DIR)
    andi-bench summary [--results DIR] [--page FILE] [--check]   (claim verdicts from the published records)
    andi-bench list
    andi-bench step   ...   (optimizer-step micro-benchmarks, forwarded to andi.bench.stepbench)

Every run is stored as one JSON record in the output directory, keyed by its config hash: re-running the
same command resumes an interrupted sweep without redoing finished runs. Without execution flags the sweep runs
as :mod:`andi.bench.execution.defaults` chooses from the cores and the models (on a CPU with small models: one
worker per core, one thread each). Runs execute one at a time in this process (``--executor serial``), in ``N``
worker processes (``--executor local --workers N``, which ``--workers`` alone implies; on CUDA
``--workers-per-gpu K`` packs ``K`` runs on each visible GPU) or as Ray tasks (``--executor ray
[--ray-address ADDR]``, which ``--ray-address`` alone implies). Several processes, or
machines on a shared filesystem, may point ``--out`` at the same directory: each run is claimed before it
starts (:mod:`andi.bench.execution.claims`; a claim whose holder stopped its heartbeat is stale). Progress bars
appear on an interactive terminal and stay off when ``CI`` is set or stderr is not a TTY. SIGTERM, SIGHUP and Ctrl-C
stop a sweep with one line and exit status 128 + the signal, keeping every finished record.

Before the first run, ``quick`` and ``run`` check the arguments, the device, the output directory and the
datasets (:mod:`andi.bench.preflight`). A mistake is reported as one line on stderr,
``andi-bench: error: <what is wrong>; <how to fix it>`` (``--debug`` adds the traceback), with exit status
2 when the command line is wrong in itself and 3 when the machine or its files cannot serve it
(:mod:`andi.bench.errors`); 1 means an unexpected error, a bug, and keeps Python's traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import logging
import os
import signal
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from andi.bench.arguments import COMPARE_ARMS, DEFAULT_RESULTS, QUICK_SIZES, build_parser
from andi.bench.errors import (
    EXIT_SETUP,
    Interrupted,
    SetupError,
    UsageError,
    UserError,
    one_line,
    stop_signals_raise,
)
from andi.bench.preflight import (
    check_data,
    check_device,
    check_execution,
    check_free_space,
    check_names,
    check_optimizer,
    check_steps,
    check_tasks,
    check_writable_dir,
)
from andi.bench.protocols import (
    PROTOCOLS,
    FairProtocol,
    ReplayProtocol,
    get_protocol,
)
from andi.bench.tasks.data import ChecksumError, DataMissingError
from andi.bench.util import one_line_warnings

if TYPE_CHECKING:
    from andi.bench.execution.sweep import Sweep

__all__ = ["build_parser", "main"]

logger = logging.getLogger("andi.bench")

#: Printed after ``quick``: where the evidence is, since ``quick`` itself is a demonstration.
FULL_STUDY_NOTE = (
    "quick is a demonstration (3-point grid, 2 seeds), not evidence. The full study (every fair arm, 8-point "
    "grid with edge extension, 5 reporting seeds, Holm-corrected two-sided tests) and its verdict on each of the "
    "paper's claims: docs/results/index.md in the source tree, or the Results page of the documentation. "
    "Reproduce it with `andi-bench run --protocol study --workers 2 --threads 1`."
)
#: The size ``run --protocol NAME`` uses without ``--size``: a smoke protocol runs at smoke size, a protocol that
#: declares a ``default_size`` (``study-saddle-full``: ``full``) at that size, every other at ``cpu``.
DEFAULT_SIZES = {
    **{p.name: size for size, p in QUICK_SIZES.items()},
    **{p.name: p.default_size for p in PROTOCOLS.values() if getattr(p, "default_size", None)},
}


def _write_report(out: Path) -> Path:
    from andi.bench.report import generate_report

    path = generate_report(out)
    print(f"report: {path}")
    return path


def _check_threads(args: argparse.Namespace) -> None:
    if args.threads is not None and args.threads < 1:
        raise UsageError(f"--threads {args.threads}: must be >= 1; use --threads 1 on a busy CPU")


def _check_machine(out: Path, tasks: Sequence[str], args: argparse.Namespace) -> None:
    """What the command line cannot tell: the device, the output directory and the data, before any run."""
    check_device(args.device)
    check_writable_dir(out, "--out")
    check_data(tasks, args.data_root)


def _declared_runs(protocol: FairProtocol | ReplayProtocol, tasks: Sequence[str], arms: Sequence[str] | None) -> int:
    from andi.bench.protocols.plans import planned_runs

    return sum(planned_runs(protocol, arms).values()) * len(tasks)


def _check_space(
    out: Path,
    protocol: FairProtocol | ReplayProtocol,
    tasks: Sequence[str],
    size: str,
    arms: Sequence[str] | None,
    steps: int | None,
) -> None:
    """Enough free space for the sweep's records (the declared runs and half as many again for edge extensions)."""
    from andi.bench.tasks import task_class

    runs = _declared_runs(protocol, tasks, arms) * 3 // 2
    longest = max(steps or task_class(t).sizes[size].steps for t in tasks)
    check_free_space(out, runs, longest)


def _sweep(out: Path, args: argparse.Namespace, executor: str) -> Sweep:
    from andi.bench.execution.executors import make_executor
    from andi.bench.execution.sweep import Sweep

    if executor == "serial" and args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    runner = make_executor(
        executor,
        workers=args.workers,
        threads=args.threads,
        workers_per_gpu=args.workers_per_gpu,
        ray_address=args.ray_address,
        device=args.device,
    )
    return Sweep(
        out, data_root=args.data_root, progress=args.progress, executor=runner, claim_timeout=args.claim_timeout
    )


def _default_execution(args: argparse.Namespace, runs: int, tasks: Sequence[str], size: str) -> str | None:
    """Without any execution flag: the executor, workers and threads that suit this machine and these models
    (set on ``args``; returns the executor's name, or ``None`` when the command line chose)."""
    explicit = (args.executor, args.workers, args.threads, args.workers_per_gpu, args.ray_address)
    if any(v is not None for v in explicit):
        return None
    import torch

    from andi.bench.execution.defaults import choose_execution
    from andi.bench.execution.executors import available_cores, visible_gpus
    from andi.bench.tasks import task_class

    def params(task: str) -> int:
        with torch.device("meta"):
            model = task_class(task)(size, args.data_root).build_model(0)
        return sum(p.numel() for p in model.parameters())

    gpus = len(visible_gpus()) if args.device.startswith("cuda") else 0
    largest = max((params(t) for t in tasks), default=0)
    chosen = choose_execution(cores=available_cores(), gpus=gpus, device=args.device, runs=runs, largest_params=largest)
    args.executor, args.workers, args.threads = chosen.executor, chosen.workers, chosen.threads
    logger.info("%s; --workers/--threads choose otherwise", chosen.describe())
    return chosen.executor


def _check_execution(args: argparse.Namespace) -> str:
    return check_execution(
        args.executor,
        workers=args.workers,
        workers_per_gpu=args.workers_per_gpu,
        ray_address=args.ray_address,
        device=args.device,
        claim_timeout=args.claim_timeout,
    )


def _summary(what: str, sweep: Sweep, elapsed: float, out: Path) -> None:
    corrupt = f", {len(sweep.store.corrupt)} corrupt record(s) recomputed" if sweep.store.corrupt else ""
    failed = f", {len(sweep.failed)} FAILED (see the report)" if sweep.failed else ""
    print(
        f"{what}: {sweep.computed} runs computed, {sweep.reused} reused{corrupt}{failed} in {elapsed:.1f} s "
        f"({sweep.executor.describe()}) -> {out}"
    )


def cmd_quick(args: argparse.Namespace) -> int:
    from andi.bench.execution.sweep import run_protocol

    protocol = QUICK_SIZES[args.size]
    out = args.results_dir = args.out or DEFAULT_RESULTS / "quick"
    _check_threads(args)
    executor = _check_execution(args)
    _check_machine(out, protocol.tasks, args)
    executor = (
        _default_execution(args, _declared_runs(protocol, protocol.tasks, None), protocol.tasks, args.size) or executor
    )
    _check_space(out, protocol, protocol.tasks, args.size, None, None)
    t0 = time.perf_counter()
    with _sweep(out, args, executor) as sweep:
        run_protocol(protocol, sweep, size=args.size, device=args.device, dtype=args.dtype)
        _summary(f"quick ({args.size})", sweep, time.perf_counter() - t0, out)
    if not args.no_report:
        _write_report(out)
    print(FULL_STUDY_NOTE)
    return 0


def _fair_arms(protocol: FairProtocol, requested: list[str] | None) -> tuple[FairProtocol, list[str]]:
    """The arms to run and the protocol that declares them: the protocol's own by name (``all``: every installed
    one), and a user's optimizer (:mod:`andi.optim.user`: ``path/to/file.py:NAME``, ``module:NAME``, a registered
    or entry-point name) added as an arm centred on its ``default_lr``."""
    from andi.bench.protocols.arms import arm_for_optimizer
    from andi.optim.user import BUILTIN_OPTIMIZERS
    from andi.plugins import is_spec

    if requested == ["all"]:
        available = set(_available_optimizers())
        missing = [a.name for a in protocol.arms if a.optimizer not in available]
        if missing:
            logger.warning("skipping arms whose optimizer is not installed: %s", ", ".join(missing))
        return protocol, [a.name for a in protocol.arms if a.optimizer in available]
    # Without --optimizers: the protocol's default arms (fair: the core arms); the others by name or with 'all'.
    names = [a.name for a in protocol.arms]
    users = {n for n in _available_optimizers() if n not in BUILTIN_OPTIMIZERS}
    outside = [r for r in requested or () if r not in names and (is_spec(r) or r.lower() in users)]
    added = []
    for r in dict.fromkeys(outside):
        try:
            arm = arm_for_optimizer(r)
            check_optimizer(arm.optimizer)
        except (ValueError, TypeError, ImportError, RuntimeError) as e:
            raise UsageError(f"--optimizers: {e}") from None
        if arm.name in names or arm.name in (a.name for a in added):
            raise UsageError(f"--optimizers {r}: its arm name {arm.name!r} is taken; register it under another name")
        added.append(arm)
    if added:
        protocol = dataclasses.replace(protocol, arms=(*protocol.arms, *added))
    chosen = [next((a.name for a in added if a.optimizer == r), r) for r in requested] if requested else requested
    arms = check_names(
        "--optimizers", "arm", chosen, [a.name for a in protocol.arms], default=list(protocol.run_arms())
    )
    return protocol, arms


def _protocol_for_run(args: argparse.Namespace) -> FairProtocol | ReplayProtocol:
    """``--protocol`` with the seeds the command line asks for (the replay's are fixed, as are its arms)."""
    protocol = get_protocol(args.protocol)
    if isinstance(protocol, ReplayProtocol):
        if args.optimizers is not None:
            raise UsageError(
                "--optimizers: the replay protocol has fixed arms (AdamW, the script's Muon, ANDI); "
                "drop --optimizers or use --protocol fair"
            )
        if args.tuning_seeds is not None or args.reporting_seeds is not None:
            raise UsageError(
                f"--tuning-seeds/--reporting-seeds: the replay protocol's seeds are fixed {protocol.seeds}; "
                "drop them or use --protocol fair"
            )
        return protocol
    return _with_seeds(protocol, args.tuning_seeds, args.reporting_seeds)


def _with_seeds(protocol: FairProtocol, tuning: list[int] | None, reporting: list[int] | None) -> FairProtocol:
    changes = {}
    if tuning is not None:
        changes["tuning_seeds"] = tuning
    if reporting is not None:
        changes["reporting_seeds"] = reporting
    try:
        protocol = dataclasses.replace(protocol, **changes) if changes else protocol
    except ValueError as e:
        raise UsageError(f"--tuning-seeds/--reporting-seeds: {e}") from None
    return protocol


def _run_sweep(
    args: argparse.Namespace,
    protocol: FairProtocol | ReplayProtocol,
    tasks: list[str],
    size: str,
    arms: list[str] | None,
    out: Path,
) -> list[dict]:
    """The checks every sweep command makes before its first run, the sweep itself and its report: ``run`` and
    ``compare`` both come here, so a comparison on a user's task is the fair protocol's ordinary sweep."""
    from andi.bench.execution.sweep import run_protocol

    check_steps(protocol, args.steps)
    _check_threads(args)
    executor = _check_execution(args)
    args.results_dir = out
    _check_machine(out, tasks, args)
    executor = _default_execution(args, _declared_runs(protocol, tasks, arms), tasks, size) or executor
    _check_space(out, protocol, tasks, size, arms, args.steps)
    t0 = time.perf_counter()
    with _sweep(out, args, executor) as sweep:
        manifests = run_protocol(
            protocol,
            sweep,
            tasks=tasks,
            size=size,
            arms=arms,
            steps=args.steps,
            device=args.device,
            dtype=args.dtype,
        )
        _summary(protocol.name, sweep, time.perf_counter() - t0, out)
    if not args.no_report:
        _write_report(out)
    return manifests


def cmd_run(args: argparse.Namespace) -> int:
    protocol = _protocol_for_run(args)
    arms: list[str] | None = None
    if isinstance(protocol, FairProtocol):
        protocol, arms = _fair_arms(protocol, args.optimizers)
    size = args.size or DEFAULT_SIZES.get(protocol.name, "cpu")
    tasks = check_tasks(args.task, protocol.tasks, size, args.data_root)
    _run_sweep(args, protocol, tasks, size, arms, args.out or DEFAULT_RESULTS / protocol.name)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    """``andi-bench compare TASK``: the fair protocol on one task (ANDI, ANDI-hybrid, AdamW and Muon unless
    ``--optimizers`` says otherwise), its report, and a verdict paragraph on the terminal."""
    from andi.bench.execution.files import file_safe
    from andi.bench.execution.store import ResultStore
    from andi.bench.protocols import FAIR
    from andi.bench.report.verdict import compare_verdict

    protocol = _with_seeds(
        dataclasses.replace(FAIR, tasks=(args.task,), default_arms=COMPARE_ARMS),
        args.tuning_seeds,
        args.reporting_seeds,
    )
    protocol, arms = _fair_arms(protocol, args.optimizers)
    tasks = check_tasks([args.task], protocol.tasks, args.size, args.data_root)
    out = args.out or DEFAULT_RESULTS / f"compare-{file_safe(args.task)}"
    (manifest,) = _run_sweep(args, protocol, tasks, args.size, arms, out)
    report = None if args.no_report else str(out / "report.md")
    print()
    print(compare_verdict(manifest, ResultStore(out), report=report))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from andi.bench.report import generate_report
    from andi.bench.report.archive import is_archive, report_from_archive

    source = args.dir
    archive = source.is_file() and is_archive(source)
    if not archive and not source.is_dir():
        raise SetupError(
            f"report {source}: not a directory or a .tar, .tar.gz or .tar.xz archive; give the --out directory of "
            "a `quick` or `run`, or an archive of one"
        )
    out = args.out or (source.parent if archive else source) / "report.md"
    if out.is_dir():
        raise SetupError(f"--out {out}: is a directory; give a file name such as {out / 'report.md'}")
    check_writable_dir(out.parent, "--out")
    figures = out.parent / "figures"
    if not args.no_figures and figures.exists() and not figures.is_dir():
        raise SetupError(f"{figures} is a file, so the figures cannot go there; move it or use --no-figures")
    try:
        if archive:
            path = report_from_archive(source, out, figures=not args.no_figures)
        else:
            path = generate_report(source, out, figures=not args.no_figures)
    except FileNotFoundError as e:
        raise SetupError(str(e)) from None
    print(f"report: {path}")
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    from andi.bench.execution.files import atomic_write_text
    from andi.bench.report.summary import claim_results, summary_block, update_page

    if not args.results.is_dir():
        raise SetupError(f"--results {args.results}: not a directory of published results (NAME/records.tar.xz)")
    page = args.page or args.results / "index.md"
    old, new = update_page(page, summary_block(claim_results(args.results)))
    if args.check:
        if old != new:
            print(f"andi-bench: {page} is not what the records give; run `andi-bench summary` and commit it")
            return 1
        print(f"summary: {page} is up to date")
        return 0
    check_writable_dir(page.parent, "--page")
    atomic_write_text(page, new)
    print(f"summary: {page}" + ("" if old != new else " (unchanged)"))
    return 0


def _available_optimizers() -> list[str]:
    import andi

    lister = getattr(andi, "list_optimizers", None)
    if lister is None:  # the registry itself, should the top-level re-export be missing
        from andi.optim.registry import list_optimizers as lister
    return list(lister())


def cmd_list(args: argparse.Namespace) -> int:
    from andi.bench.tasks import TASKS, external
    from andi.optim.registry import optimizer_spec
    from andi.optim.user import BUILTIN_OPTIMIZERS, load_entry_points

    def task_line(name: str, cls: type, origin: str = "") -> str:
        sizes = ", ".join(f"{s}: {spec.steps} steps" for s, spec in cls.sizes.items())
        better = "higher" if cls.higher_is_better else "lower"
        return f"  {name:<24} metric {cls.primary_metric} ({better} is better); {sizes}{origin}"

    print("tasks:")
    for name, cls in TASKS.items():
        print(task_line(name, cls))
    for name, point in external.entry_point_tasks().items():
        where = f"; from {point.value} (entry point of {point.dist.name if point.dist else '?'})"
        try:
            print(task_line(name, external.load(name), where))
        except ValueError as e:
            print(f"  {name:<24} cannot be loaded: {e}")
    print("  (a task of your own: --task path/to/file.py:Name or package.module:Name)")
    print("optimizers:")
    optimizers = _available_optimizers()
    print("  " + ", ".join(n for n in optimizers if n in BUILTIN_OPTIMIZERS))
    for name in (n for n in optimizers if n not in BUILTIN_OPTIMIZERS):
        spec = optimizer_spec(name)
        print(f"  {name:<24} {spec.label}, default lr {spec.default_lr:g}, from {spec.origin or spec.source}")
    for name, why in load_entry_points().items():
        print(f"  {name:<24} cannot be loaded: {why}")
    print("  (an optimizer of your own: --optimizers path/to/file.py:NAME, or andi.register_optimizer)")
    print("protocols:")
    for name, p in PROTOCOLS.items():
        if isinstance(p, ReplayProtocol):
            desc = (
                f"the paper's script: {p.steps} steps, batch {p.batch_size}, seeds {list(p.seeds)}, "
                f"ANDI grid {list(p.andi_grid)} on seed {p.search_seed}, fixed AdamW/script-Muon lrs"
            )
        else:
            desc = (
                f"{p.description}; arms {', '.join(a.name for a in p.arms)}; "
                f"tuning seeds {list(p.tuning_seeds)}, reporting seeds {list(p.reporting_seeds)}"
            )
        print(f"  {name:<18} {desc}")
    return 0


def cmd_step(argv: Sequence[str]) -> int:
    from andi.bench.stepbench import cli_main

    return int(cli_main(list(argv)) or 0)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``andi-bench``; returns the process exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    _tolerate_narrow_terminals()
    if argv and argv[0] == "step":  # forward everything, including --help, to the step benchmark
        return cmd_step(argv[1:])
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="andi-bench: %(message)s")
    handlers = {
        "quick": cmd_quick,
        "run": cmd_run,
        "compare": cmd_compare,
        "report": cmd_report,
        "summary": cmd_summary,
        "list": cmd_list,
    }
    try:
        with stop_signals_raise(), one_line_warnings():
            return handlers[args.command](args)
    except UserError as e:
        return _fail(e, e.exit_code, args)
    except (DataMissingError, ChecksumError) as e:  # the data changed after the check, or a path it misses
        return _fail(e, EXIT_SETUP, args)
    except BrokenPipeError:  # `andi-bench list | head`: the reader has gone, which is no error of ours
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 128 + signal.SIGPIPE
    except OSError as e:
        if e.errno not in _ENVIRONMENT_ERRNOS:
            raise
        return _fail(SetupError(_environment_message(e, args)), EXIT_SETUP, args)
    except KeyboardInterrupt:
        return _stopped(Interrupted(signal.SIGINT), args)
    except Interrupted as e:
        return _stopped(e, args)


#: Errors of the machine, not of andi-bench: a full or vanished disk, a read-only or forbidden place, a name too long.
_ENVIRONMENT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in ("ENOSPC", "EDQUOT", "EROFS", "EACCES", "EPERM", "ENAMETOOLONG", "ENOENT", "EIO", "ESTALE")
    if hasattr(errno, name)
)


def _environment_message(error: OSError, args: argparse.Namespace) -> str:
    what = f"cannot write {error.filename}" if error.filename else "a file operation failed"
    kept = (
        "; finished records are kept: run the same command again once it is fixed"
        if getattr(args, "results_dir", None) is not None
        else ""
    )
    fix = {errno.ENOSPC: "free some space", errno.ENOENT: "the folder vanished: restore it"}.get(
        error.errno or 0, "make the place writable or choose another --out"
    )
    return f"{what}: {error.strerror or error}; {fix}{kept}"


def _tolerate_narrow_terminals() -> None:
    """Characters the terminal's encoding lacks (× and — on an ASCII-only stdout) print escaped, never raise."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")


def _stopped(stop: Interrupted, args: argparse.Namespace) -> int:
    """One line for a stop signal (workers stopped, claims released by then); exit status 128 + the signal."""
    out = getattr(args, "results_dir", None)
    where = (
        f"finished runs are kept in {out}; run the same command again to resume (only missing runs are computed)"
        if out is not None
        else "nothing was left half-written"
    )
    print(f"andi-bench: stopped by {signal.Signals(stop.signum).name}; {where}", file=sys.stderr)
    return stop.exit_code


def _fail(error: Exception, code: int, args: argparse.Namespace) -> int:
    """Report a user error as one line on stderr (after its traceback with ``--debug``); return ``code``."""
    if getattr(args, "debug", False):
        traceback.print_exception(type(error), error, error.__traceback__)
    print(f"andi-bench: error: {one_line(str(error))}", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
