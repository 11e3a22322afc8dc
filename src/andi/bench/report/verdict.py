"""The verdict paragraph ``andi-bench compare`` prints: is ANDI better on this task?

Each ANDI arm that ran (``andi``, ``andi-hybrid``; without either, the first arm asked for) against every other arm,
two-sided paired t over the reporting seeds both have, Holm–Bonferroni over exactly these comparisons — the same
tests as the report's head-to-head tables (:mod:`andi.bench.report.analysis`). The paragraph names the winner by
mean, each comparison's difference with its 95 % CI and Holm p, diverged seeds, and chosen lrs at the edge of the
explored grid (where a wider grid could change the answer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from andi.bench.execution.store import ResultStore
from andi.bench.report import stats
from andi.bench.report.analysis import ALPHA, Comparison, TaskResult, analyze_fair, compare_arms
from andi.bench.report.tables import fmt, fmt_signed
from andi.bench.util import plural

__all__ = ["ANDI_ARMS", "compare_verdict", "verdict_comparisons"]

#: The arms a comparison asks about, when they ran.
ANDI_ARMS = ("andi", "andi-hybrid")


def verdict_comparisons(t: TaskResult, alpha: float = ALPHA) -> list[Comparison]:
    """Each asked-about arm (:data:`ANDI_ARMS` that ran, else the first arm) against every other arm of ``t`` that
    has two counted results, Holm-corrected over exactly these rows (``family_size`` is their number)."""
    names = [a.arm for a in t.arms]
    asked = [n for n in ANDI_ARMS if n in names] or names[:1]
    rows = [c for a in asked for b in names if b not in asked and (c := compare_arms(t, a, b)) is not None]
    for c, (p, reject) in zip(rows, stats.holm_bonferroni([c.pvalue for c in rows], alpha)):
        c.holm_p, c.reject, c.family_size = p, reject, len(rows)
    return rows


def _mean_std(t: TaskResult, arm: str) -> str:
    a = t.arm(arm)
    return f"{fmt(a.summary.mean)} ± {fmt(a.summary.std)}"


def _task_words(task: str) -> str:
    """A user's task by its own name and where it came from; the package's by name."""
    from andi.bench.tasks import find_task_class

    cls = find_task_class(task)
    name = getattr(cls, "name", None)
    return f"{name} (`{task}`)" if isinstance(name, str) and name != task else task


def _row_words(c: Comparison) -> str:
    low, high = c.interval()
    where = f"{fmt_signed(c.mean_diff)} [{fmt_signed(low)}, {fmt_signed(high)}], Holm p {fmt(c.holm_p, 2)}"
    if c.direction == "none":
        return f"no significant difference from {c.other_label} ({where})"
    return f"{c.direction} than {c.other_label} ({where})"


def _conclusion(label: str, rows: Sequence[Comparison]) -> str:
    if not rows:
        return f"no test was possible for {label} (fewer than two counted runs)"
    better = [c.other_label for c in rows if c.direction == "better"]
    worse = [c.other_label for c in rows if c.direction == "worse"]
    if len(better) == len(rows):
        return f"{label} is significantly better than every other arm"
    if worse:
        return f"{label} is significantly worse than {', '.join(worse)}"
    if better:
        return f"{label} beats {', '.join(better)} and is not distinguishable from the rest"
    return f"{label} is not distinguishable from the other arms at this budget"


def _warnings(t: TaskResult) -> list[str]:
    notes = []
    for a in t.arms:
        bad = a.n_failed + len(a.errors)
        if bad:
            how = "counted at the task's penalty" if a.penalty is not None else "left out of its mean and tests"
            notes.append(f"{a.label}: {bad}/{a.expected or len(a.seeds)} reporting runs diverged or failed ({how})")
        if a.at_edge:
            notes.append(f"{a.label}'s chosen lr {fmt(a.chosen_lr, 3)} is at the edge of its grid")
    return notes


def compare_verdict(
    manifest: Mapping[str, Any], store: ResultStore, *, report: str | None = None, alpha: float = ALPHA
) -> str:
    """The verdict paragraph of one fair-protocol task (``manifest`` as the sweep wrote it)."""
    t = analyze_fair(manifest, store)
    better = "higher" if t.higher_is_better else "lower"
    usable = [a for a in t.arms if a.summary.n > 0 and math.isfinite(a.summary.mean)]
    if not usable:
        return f"Verdict on {_task_words(t.task)}: no arm has a finished reporting run; see the report."
    ranked = sorted(usable, key=lambda a: a.summary.mean, reverse=t.higher_is_better)
    best = ranked[0]
    seeds = manifest.get("spec", {}).get("reporting_seeds") or []
    lines = [
        f"Verdict on {_task_words(t.task)} ({manifest.get('size', '?')} size; test {t.metric}, {better} is better; "
        f"{plural(len(seeds), 'reporting seed')} per arm, each arm at its own tuned lr):",
        "best mean: "
        + "; ".join(f"{a.label} {_mean_std(t, a.arm)}" + (" (best)" if a is best else "") for a in ranked)
        + ".",
    ]
    rows = verdict_comparisons(t, alpha)
    for asked in dict.fromkeys(c.arm for c in rows):
        mine = [c for c in rows if c.arm == asked]
        label = t.arm(asked).label
        lines.append(f"{label}: " + "; ".join(_row_words(c) for c in mine) + ".")
        lines.append(
            f"So {_conclusion(label, mine)} (two-sided paired t, Holm over {len(rows)} comparisons, α {alpha})."
        )
    if not rows:
        lines.append("No comparison could be tested: an arm needs at least two counted reporting runs.")
    notes = _warnings(t)
    if notes:
        lines.append("Note: " + "; ".join(notes) + ".")
    if report:
        lines.append(f"Tables, curves and every run: {report}")
    return "\n".join(lines)
