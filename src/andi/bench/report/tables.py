"""The report's text: number formatting, the per-task tables, the head-to-head and width tables, the verdict lines.

Split from :mod:`andi.bench.report`, which analyses the records and assembles the sections; everything here
only formats what is already computed there (:class:`~andi.bench.report.TaskResult`,
:class:`~andi.bench.report.Comparison`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from andi.bench.report import stats
from andi.bench.report.analysis import packed_runs
from andi.bench.util import plural

if TYPE_CHECKING:
    from andi.bench.report.analysis import ArmResult, Comparison, TaskResult

__all__ = [
    "comparison_lines",
    "env_lines",
    "fair_table",
    "fmt",
    "fmt_bytes",
    "fmt_mean_std",
    "fmt_signed",
    "head_to_head_lines",
    "marked_lr",
    "packed_runs",
    "verdict_summary_lines",
    "width_table_lines",
]


def fmt(x: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits; ``—`` for missing, ``miss`` for ``inf``."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    if math.isinf(x):
        return "miss" if x > 0 else "-inf"
    return f"{x:.{digits}g}"


def fmt_signed(x: float | None, digits: int = 4) -> str:
    """A difference with its sign (``+0.0039``, ``−0.0104``, ``0``) to ``digits`` decimals; ``—`` for missing."""
    if x is None or not math.isfinite(x):
        return "—"
    text = f"{abs(x):.{digits}f}"
    if float(text) == 0:
        return f"{0:.{digits}f}"
    return ("+" if x > 0 else "−") + text


def fmt_stat(x: float | None, digits: int = 3) -> str:
    """A test statistic: like :func:`fmt`, but an infinite one (zero variance) reads ``+∞`` or ``−∞``, not ``miss``."""
    if x is not None and math.isinf(x):
        return "+∞" if x > 0 else "−∞"
    return fmt(x, digits)


def fmt_bytes(n: float | None) -> str:
    if n is None or (isinstance(n, float) and not math.isfinite(n)):
        return "—"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale * 1000 / 1024:  # 1020 MiB reads "0.996 GiB", not "1.02e+03 MiB"
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} B"


def fmt_mean_std(s: stats.Summary) -> str:
    if s.n == 0:
        return "—"
    return fmt(s.mean) if s.n == 1 else f"{fmt(s.mean)} ± {fmt(s.std)}"


def env_lines(results: Sequence[TaskResult]) -> list[str]:
    rec = next((r for t in results for a in t.arms for r in a.records), None)
    if rec is None:
        return []
    v, d = rec.get("versions", {}), rec.get("device", {})
    return [
        f"Environment of the first record: andi {v.get('andi', '?')}, torch {v.get('torch', '?')}, "
        f"python {v.get('python', '?')}, numpy {v.get('numpy', '?')}; device {d.get('type', '?')} "
        f"({d.get('name', '?')}), {plural(d.get('threads', '?'), 'thread')}.",
        "",
        execution_line(results),
    ]


def execution_line(results: Sequence[TaskResult]) -> str:
    """How the reported runs were executed, which is what their timings depend on (their metrics do not)."""
    ways: dict[str, int] = {}
    for r in (r for t in results for a in t.arms for r in a.records):
        ex = r.get("execution")
        if not isinstance(ex, dict):
            way = "not recorded (before executors)"
        else:
            way = (
                f"{ex.get('executor', '?')} executor, {plural(ex.get('workers', '?'), 'run')} at once, "
                f"{plural(ex.get('threads', '?'), 'thread')} per run"
            )
            way += f", {ex['packed']} per GPU (packed)" if packed_runs(r) > 1 else ""
        ways[way] = ways.get(way, 0) + 1
    listed = "; ".join(f"{way} ({n} run{'s' if n != 1 else ''})" for way, n in ways.items())
    return (
        f"Timings were taken by: {listed}. Metrics do not depend on the executor; timings of runs sharing a "
        "machine or a GPU do."
    )


def _edge_mark(a: ArmResult) -> str:
    return " (edge-capped)" if a.edge_capped else " (at edge)" if a.at_edge else ""


def marked_lr(a: ArmResult) -> str:
    """The chosen lr, marked ``(edge-capped)`` when still at the grid's edge after the last extension round, else
    ``(at edge)`` when at an edge of the explored lrs."""
    return fmt(a.chosen_lr) + _edge_mark(a)


def _edge_capped_note(t: TaskResult) -> list[str]:
    """The sentence under the table naming the arms whose chosen lr is edge-capped (nothing when none is)."""
    capped = [a.label for a in t.arms if a.edge_capped]
    if not capped:
        return []
    rounds = (t.manifest.get("spec") or {}).get("edge_extension_rounds")
    after = f" ({rounds})" if isinstance(rounds, int) and not isinstance(rounds, bool) else ""
    one = len(capped) == 1
    return [
        "",
        f"(edge-capped) {', '.join(capped)}: the chosen lr of {'this arm' if one else 'these arms'} is still at "
        f"the edge of the explored lr grid after the maximum number of edge-extension rounds{after}, so "
        f"{'its' if one else 'their'} optimum may lie beyond it.",
    ]


def _penalty_note(t: TaskResult) -> list[str]:
    penalty = next((a.penalty for a in t.arms if a.penalty is not None), None)
    if penalty is None:
        return []
    return [
        "",
        f"A diverged or failed reporting run stays in n, the mean, the std and the tests at the declared penalty "
        f"{fmt(penalty)} (the {t.metric} of an untrained model or of chance; `andi/bench/paper_claims.json`).",
    ]


def fair_table(t: TaskResult) -> list[str]:
    hib = "higher" if t.higher_is_better else "lower"
    packed = max((a.packed for a in t.arms), default=1)
    mark = " †" if packed > 1 else ""
    lines = [
        f"| arm | chosen lr | trials | final test {t.metric} (mean ± std) | n | steps to target | "
        f"time to target (s{mark}) | speedup{mark} | opt step (ms{mark}) | state | peak mem |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in t.arms:
        lr = fmt(a.chosen_lr) + (" (edge-ext.)" if a.edge_extended else "") + _edge_mark(a)
        if a.penalty is None:
            n = f"{len(a.finals) - a.n_failed}/{a.expected}" + (f" ({a.n_failed} diverged)" if a.n_failed else "")
        else:  # diverged and failed runs are counted (at the penalty): n is every run that finished either way
            counted = len(a.scored())
            n = f"{counted}/{a.expected}"
            n += f", {a.n_failed}/{counted} diverged" if counted else ""
            n += f", {len(a.errors)} failed" if a.errors else ""
        n += f" ({len(a.errors)} failed)" if a.errors and a.penalty is None else ""
        n += f" ({a.n_missing} missing)" if a.n_missing else ""
        final = fmt_mean_std(a.summary) if a.records else f"missing (0 of {a.expected} seeds)"
        peak = fmt_bytes(a.peak_bytes) + (" (RSS)" if a.peak_kind == "rss" and a.peak_bytes else "")
        lines.append(
            f"| {a.label} | {lr} | {a.trials} | {final} | {n} | {fmt(a.median_steps)} | "
            f"{fmt(a.median_time)} | {'miss' if a.speedup == 0 else fmt(a.speedup, 3)} | "
            f"{fmt(a.step_time_s * 1e3, 3)} | "
            f"{fmt_bytes(a.state_bytes)} | {peak} |"
        )
    target = "—" if t.target is None else fmt(t.target)
    lines += [
        "",
        f"Metric: test {t.metric} at the end of the schedule ({hib} is better). Target = median final "
        f"{t.metric} of tuned {t.manifest.get('reference_arm', 'adamw')} over reporting seeds (with an "
        f"even number of seeds, the worse middle value) = {target}. Steps/time to target: by when half "
        "of the seeds reached it (the median for an odd number of seeds; `miss` = not reached); "
        "speedup = AdamW's time to target / the arm's.",
        *_penalty_note(t),
        *_edge_capped_note(t),
    ]
    if packed > 1:
        lines += [
            "",
            f"† Timed with up to {packed} runs packed on one GPU (`--workers-per-gpu`): these wall-clock "
            "numbers are not comparable with timings of runs that had a device to themselves.",
        ]
    return lines


def _diff_interval(c: Any) -> str:
    """95 % CI of the tested mean difference (:meth:`~andi.bench.report.analysis.Comparison.interval`)."""
    low, high = c.interval()
    return "—" if math.isnan(low) else f"[{fmt(low)}, {fmt(high)}]"


def comparison_lines(t: TaskResult, alpha: float, name: str = "test") -> list[str]:
    """The table of every arm against the best other arm on task ``t``, the rule, and ANDI's summary line."""
    if t.deterministic:
        return [
            f"Tests n/a: `{t.task}` is deterministic (every seed gives the same run), so its seeds are not "
            "independent samples; compare the values in the table."
        ]
    if not t.comparisons:
        return ["No comparison possible (fewer than 2 finite results per arm)."]
    lines = [
        f"| arm | best other arm | mean diff ({name}) | 95 % CI | test | two-sided p | Holm p | "
        "Welch t (df) | Welch two-sided p | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in t.comparisons:
        w = c.welch
        cells = [
            t.arm(c.arm).label,
            c.other_label,
            fmt(c.mean_diff),
            _diff_interval(c),
            c.test_name,
            fmt(c.pvalue, 3),
            fmt(c.holm_p, 3),
            f"{fmt_stat(w.statistic)} ({fmt(w.df, 3)})",
            fmt(w.pvalue, 3),
            c.verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    better = "higher" if t.higher_is_better else "lower"
    lines += [
        "",
        "Two-sided tests of each arm against the best other arm: paired t over the seeds both have when at "
        f"least two pair up, else Welch. Holm–Bonferroni over the {t.comparisons[0].family_size} distinct "
        f'comparison(s) of this protocol run, α = {alpha}; a significant difference reads "better than" or '
        f'"worse than" from the sign of the mean difference (arm − other; {better} is better).',
    ]
    andi = next((c for c in t.comparisons if t.arm(c.arm).optimizer.startswith("andi")), None)
    if andi is not None:
        w = andi.welch
        lines += [
            "",
            f"**ANDI vs the best other arm ({andi.other_label})**: mean difference {fmt(andi.mean_diff)}; "
            f"Welch t = {fmt_stat(w.statistic)}, df = {fmt(w.df, 3)}, two-sided p = {fmt(w.pvalue, 3)}; paired "
            f"two-sided p = {fmt(andi.paired.pvalue if andi.paired else None, 3)}; Holm-adjusted p "
            f"({andi.test_name}) = {fmt(andi.holm_p, 3)} → **{andi.verdict}** (α = {alpha}).",
        ]
    return lines


def verdict_summary_lines(group: Sequence[TaskResult], alpha: float) -> list[str]:
    """One line per task with every arm's verdict against its best other arm (the tables' last column)."""
    tasks = [t for t in group if t.comparisons]
    if not tasks:
        return []
    family = tasks[0].comparisons[0].family_size
    lines = [f"### Verdicts (two-sided, Holm over {family} comparison(s), α = {alpha})", ""]
    for t in tasks:
        verdicts = "; ".join(
            f"{t.arm(c.arm).label}: {c.verdict}" + (f" from {c.other_label}" if c.direction == "none" else "")
            for c in t.comparisons
        )
        lines.append(f"- **{t.task}** (test {t.metric}): {verdicts}.")
    return [*lines, ""]


def head_to_head_lines(
    group: Sequence[TaskResult],
    rows: Sequence[Comparison],
    pairs: Sequence[tuple[TaskResult, ArmResult, ArmResult]],
    alpha: float,
) -> list[str]:
    """The section of ANDI arms against AdamW and Muon (:func:`andi.bench.report.head_to_head`): one row per
    tested pair, the rule, and the pairs of ``pairs`` (every named pair) left untested for lack of results."""
    tasks = {t.task: t for t in group}
    lines = ["### ANDI against AdamW and Muon (head to head)", ""]
    if rows:
        lines += [
            "| task | arm | baseline | arm mean ± std (n) | baseline mean ± std (n) | mean diff (arm − baseline) | "
            "95 % CI | test | two-sided p | Holm p | verdict |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for c in rows:
            t = tasks[c.task]
            a, b = t.arm(c.arm), t.arm(c.other)
            cells = [
                c.task,
                a.label,
                b.label,
                f"{fmt_mean_std(a.summary)} ({a.summary.n})",
                f"{fmt_mean_std(b.summary)} ({b.summary.n})",
                fmt(c.mean_diff),
                _diff_interval(c),
                c.test_name,
                fmt(c.pvalue, 3),
                fmt(c.holm_p, 3),
                c.verdict,
            ]
            lines.append("| " + " | ".join(cells) + " |")
        lines += [
            "",
            "Final test metric of each task (as in its table; n = finite results). Two-sided tests of each ANDI arm "
            "against each baseline: paired t over the seeds both have when at least two pair up (the mean "
            "difference is then the mean paired difference), else Welch (the difference of means). "
            f"Holm–Bonferroni over the {len(rows)} comparison(s) of this table (every row, all tasks of this "
            f"protocol run), a family separate from the best-other-arm comparisons above, α = {alpha}; a "
            'significant difference reads "better than" or "worse than" from the sign of the mean difference and '
            "whether the task's metric is better higher or lower.",
        ]
    else:
        lines.append("No head-to-head comparison possible (fewer than 2 finite results per arm).")
    tested = {(c.task, c.arm, c.other) for c in rows}
    deterministic = sorted({t.task for t, _, _ in pairs if t.deterministic})
    untested = [
        f"{t.task}: {a.label} vs {b.label}"
        for t, a, b in pairs
        if (t.task, a.arm, b.arm) not in tested and not t.deterministic
    ]
    if untested and rows:
        lines += ["", f"Not tested (fewer than 2 finite results on one side): {'; '.join(untested)}."]
    if deterministic:
        lines += [
            "",
            f"n/a on {', '.join(f'`{d}`' for d in deterministic)}: deterministic (every seed gives the same run), so "
            "no test and no place in the Holm family.",
        ]
    return [*lines, ""]


def _arm_of(t: TaskResult, arm: str) -> ArmResult | None:
    return next((a for a in t.arms if a.arm == arm), None)


def width_table_lines(widths: Sequence[tuple[int, TaskResult]]) -> list[str]:
    """The chosen lr of every arm at each width (:func:`andi.bench.report.width_tasks`, ascending ``n_embd``) and
    the ratio of the chosen lr at the largest width to that at the smallest."""
    labels: dict[str, str] = {}
    for _, t in widths:
        for a in t.arms:
            labels.setdefault(a.arm, a.label)
    lo = widths[0]
    hi = next(wt for wt in widths if wt[0] == widths[-1][0])
    lines = [
        "| arm | "
        + " | ".join(f"best lr, n_embd {n} (`{t.task}`)" for n, t in widths)
        + f" | ratio n_embd {hi[0]} / {lo[0]} |",
        "|---|" + "---|" * (len(widths) + 1),
    ]
    marked = False
    for arm, label in labels.items():
        per = [_arm_of(t, arm) for _, t in widths]
        marked = marked or any(a is not None and (a.at_edge or a.edge_capped) for a in per)
        a_lo, a_hi = _arm_of(lo[1], arm), _arm_of(hi[1], arm)
        ratio = (
            a_hi.chosen_lr / a_lo.chosen_lr if a_lo is not None and a_hi is not None and a_lo.chosen_lr > 0 else None
        )
        cells = [label, *("—" if a is None else marked_lr(a) for a in per), fmt(ratio, 3)]
        lines.append("| " + " | ".join(cells) + " |")
    metric = widths[0][1].metric
    note = (
        " (at edge) marks a best lr at an edge of the lrs explored and (edge-capped) one still there after the "
        "last extension round: the optimum at that width may lie beyond it, so a ratio involving it is a bound."
        if marked
        else ""
    )
    return [
        *lines,
        "",
        f"Best lr: the lr the protocol chose at each width (best mean final validation {metric} on the tuning "
        f"seed(s)). Ratio: best lr at n_embd {hi[0]} / best lr at n_embd {lo[0]}; 1 means the lr transfers "
        f"unchanged across the {hi[0] / lo[0]:g}× change of width, {lo[0] / hi[0]:g} is what lr ∝ 1/width "
        f"would give.{note}",
    ]
