"""The command line's grammar: ``andi-bench``'s subcommands and options (:func:`build_parser`).

What the commands do is in :mod:`andi.bench.cli`; this module only says what they accept, so ``--help`` and the
argument errors (one line, exit status 2) are defined in one place.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import NoReturn

from andi.bench.errors import EXIT_USAGE
from andi.bench.execution.claims import DEFAULT_CLAIM_TIMEOUT_S
from andi.bench.protocols import PROTOCOLS, QUICK, QUICK_SMOKE

__all__ = ["COMPARE_ARMS", "DEFAULT_RESULTS", "EXIT_STATUS", "QUICK_SIZES", "build_parser"]

DEFAULT_RESULTS = Path("andi-bench-results")
#: The arms ``andi-bench compare`` runs without ``--optimizers``: ANDI on its own and on Muon's footing, and the two
#: baselines every user asks about.
COMPARE_ARMS = ("andi", "andi-hybrid", "adamw", "muon")
QUICK_SIZES = {"cpu": QUICK, "smoke": QUICK_SMOKE}
EXIT_STATUS = (
    "exit status: 0 success; 2 the command line is wrong; 3 the machine or its files cannot serve it "
    "(device, output directory, datasets, results); 1 an unexpected error (a bug: the traceback is "
    "shown). Errors are one line on stderr; --debug adds the traceback."
)


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors like every other andi-bench error (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in _csv(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data-root", default=None, help="dataset folder (default: ../shared/data if present, else ~/.cache/andi/data)"
    )
    p.add_argument("--device", default="cpu", help="torch device for every run (default: cpu)")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=("float32", "float64", "bfloat16"),
        help="parameter dtype (default: float32)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads per run (default, without any execution flag: 1 per run for small models, "
        "up to 4 for large ones; with --executor serial: torch's; local: cores / workers; ray: 1). The count "
        "is stored in every record",
    )
    x = p.add_argument_group(
        "execution (at the same --threads per run, every executor gives the same metrics; only timings differ)"
    )
    x.add_argument(
        "--executor",
        choices=("serial", "local", "ray"),
        default=None,
        help="serial: one run at a time here; local: worker processes on this machine "
        "(implied by --workers/--workers-per-gpu); ray: Ray tasks, local or on a cluster (implied by "
        "--ray-address; needs Ray: pip install 'ray>=2.9')",
    )
    x.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local: runs at once (default: one per core, fewer for large models)",
    )
    x.add_argument(
        "--workers-per-gpu",
        type=int,
        default=None,
        metavar="K",
        help="local or ray with --device cuda: K runs share each visible GPU (their timings are marked "
        "'packed' in the report)",
    )
    x.add_argument(
        "--ray-address",
        default=None,
        metavar="ADDR",
        help="ray: the cluster to join ('auto' on a cluster node; default: start Ray here)",
    )
    x.add_argument(
        "--claim-timeout",
        type=float,
        default=DEFAULT_CLAIM_TIMEOUT_S,
        metavar="SECONDS",
        help="a claim without a heartbeat (written by an older version) claimed longer ago is taken over "
        "(default: %(default)g s = 6 h); claims with one are taken over after 4 missed beats (2 min), claims of "
        "a dead process on this host at once",
    )
    p.add_argument("--no-report", action="store_true", help="do not write report.md after the sweep")
    p.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="force progress bars (default: only on a terminal, never with CI=true)",
    )
    p.add_argument("--no-progress", dest="progress", action="store_false")
    _add_debug(p)


def _add_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", help="on an error, print the traceback too")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="andi-bench",
        description="Benchmark ANDI against AdamW, Muon and the family: the paper's replay "
        "and an equal-budget fair protocol, with resumable sweeps and a markdown report.",
        epilog=EXIT_STATUS,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    q = sub.add_parser(
        "quick",
        help="the embedded default: paper tasks at CPU size, AdamW/Muon/ANDI, equal "
        "3-point lr grids, a report with figures (a few minutes on 2 cores)",
    )
    q.add_argument("--out", type=Path, default=None, help=f"results directory (default: {DEFAULT_RESULTS}/quick)")
    q.add_argument(
        "--size",
        choices=sorted(QUICK_SIZES),
        default="cpu",
        help="cpu (default, a few minutes) or smoke (seconds; what CI runs)",
    )
    _add_common(q)

    r = sub.add_parser("run", help="run one protocol (fair, replay, study, width, ...) on some tasks")
    r.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        default="fair",
        help="the declared protocol (`andi-bench list` describes each; default: fair)",
    )
    r.add_argument(
        "--task",
        type=_csv,
        default=None,
        help="comma-separated tasks (default: the protocol's; fair: saddle,cifar,gpt); a task of your own as "
        "path/to/file.py:Name or package.module:Name",
    )
    r.add_argument(
        "--optimizers",
        type=_csv,
        default=None,
        help="comma-separated arms of the protocol, or 'all' (default: the protocol's default arms; fair: "
        "andi,adamw,muon; study, study-saddle-full, width: all theirs); adamw is always added since it sets "
        "the target and the aux lr; fair protocols also take an optimizer of your own as path/to/file.py:NAME",
    )
    r.add_argument(
        "--size",
        choices=("full", "cpu", "smoke"),
        default=None,
        help="task size: full (the paper's; GPU for cifar/gpt), cpu or smoke (default: smoke for "
        "quick-smoke, full for study-saddle-full, else cpu)",
    )
    r.add_argument("--steps", type=int, default=None, help="override the step count of every run")
    r.add_argument("--tuning-seeds", type=_ints, default=None, help="fair: override the tuning seeds")
    r.add_argument("--reporting-seeds", type=_ints, default=None, help="fair: override the reporting seeds")
    r.add_argument("--out", type=Path, default=None, help=f"results directory (default: {DEFAULT_RESULTS}/<protocol>)")
    _add_common(r)

    c = sub.add_parser(
        "compare",
        help="is ANDI better on my model? the fair protocol on one task (yours: path/to/file.py:Name), "
        "then the report and a verdict",
    )
    c.add_argument("task", metavar="TASK", help="a task name, or path/to/file.py:Name, or package.module:Name")
    c.add_argument(
        "--optimizers",
        type=_csv,
        default=None,
        help=f"comma-separated arms of the fair protocol (default: {','.join(COMPARE_ARMS)}); an optimizer of your "
        "own as path/to/file.py:NAME or by its registered name; adamw is always added",
    )
    c.add_argument("--size", choices=("full", "cpu", "smoke"), default="cpu", help="task size (default: cpu)")
    c.add_argument("--steps", type=int, default=None, help="override the step count of every run")
    c.add_argument("--tuning-seeds", type=_ints, default=None, help="override the tuning seeds (default: 0)")
    c.add_argument(
        "--reporting-seeds", type=_ints, default=None, help="override the reporting seeds (default: 1001-1005)"
    )
    c.add_argument(
        "--out", type=Path, default=None, help=f"results directory (default: {DEFAULT_RESULTS}/compare-<task>)"
    )
    _add_common(c)

    rep = sub.add_parser("report", help="write report.md and figures from a results directory or an archive of one")
    rep.add_argument(
        "dir",
        type=Path,
        metavar="DIR|ARCHIVE",
        help="a results directory, or a .tar, .tar.gz or .tar.xz archive of one (extracted to a temporary folder, "
        "after checking that no member points outside it)",
    )
    rep.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report path (default: DIR/report.md, or report.md next to ARCHIVE); figures go in figures/ next to it",
    )
    rep.add_argument("--no-figures", action="store_true", help="markdown only, no PNGs")
    _add_debug(rep)

    summ = sub.add_parser(
        "summary",
        help="the verdict of every declared paper claim, from the published records, into the results page",
    )
    summ.add_argument(
        "--results",
        type=Path,
        default=Path("docs/results"),
        help="the folder of published results, one NAME/records.tar.xz each (default: %(default)s)",
    )
    summ.add_argument(
        "--page",
        type=Path,
        default=None,
        help="the page whose generated block is rewritten (default: RESULTS/index.md); prose around it stays",
    )
    summ.add_argument(
        "--check",
        action="store_true",
        help="write nothing; exit 1 if the page is not what the records and the claims file give",
    )
    _add_debug(summ)

    sub.add_parser("list", help="tasks, optimizers and protocols")
    sub.add_parser(
        "step", help="optimizer-step micro-benchmarks (arguments are forwarded; see `step --help`)", add_help=False
    )
    return parser
