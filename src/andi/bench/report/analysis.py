"""What the report computes from the records, before any table or figure: per task and arm the results
(:class:`ArmResult`, :class:`TaskResult`), the two-sided comparisons (:class:`Comparison`, Holm-corrected per protocol
run by :func:`apply_holm`) and the head-to-head pairs of the paper's claims (:func:`head_to_head`).

The tables (:mod:`andi.bench.report.tables`) and figures (:mod:`andi.bench.report.figures`) take these types from here;
:mod:`andi.bench.report.writer` assembles the page. Imports: :mod:`andi.bench.report.stats`, the results directory
(:mod:`andi.bench.execution.store`) and :mod:`andi.bench.util`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from andi.bench.execution.store import ResultStore
from andi.bench.paper_claims import load_claims
from andi.bench.report import stats
from andi.bench.util import final_value

__all__ = [
    "ALPHA",
    "HEAD_TO_HEAD_ARMS",
    "HEAD_TO_HEAD_BASELINES",
    "R_MAX",
    "ArmResult",
    "Comparison",
    "TaskResult",
    "analyze_fair",
    "analyze_replay",
    "apply_holm",
    "compare_arms",
    "head_to_head",
    "head_to_head_pairs",
    "manifest_width",
    "packed_runs",
    "run_shape",
    "task_flag",
    "task_penalty",
    "width_tasks",
]

R_MAX = 4.0
ALPHA = 0.05
#: The arms of the head-to-head table (:func:`head_to_head`), each against every baseline below.
HEAD_TO_HEAD_ARMS = ("andi", "andi-hybrid")
#: The baselines of the head-to-head table.
HEAD_TO_HEAD_BASELINES = ("adamw", "muon")


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
    #: The declared metric of a diverged or failed reporting run (:mod:`andi.bench.paper_claims`); ``None``: such
    #: runs are left out of the mean and the tests (tasks without a declared penalty).
    penalty: float | None = None

    @property
    def n_failed(self) -> int:
        return sum(v is None for v in self.finals)

    def scored(self) -> list[tuple[int, float]]:
        """``(seed, value)`` of every reporting run that counts: each finite final, and with a penalty every
        diverged or failed run at the penalty."""
        if self.penalty is None:
            return [(s, v) for s, v in zip(self.seeds, self.finals) if v is not None and math.isfinite(v)]
        kept = [(s, v if v is not None and math.isfinite(v) else self.penalty) for s, v in zip(self.seeds, self.finals)]
        return kept + [(int(r["config"]["init_seed"]), self.penalty) for r in self.errors]

    @property
    def n_penalized(self) -> int:
        """Reporting runs counted at the penalty (diverged or failed); 0 without one."""
        return 0 if self.penalty is None else self.n_failed + len(self.errors)

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
    ``mean_diff`` read through ``higher_is_better`` (:func:`andi.bench.report.stats.verdict_direction`).
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

    def interval(self) -> tuple[float, float]:
        """95 % CI of the tested mean difference: paired over common seeds, else Welch's (from its t and df);
        NaNs where it is undefined."""
        if self.paired is not None:
            return self.diff.ci_low, self.diff.ci_high
        t, df = self.welch.statistic, self.welch.df
        if not (math.isfinite(t) and t != 0 and math.isfinite(df)):
            return math.nan, math.nan
        half = stats.t_ppf(0.975, df) * abs(self.mean_diff / t)
        return self.mean_diff - half, self.mean_diff + half

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

    @property
    def deterministic(self) -> bool:
        """Every seed gives the same run (:attr:`andi.bench.tasks.base.Task.deterministic`): no tests."""
        return task_flag(self.task, "deterministic")

    @property
    def toy(self) -> bool:
        """A toy landscape (:attr:`andi.bench.tasks.base.Task.toy`): kept out of the real tasks' profiles."""
        return task_flag(self.task, "toy")

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


def _arm_result(entry: Mapping[str, Any], found: list[dict], final_fn: Any, penalty: float | None = None) -> ArmResult:
    records = [r for r in found if r.get("status") != "failed"]
    finals = [final_fn(r) for r in records]
    errors = [r for r in found if r.get("status") == "failed"]
    step_times = [r["timing"].get("optimizer_step_median_s") for r in records]
    peaks = [r["memory"].get("peak_bytes") for r in records if r["memory"].get("peak_bytes") is not None]
    result = ArmResult(
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
        summary=stats.summarize([]),  # set below from the runs that count
        step_time_s=stats.median([t for t in step_times if t is not None]),
        state_bytes=max((int(r["memory"]["state_bytes"]) for r in records), default=None),
        peak_bytes=stats.median(peaks) if peaks else None,
        peak_kind=records[0]["memory"].get("peak_kind", "") if records else "",
        tuning=list(entry["tuning"]),
        expected=len(entry["reporting"]),
        errors=errors,
        edge_capped=bool(entry.get("edge_capped")),
        penalty=penalty,
    )
    result.summary = stats.summarize([v for _, v in result.scored()])
    return result


def _usable(a: ArmResult) -> bool:
    """At least two counted results (:meth:`ArmResult.scored`): what a t-test needs."""
    return len(a.scored()) >= 2


def task_flag(task: str, flag: str) -> bool:
    """A boolean class attribute of the registered task ``task`` (``False`` for a task this version lacks)."""
    from andi.bench.tasks import find_task_class

    cls = find_task_class(task)
    return bool(getattr(cls, flag, False)) if cls is not None else False


def task_penalty(task: str) -> float | None:
    """The :attr:`~andi.bench.tasks.base.Task.divergence_penalty` a task declares itself (a user's task; the
    package's are declared in the claims file), ``None`` where it declares none or is not found here."""
    from andi.bench.tasks import find_task_class

    value = getattr(find_task_class(task), "divergence_penalty", None)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def compare_arms(t: TaskResult, arm: str, baseline: str) -> Comparison | None:
    """``arm`` against ``baseline`` on task ``t``, two-sided (as every comparison of the report; Holm's correction
    is the caller's); ``None`` when either has fewer than two counted results or is not in the task."""
    by_name = {a.arm: a for a in t.arms}
    if arm not in by_name or baseline not in by_name:
        return None
    a, b = by_name[arm], by_name[baseline]
    return _pair(t.task, a, b, t.higher_is_better) if _usable(a) and _usable(b) else None


def _pair(task: str, a: ArmResult, b: ArmResult, hib: bool) -> Comparison:
    """``a`` against ``b`` (both :func:`_usable`), two-sided: paired t over the seeds both have when at least two
    pair up, else Welch; Welch's test is computed either way. Holm's correction is the caller's."""
    pa, pb = dict(a.scored()), dict(b.scored())
    xa, xb = list(pa.values()), list(pb.values())
    common = sorted(set(pa) & set(pb))
    diff = stats.summarize([pa[s] - pb[s] for s in common])
    paired = stats.paired_ttest([pa[s] for s in common], [pb[s] for s in common]) if len(common) >= 2 else None
    welch = stats.welch_ttest(xa, xb)
    mean_diff = diff.mean if paired is not None else a.summary.mean - b.summary.mean
    return Comparison(task, a.arm, b.arm, b.label, hib, diff, welch, paired, mean_diff)


def _compare(task: str, arms: list[ArmResult], hib: bool) -> list[Comparison]:
    """Every arm with at least two finite results against the best other such arm (by mean), two-sided; none on a
    deterministic task (its seeds repeat one run)."""
    if task_flag(task, "deterministic"):
        return []
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
        if not t.deterministic
        for a, b in head_to_head_pairs(t)
        if _usable(a) and _usable(b)
    ]
    for c, (p, reject) in zip(rows, stats.holm_bonferroni([c.pvalue for c in rows], alpha)):
        c.holm_p, c.reject, c.family_size = p, reject, len(rows)
    return rows


def width_tasks(group: Sequence[TaskResult]) -> list[tuple[int, TaskResult]]:
    """``(n_embd, task)`` of the tasks whose manifest has ``task_model.n_embd``, by width then task name; empty
    unless at least two distinct widths are present (the ``width`` protocol: ``gpt-w64``, ``gpt-w128``, ...)."""
    found = [(manifest_width(t.manifest), t) for t in group if manifest_width(t.manifest) > 0]
    found.sort(key=lambda wt: (wt[0], wt[1].task))
    return found if len({n for n, _ in found}) >= 2 else []


def analyze_fair(manifest: Mapping[str, Any], records: _Records | ResultStore) -> TaskResult:
    """Per-arm results, target, time-to-target and comparisons of one fair-protocol task."""
    recs = records if isinstance(records, _Records) else _Records(records)
    penalty = load_claims().penalty(manifest["task"])
    if penalty is None:
        penalty = task_penalty(manifest["task"])
    arms = [_arm_result(e, recs.many(e["reporting"]), final_value, penalty) for e in manifest["arms"]]
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


def _scored_final(record: Mapping[str, Any]) -> float | None:
    v = (record.get("final") or {}).get("value")
    return float(v) if v is not None and math.isfinite(v) else None


def replay_is_scored(manifest: Mapping[str, Any]) -> bool:
    """Whether a replay scores its runs as its script does (the v7 score, set beside the author's table) rather
    than by the last recorded minibatch loss (the paper's script)."""
    return bool(manifest["spec"].get("author_scores"))


def analyze_replay(manifest: Mapping[str, Any], records: _Records | ResultStore) -> TaskResult:
    """Per-arm results of one replay task; the "final" value is the script's score where the replay declares the
    author's scores (:func:`replay_is_scored`), else the last recorded minibatch loss."""
    recs = records if isinstance(records, _Records) else _Records(records)
    scored = replay_is_scored(manifest)
    final = _scored_final if scored else _last_loss
    arms = [_arm_result(e, recs.many(e["reporting"]), final) for e in manifest["arms"]]
    return TaskResult(
        dict(manifest),
        manifest["task"],
        "validation score" if scored else "recorded train loss",
        False,
        None,
        arms,
        _compare(manifest["task"], arms, False),
    )


def run_shape(result: TaskResult) -> tuple[int | None, int | None]:
    """``(steps, batch size)`` of the task's runs, read from a record (a field left to the task's default is the
    default of the manifest's size); ``None`` where no record or task says."""
    from andi.bench.tasks import find_task_class

    config = next((r["config"] for a in result.arms for r in a.records), {})
    cls = find_task_class(result.task)
    default = cls.sizes.get(result.manifest.get("size", "")) if cls is not None else None
    steps = config.get("steps") or (default.steps if default else None)
    batch = config.get("batch_size") or (default.batch_size if default else None)
    return steps, batch


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


def packed_runs(record: Mapping[str, Any]) -> int:
    """Runs that shared the record's GPU (1 when alone, not on a GPU, or recorded before executors)."""
    packed = (record.get("execution") or {}).get("packed")
    return packed if isinstance(packed, int) and not isinstance(packed, bool) and packed > 1 else 1


def manifest_width(manifest: Mapping[str, Any]) -> int:
    """``task_model.n_embd`` of a manifest (0 without one): the tasks of the ``width`` protocol sort by width."""
    model = manifest.get("task_model")
    n = model.get("n_embd") if isinstance(model, Mapping) else None
    return n if isinstance(n, int) and not isinstance(n, bool) else 0
