"""``andi-bench report DIR|ARCHIVE``: a markdown report with PNG figures, computed only from the stored records.

For each protocol run found in ``DIR`` (its ``manifest-*.json``) the report gives, per task:

* fair protocols — a table (arm, chosen lr, trials used, final held-out metric mean ± std over reporting
  seeds, median steps and wall-clock to target, speedup over AdamW, optimizer-step time, optimizer-state
  bytes, peak memory), the comparison of every arm with the best *other* arm, and figures (curves with seed
  bands, lr sensitivity, final quality against training time, gradient norm: :mod:`andi.bench.report_figures`);
  then the head-to-head table of ANDI and ANDI-hybrid against AdamW and Muon (:func:`head_to_head`), a verdict
  summary, the AlgoPerf performance profile and score (r_max = 4), the geometric-mean speedup over AdamW,
  Dolan–Moré profiles of the final test error across tasks, and — when the tasks are one model at two or more
  widths (``task_model.n_embd`` in the manifests: the ``width`` protocol) — a learning-rate transfer section: the
  chosen lr of every arm at each width with the ratio largest-width / smallest-width lr, and two figures (tuning
  curves per width, chosen lr against width);
* the replay protocol — the paper's quantities (last recorded minibatch loss per seed, the ANDI grid
  search) and a Figure-1-like three-panel plot.

A chosen lr is marked ``(edge-ext.)`` when the edge rule extended the grid, ``(at edge)`` when it is at an edge of
the lrs explored, and ``(edge-capped)`` when the manifest says it is still there after the last extension round
(study protocols), with a sentence under the table: that arm's optimum may lie beyond the grid.

Verdicts are two-sided. Each arm is tested against the best other arm (by mean final metric) with a two-sided
paired t-test over the seeds both have when at least two pair up, Welch's two-sided t-test otherwise; the
p-values of the protocol run's distinct comparisons (A vs B and B vs A are one) go through Holm–Bonferroni at
α = 0.05, and a rejected comparison reads "better than B" or "worse than B" from the sign of the mean
difference and whether higher is better; otherwise "no significant difference". The head-to-head table uses the
same tests and wording for the pairs the paper's claims are about (ANDI or ANDI-hybrid against AdamW or Muon, on
every task), with Holm–Bonferroni over that table's rows as a family of its own.

The target of time-to-target is the median final metric of tuned AdamW over the reporting seeds.

Partial results never stop a report: a record that is missing or corrupt (moved aside, excluded, never
recomputed here) leaves its seed out, an arm with no surviving record is shown as ``missing (0 of n seeds)``
and skipped in the plots, and a figure without data is left out. The report is replaced atomically; if it
cannot be produced, the previous report at that path is removed, since it describes other results and would
be taken for the current one.

``ARCHIVE`` is a ``.tar``, ``.tar.gz`` or ``.tar.xz`` of a results directory, read by
:mod:`andi.bench.report_archive` (every member checked, extracted into a temporary folder, the report written to
``--out``, default ``report.md`` next to the archive). The report is a function of the records alone: it names the
results as given on the command line (the archive, never the temporary folder), holds no time stamp, orders
everything by sorted names or the manifests' order, and links figures with ``/`` on every system, so the same
records give the same bytes, and the figures the same file names, on every run and machine.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from andi.bench import stats
from andi.bench.files import atomic_write_text
from andi.bench.report_figures import (
    bands,
    fair_task_figures,
    figure_lines,
    lr_figure,
    quality_profile_lines,
    width_figure_lines,
)
from andi.bench.report_tables import (
    comparison_lines,
    env_lines,
    fair_table,
    fmt,
    fmt_bytes,
    head_to_head_lines,
    packed_runs,
    verdict_summary_lines,
    width_table_lines,
)
from andi.bench.store import ResultStore
from andi.bench.util import final_value

__all__ = [
    "HEAD_TO_HEAD_ARMS",
    "HEAD_TO_HEAD_BASELINES",
    "ArmResult",
    "Comparison",
    "TaskResult",
    "analyze_fair",
    "analyze_replay",
    "apply_holm",
    "fmt",
    "fmt_bytes",
    "generate_report",
    "head_to_head",
    "head_to_head_pairs",
    "width_tasks",
]

R_MAX = 4.0
ALPHA = 0.05
#: The arms of the head-to-head table (:func:`head_to_head`), each against every baseline below.
HEAD_TO_HEAD_ARMS = ("andi", "andi-hybrid")
#: The baselines of the head-to-head table.
HEAD_TO_HEAD_BASELINES = ("adamw", "muon")
_FIG1_ORDER = ("saddle", "cifar", "gpt")
_FIG1_TITLES = {"saddle": "SADDLE (autoencoder)", "cifar": "CIFAR (ResNet-9)", "gpt": "GPT (char NanoGPT)"}


# ============================================================================================== analysis
@dataclass
class ArmResult:
    """One arm on one task, from its manifest entry and reporting records."""

    arm: str
    label: str
    optimizer: str
    chosen_lr: float
    trials: int
    edge_extended: bool
    at_edge: bool
    records: list[dict]
    seeds: list[int]
    finals: list[float | None]
    summary: stats.Summary
    steps_to_target: list[float] = field(default_factory=list)
    time_to_target: list[float] = field(default_factory=list)
    speedup: float = math.nan
    step_time_s: float = math.nan
    state_bytes: int | None = None
    peak_bytes: float | None = None
    peak_kind: str = ""
    tuning: list[dict] = field(default_factory=list)
    expected: int = 0  # reporting runs named by the manifest; ``len(records)`` of them survive
    errors: list[dict] = field(default_factory=list)  # failed records (the run raised): no metric, no timing
    edge_capped: bool = False  # still at an edge after the last extension round (study protocols only)

    @property
    def n_failed(self) -> int:
        return sum(v is None for v in self.finals)

    @property
    def n_missing(self) -> int:
        return max(0, self.expected - len(self.records) - len(self.errors))

    @property
    def packed(self) -> int:
        """Most runs that shared a GPU with any of this arm's reporting runs (1: alone or not on a GPU)."""
        return max((packed_runs(r) for r in self.records), default=1)

    @property
    def median_steps(self) -> float:
        """Steps by which half of the seeds reached the target (the median for an odd number of seeds)."""
        return stats.lower_median(self.steps_to_target)

    @property
    def median_time(self) -> float:
        """Training seconds by which half of the seeds reached the target."""
        return stats.lower_median(self.time_to_target)


@dataclass
class Comparison:
    """An arm against the best other arm on one task: two-sided tests, the Holm-adjusted p and the verdict.

    The deciding test is the two-sided paired t-test over the seeds both arms have when at least two pair up,
    else Welch's two-sided test; Welch's is always reported too. Its p-value enters Holm's correction over the
    protocol run (:func:`apply_holm`), and a significant difference is "better" or "worse" from the sign of
    ``mean_diff`` read through ``higher_is_better`` (:func:`andi.bench.stats.verdict_direction`).
    """

    task: str
    arm: str
    other: str
    other_label: str
    higher_is_better: bool
    diff: stats.Summary  # per-seed paired difference arm − other over the common seeds
    welch: stats.TestResult  # two-sided
    paired: stats.TestResult | None  # two-sided; None when fewer than 2 seeds pair up
    mean_diff: float  # what the deciding test is about: mean paired difference, else difference of means
    holm_p: float = math.nan
    reject: bool = False
    family_size: int = 0  # distinct comparisons in the Holm family (the protocol run)

    @property
    def test_name(self) -> str:
        return "paired t" if self.paired is not None else "Welch"

    @property
    def pvalue(self) -> float:
        """Two-sided p-value of the deciding test (paired when seeds pair up, else Welch): it enters Holm."""
        return (self.paired if self.paired is not None else self.welch).pvalue

    @property
    def direction(self) -> stats.Direction:
        return stats.verdict_direction(self.mean_diff, self.reject, self.higher_is_better)

    @property
    def verdict(self) -> str:
        """``better than <arm>``, ``worse than <arm>`` or ``no significant difference``."""
        if self.direction == "none":
            return "no significant difference"
        return f"{self.direction} than {self.other_label}"


@dataclass
class TaskResult:
    manifest: dict
    task: str
    metric: str
    higher_is_better: bool
    target: float | None
    arms: list[ArmResult]
    comparisons: list[Comparison] = field(default_factory=list)

    def arm(self, name: str) -> ArmResult:
        return next(a for a in self.arms if a.arm == name)


class _Records:
    def __init__(self, store: ResultStore) -> None:
        self.store, self.cache, self.missing = store, {}, []

    def get(self, key: str) -> dict | None:
        if key not in self.cache:
            self.cache[key] = self.store.get(key)
            if self.cache[key] is None:
                self.missing.append(key)
        return self.cache[key]

    def peek(self, key: str) -> dict | None:
        """The record with ``key`` without counting it as missing when absent (tuning runs)."""
        if key not in self.cache:
            self.cache[key] = self.store.get(key)
        return self.cache[key]

    def many(self, keys: Sequence[str]) -> list[dict]:
        return [r for r in (self.get(k) for k in keys) if r is not None]


def _arm_result(entry: Mapping[str, Any], found: list[dict], final_fn: Any) -> ArmResult:
    records = [r for r in found if r.get("status") != "failed"]
    finals = [final_fn(r) for r in records]
    step_times = [r["timing"].get("optimizer_step_median_s") for r in records]
    peaks = [r["memory"].get("peak_bytes") for r in records if r["memory"].get("peak_bytes") is not None]
    return ArmResult(
        arm=entry["arm"],
        label=entry.get("label") or entry["arm"],
        optimizer=entry["optimizer"],
        chosen_lr=float(entry["chosen_lr"]),
        trials=int(entry["trials"]),
        edge_extended=bool(entry.get("edge_extended")),
        at_edge=bool(entry.get("at_edge")),
        records=records,
        seeds=[int(r["config"]["init_seed"]) for r in records],
        finals=finals,
        summary=stats.summarize(stats.finite_values(finals)),
        step_time_s=stats.median([t for t in step_times if t is not None]),
        state_bytes=max((int(r["memory"]["state_bytes"]) for r in records), default=None),
        peak_bytes=stats.median(peaks) if peaks else None,
        peak_kind=records[0]["memory"].get("peak_kind", "") if records else "",
        tuning=list(entry["tuning"]),
        expected=len(entry["reporting"]),
        errors=[r for r in found if r.get("status") == "failed"],
        edge_capped=bool(entry.get("edge_capped")),
    )


def _usable(a: ArmResult) -> bool:
    """At least two finite results: what a t-test needs."""
    return len(stats.finite_values(a.finals)) >= 2


def _pair(task: str, a: ArmResult, b: ArmResult, hib: bool) -> Comparison:
    """``a`` against ``b`` (both :func:`_usable`), two-sided: paired t over the seeds both have when at least two
    pair up, else Welch; Welch's test is computed either way. Holm's correction is the caller's."""
    xa, xb = stats.finite_values(a.finals), stats.finite_values(b.finals)
    pa = {s: v for s, v in zip(a.seeds, a.finals) if v is not None and math.isfinite(v)}
    pb = {s: v for s, v in zip(b.seeds, b.finals) if v is not None and math.isfinite(v)}
    common = sorted(set(pa) & set(pb))
    diff = stats.summarize([pa[s] - pb[s] for s in common])
    paired = stats.paired_ttest([pa[s] for s in common], [pb[s] for s in common]) if len(common) >= 2 else None
    welch = stats.welch_ttest(xa, xb)
    mean_diff = diff.mean if paired is not None else a.summary.mean - b.summary.mean
    return Comparison(task, a.arm, b.arm, b.label, hib, diff, welch, paired, mean_diff)


def _compare(task: str, arms: list[ArmResult], hib: bool) -> list[Comparison]:
    """Every arm with at least two finite results against the best other such arm (by mean), two-sided."""
    usable = [a for a in arms if _usable(a)]
    out = []
    for a in usable:
        others = [b for b in usable if b.arm != a.arm]
        if not others:
            continue
        best = max(others, key=lambda b: b.summary.mean) if hib else min(others, key=lambda b: b.summary.mean)
        out.append(_pair(task, a, best, hib))
    return out


def head_to_head_pairs(t: TaskResult) -> list[tuple[ArmResult, ArmResult]]:
    """``(ANDI arm, baseline)`` of task ``t`` for every arm of :data:`HEAD_TO_HEAD_ARMS` and baseline of
    :data:`HEAD_TO_HEAD_BASELINES` that the task has, in that order (usable or not)."""
    by_name = {a.arm: a for a in t.arms}
    return [
        (by_name[a], by_name[b])
        for a in HEAD_TO_HEAD_ARMS
        for b in HEAD_TO_HEAD_BASELINES
        if a in by_name and b in by_name
    ]


def head_to_head(group: Sequence[TaskResult], alpha: float = ALPHA) -> list[Comparison]:
    """ANDI and ANDI-hybrid against AdamW and Muon on every task of one protocol run, Holm-corrected.

    One :class:`Comparison` per ``(task, ANDI arm, baseline)`` of :func:`head_to_head_pairs` whose two arms have
    at least two finite results each (a pair short of that is skipped), in task order, then arm, then baseline.
    The tests are those of the best-other-arm comparisons (two-sided paired t over the common seeds when at least
    two pair up, else Welch). Holm–Bonferroni runs over exactly these rows — the head-to-head family of the
    protocol run, separate from :func:`apply_holm`'s — so every row's ``family_size`` is their number. Computed
    afresh on every call: the task results are not modified.
    """
    rows = [
        _pair(t.task, a, b, t.higher_is_better)
        for t in group
        for a, b in head_to_head_pairs(t)
        if _usable(a) and _usable(b)
    ]
    for c, (p, reject) in zip(rows, stats.holm_bonferroni([c.pvalue for c in rows], alpha)):
        c.holm_p, c.reject, c.family_size = p, reject, len(rows)
    return rows


def width_tasks(group: Sequence[TaskResult]) -> list[tuple[int, TaskResult]]:
    """``(n_embd, task)`` of the tasks whose manifest has ``task_model.n_embd``, by width then task name; empty
    unless at least two distinct widths are present (the ``width`` protocol: ``gpt-w64``, ``gpt-w128``, ...)."""
    found = [(_width(t.manifest), t) for t in group if _width(t.manifest) > 0]
    found.sort(key=lambda wt: (wt[0], wt[1].task))
    return found if len({n for n, _ in found}) >= 2 else []


def analyze_fair(manifest: Mapping[str, Any], records: _Records | ResultStore) -> TaskResult:
    """Per-arm results, target, time-to-target and comparisons of one fair-protocol task."""
    recs = records if isinstance(records, _Records) else _Records(records)
    arms = [_arm_result(e, recs.many(e["reporting"]), final_value) for e in manifest["arms"]]
    any_rec = next((r for a in arms for r in a.records), None)
    metric = any_rec["final"]["metric"] if any_rec else "metric"
    hib = bool(any_rec["final"]["higher_is_better"]) if any_rec else False
    ref_name = manifest.get("reference_arm", "adamw")
    ref = next((a for a in arms if a.arm == ref_name), None)
    target = None
    if ref is not None and ref.records:
        t = stats.target_value(ref.finals, hib)
        target = t if math.isfinite(t) else None
    for a in arms:
        if target is None:
            continue
        for r in a.records:
            ev = r["eval"]
            vals = ev.get(metric) or []
            steps = ev.get("steps") or []
            a.steps_to_target.append(stats.steps_to_target(steps, vals, target, hib))
            a.time_to_target.append(stats.time_to_target(r["timing"]["cumulative_train_s"], vals, target, hib))
    if ref is not None and target is not None:
        for a in arms:  # 0 when the arm misses; nan when the reference itself misses or times are 0
            rt, at = ref.median_time, a.median_time
            a.speedup = 0.0 if math.isinf(at) else rt / at if math.isfinite(rt) and at > 0 else math.nan
    return TaskResult(
        dict(manifest), manifest["task"], metric, hib, target, arms, _compare(manifest["task"], arms, hib)
    )


def _last_loss(record: Mapping[str, Any]) -> float | None:
    losses = record["train"].get("loss") or []
    v = losses[-1] if losses else None
    return float(v) if v is not None and math.isfinite(v) else None


def analyze_replay(manifest: Mapping[str, Any], records: _Records | ResultStore) -> TaskResult:
    """Per-arm results of one replay task; the "final" value is the last recorded minibatch loss."""
    recs = records if isinstance(records, _Records) else _Records(records)
    arms = [_arm_result(e, recs.many(e["reporting"]), _last_loss) for e in manifest["arms"]]
    return TaskResult(
        dict(manifest),
        manifest["task"],
        "recorded train loss",
        False,
        None,
        arms,
        _compare(manifest["task"], arms, False),
    )


def apply_holm(results: Sequence[TaskResult], alpha: float = ALPHA) -> None:
    """Holm–Bonferroni over the distinct comparisons of one protocol run, in place.

    A against its best other arm B and B against A (when A is B's best other arm) are one hypothesis — the
    same two-sided test, with the same p-value — so the family counts it once and both get its adjusted p.
    """
    family: dict[tuple[str, frozenset[str]], list[Comparison]] = {}
    for c in (c for r in results for c in r.comparisons):
        family.setdefault((c.task, frozenset((c.arm, c.other))), []).append(c)
    members = list(family.values())
    for group, (p, reject) in zip(members, stats.holm_bonferroni([g[0].pvalue for g in members], alpha)):
        for c in group:
            c.holm_p, c.reject, c.family_size = p, reject, len(members)


# ============================================================================================== writing
def _figure1_lines(panels: list[Any], path: Path | None, rel: Path, suptitle: str, caption: str) -> list[str]:
    """The Figure-1 layout (saddle, cifar, gpt in the paper's order) of ``panels`` that have data, if any."""
    from andi.bench.plots import save_panels

    panels = [p for p in panels if p.bands]
    if path is None or not panels:
        return []
    order = {title: i for i, title in enumerate(_FIG1_TITLES.values())}
    panels.sort(key=lambda p: order[p.title])
    return figure_lines(save_panels(path, panels, suptitle), rel, "figure 1", caption)


def _fair_section(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    from andi.bench.plots import Panel

    m = group[0].manifest
    spec = m["spec"]
    lines = [f"## Protocol `{m['protocol']}` — size `{m['size']}`", "", spec.get("description", ""), ""]
    if not spec.get("evidence", True):
        lines += [
            "> **Demonstration, not evidence**: too few seeds and grid points for a claim. "
            "Use `andi-bench run --protocol fair` for results.",
            "",
        ]
    ks = spec["ks"]
    lines += [
        f"lr grid per arm: base × {spec['factor']:g}^k, k ∈ {{{ks[0]}, …, {ks[-1]}}} ({len(ks)} points), "
        f"edge extension {spec['edge_extension']} points; tuning seeds {spec['tuning_seeds']}, reporting "
        f"seeds {spec['reporting_seeds']}; schedule {spec['schedule']} (warmup {spec['warmup_frac']:g}, "
        f"decay {spec['decay_frac']:g}); selection on the final validation metric, report on test.",
        "",
    ]
    fig1 = []
    for t in group:
        lines += [f"### {t.task}", "", *fair_table(t), "", *comparison_lines(t, ALPHA), ""]
        if fig_dir is not None:
            lines += fair_task_figures(t, fig_dir, prefix, rel)
            if t.task in _FIG1_ORDER:
                train = bands(t, "train", bins=50)
                fig1.append(Panel(_FIG1_TITLES[t.task], train, "training loss (bin means)", logy=t.task == "saddle"))
    pairs = [(t, a, b) for t in group for a, b in head_to_head_pairs(t)]
    if pairs:
        lines += head_to_head_lines(group, head_to_head(group, ALPHA), pairs, ALPHA)
    lines += verdict_summary_lines(group, ALPHA)
    figure1 = _figure1_lines(
        fig1,
        fig_dir / f"{prefix}-figure1.png" if fig_dir is not None else None,
        rel,
        "Training loss as in the paper's Figure 1 (means over 50 step bins; median and min–max over reporting seeds)",
        "Training loss per task in the paper's Figure-1 layout: median (line) and min–max (band) over reporting "
        "seeds of 50-step bin means.",
    )
    if figure1:
        lines += ["### Figure-1 layout (training loss; the tables above use held-out metrics)", "", *figure1]
    lines += _aggregate(group, fig_dir, prefix, rel)
    if fig_dir is not None:
        lines += quality_profile_lines(group, fig_dir, prefix, rel)
    widths = width_tasks(group)
    if widths:
        lines += ["### Learning-rate transfer across width", "", *width_table_lines(widths), ""]
        if fig_dir is not None:
            lines += width_figure_lines(widths, fig_dir, prefix, rel)
    return lines


def _aggregate(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    """The AlgoPerf table across tasks (time and steps to target) and its performance-profile figure."""
    from andi.bench.plots import arm_style, save_profiles

    tasks = [t for t in group if t.target is not None]
    if not tasks:
        return []
    labels = {a.arm: (a.label, a.optimizer) for t in tasks for a in t.arms}
    # An arm without any surviving record on a task has no time there: left out, which scores as a miss.
    present = {arm: [t for t in tasks if any(a.arm == arm and a.records for a in t.arms)] for arm in labels}
    declared = {arm: sum(any(a.arm == arm for a in t.arms) for t in tasks) for arm in labels}
    times = {arm: {t.task: t.arm(arm).median_time for t in present[arm]} for arm in labels}
    steps = {arm: {t.task: t.arm(arm).median_steps for t in present[arm]} for arm in labels}
    ref = group[0].manifest.get("reference_arm", "adamw")
    rt, rs = stats.performance_ratios(times), stats.performance_ratios(steps)
    lines = [
        f"### Across tasks ({len(tasks)} task(s))",
        "",
        "| arm | AlgoPerf score (time) | AlgoPerf score (steps) | geomean speedup vs AdamW (time) | "
        "geomean speedup (steps) | tasks reaching target |",
        "|---|---|---|---|---|---|",
    ]
    for arm, (label, _) in labels.items():
        reached = sum(math.isfinite(v) for v in times[arm].values())
        missing = declared[arm] - len(times[arm])
        missing_note = f" ({missing} missing)" if missing else ""
        gt = stats.geometric_mean_speedup(times, arm, ref, R_MAX) if ref in times else math.nan
        gs = stats.geometric_mean_speedup(steps, arm, ref, R_MAX) if ref in steps else math.nan
        lines.append(
            f"| {label} | {fmt(stats.algoperf_score(rt[arm], R_MAX), 3)} | "
            f"{fmt(stats.algoperf_score(rs[arm], R_MAX), 3)} | {fmt(gt, 3)} | {fmt(gs, 3)} | "
            f"{reached}/{declared[arm]}{missing_note} |"
        )
    incomplete = any(declared[a] > len(times[a]) for a in labels)
    missing_rule = " A task where an arm has no results (missing) counts as a miss for it." if incomplete else ""
    lines += [
        "",
        f"AlgoPerf score B = 1/(r_max − 1) ∫₁^r_max ρ(τ) dτ with r_max = {R_MAX:g} (1 = fastest on every "
        f"task). In the geometric mean a miss counts as r = r_max (our choice).{missing_rule}",
        "",
    ]
    if fig_dir is not None:
        p = save_profiles(
            fig_dir / f"{prefix}-profile.png",
            {
                "wall-clock": {labels[a][0]: list(rt[a].values()) for a in labels},
                "steps": {labels[a][0]: list(rs[a].values()) for a in labels},
            },
            R_MAX,
            {labels[a][0]: arm_style(labels[a][1], i) for i, a in enumerate(labels)},
        )
        lines += figure_lines(
            p,
            rel,
            "performance profiles",
            "AlgoPerf performance profiles: the fraction of tasks an arm reaches the target within τ times the "
            "fastest arm's wall-clock time (left) or steps (right).",
        )
    return lines


def _replay_section(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    from andi.bench.plots import Panel

    m = group[0].manifest
    paper = dict(m["spec"].get("paper_andi_lr", []))
    lines = [
        f"## Protocol `replay` (the paper's script) — size `{m['size']}`",
        "",
        f"{m['steps']} steps, pre-update minibatch loss recorded every {m['record_every']} steps, seeds "
        f"{m['seeds']}, constant lr, ANDI searched on seed {m['spec']['search_seed']} only; AdamW and the "
        "script's \"Muon\" untuned. Reproduces the paper's numbers; its flaws are listed in protocol.md §(b).",
        "",
    ]
    fig1 = []
    for t in group:
        seeds = m["seeds"]
        lines += [
            f"### {t.task}",
            "",
            "| arm | lr | trials | "
            + " | ".join(f"loss @ last record, seed {s}" for s in seeds)
            + " | mean | opt step (ms) | state | peak mem |",
            "|---|---|---|" + "---|" * len(seeds) + "---|---|---|---|",
        ]
        for a in t.arms:
            per = dict(zip(a.seeds, a.finals))
            lines.append(
                f"| {a.label} | {fmt(a.chosen_lr)} | {a.trials or 'fixed'} | "
                + " | ".join(fmt(per[s]) if s in per else "missing" for s in seeds)
                + f" | {fmt(a.summary.mean)} | {fmt(a.step_time_s * 1e3, 3)} | {fmt_bytes(a.state_bytes)}"
                f" | {fmt_bytes(a.peak_bytes)} |"
            )
        andi = next((a for a in t.arms if a.tuning), None)
        if andi is not None:
            lines += [
                "",
                f"ANDI grid search (seed {m['spec']['search_seed']}; lowest last recorded loss wins, "
                f"NaN skipped): "
                + ", ".join(f"{fmt(e['lr'])} → {fmt(e['score'])}" for e in andi.tuning)
                + f". Chosen {fmt(andi.chosen_lr)}; the paper reports {fmt(paper.get(t.task))}.",
            ]
        lines += [
            "",
            *comparison_lines(t, ALPHA, "loss"),
            "",
            "_Two seeds, one of them the tuning seed: not evidence._",
            "",
        ]
        if fig_dir is not None:
            lines += figure_lines(
                lr_figure(t, fig_dir / f"{prefix}-{t.task}-lr.png", "loss at last record", t.task == "saddle"),
                rel,
                f"{t.task} ANDI lr search",
                "ANDI's grid search on the search seed: loss at the last record against lr (log scale); a cross "
                "is a diverged trial, a ring the chosen lr.",
            )
            if t.task in _FIG1_ORDER:
                train = bands(t, "train")
                fig1.append(Panel(_FIG1_TITLES[t.task], train, "training loss (minibatch)", logy=t.task == "saddle"))
    figure1 = _figure1_lines(
        fig1,
        fig_dir / f"{prefix}-figure1.png" if fig_dir is not None else None,
        rel,
        "Replay of the paper's Figure 1 (median and range over seeds 42, 1337)",
        "The paper's Figure 1 replayed: recorded minibatch training loss, median (line) and range (band) over "
        "the two seeds.",
    )
    if figure1:
        lines += ["### Figure 1 (replay)", "", *figure1]
    return lines


def generate_report(
    results_dir: str | Path, out: str | Path | None = None, *, figures: bool = True, shown_as: str | None = None
) -> Path:
    """Write ``report.md`` (default: in ``results_dir``) and PNGs under ``figures/`` next to it.

    ``shown_as`` is what the report's "Results directory" line names (default: ``results_dir``), e.g. the archive
    the directory was extracted from. The report is replaced atomically. On any failure the report previously at
    ``out`` is removed (and the error re-raised): it was computed from other results, and left in place it would
    pass for the current one.
    """
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / "report.md"
    try:
        text = _render(results_dir, out, figures, str(results_dir) if shown_as is None else shown_as)
        out.parent.mkdir(parents=True, exist_ok=True)
        return atomic_write_text(out, text)
    except BaseException:
        with contextlib.suppress(OSError):
            out.unlink(missing_ok=True)
        raise


def _width(manifest: Mapping[str, Any]) -> int:
    """``task_model.n_embd`` of a manifest (0 without one): the tasks of the ``width`` protocol sort by width."""
    model = manifest.get("task_model")
    n = model.get("n_embd") if isinstance(model, Mapping) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else 0


def _render(results_dir: Path, out: Path, figures: bool, shown_as: str) -> str:
    """The markdown of the report on ``results_dir`` (figures are written under ``out``'s folder)."""
    # A corrupt record is moved aside and left out; the report never recomputes anything.
    store = ResultStore(
        results_dir,
        corrupt_note="excluded from this report (re-run the command that produced it, `andi-bench run` or "
        "`quick` with the same arguments, to recompute it)",
    )
    manifests = store.manifests()
    if not manifests:
        raise FileNotFoundError(
            f"no manifest-*.json in {shown_as}: run `andi-bench quick` or "
            "`andi-bench run` with --out pointing there first"
        )
    fig_dir = out.parent / "figures" if figures else None
    recs = _Records(store)
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for m in manifests:
        groups.setdefault((m["kind"], m["protocol"], m["size"]), []).append(m)
    lines = ["# andi-bench report", "", f"Results directory: `{shown_as}`.", ""]
    body: list[str] = []
    analysed: list[TaskResult] = []
    order = {t: i for i, t in enumerate(_FIG1_ORDER)}
    for (kind, protocol, size), ms in sorted(groups.items(), key=lambda kv: (kv[0][0] == "replay", kv[0])):
        ms.sort(key=lambda m: (order.get(m["task"], len(order)), _width(m), m["task"]))
        prefix = f"{protocol}-{size}"
        if kind == "replay":
            group = [analyze_replay(m, recs) for m in ms]
            apply_holm(group)
            body += _replay_section(group, fig_dir, prefix, Path("figures"))
        else:
            group = [analyze_fair(m, recs) for m in ms]
            apply_holm(group)
            body += _fair_section(group, fig_dir, prefix, Path("figures"))
        analysed += group
    lines += [*env_lines(analysed), ""]
    if recs.missing:
        lines += [
            f"> **{len(recs.missing)} record(s) named by a manifest are missing or corrupt** and were left "
            "out; re-run the same command to recompute them.",
            "",
        ]
    tuning_keys = [k for m in manifests for a in m["arms"] for t in a.get("tuning", []) for k in t["keys"]]
    named = [recs.peek(k) for k in tuning_keys] + list(recs.cache.values())
    failed_records = {r["key"]: r for r in named if r is not None and r.get("status") == "failed"}
    if failed_records:
        failed, first = sorted(failed_records), next(iter(failed_records.values()))
        last_line = (first.get("error") or "").strip().splitlines()[-1:] or ["?"]
        lines += [
            f"> **{len(failed)} run(s) failed with an error** (twice: each was retried once), e.g. "
            f"`{first['config']['task']}/{first['config']['optimizer']}` lr {fmt(first['config']['lr'])}: "
            f"`{last_line[0]}`. A failed tuning run scores like a diverged one; failed reporting runs are "
            "counted as failed in `n`. Tracebacks are in the records (`error`); re-run the same command to "
            "retry them.",
            "",
        ]
    lines += body
    return "\n".join(lines).rstrip() + "\n"
