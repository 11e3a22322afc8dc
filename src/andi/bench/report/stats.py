"""Statistics for benchmark reports: summaries, t-tests, Holm–Bonferroni, time-to-target, AlgoPerf profiles.

The t distribution and the t-tests are SciPy's (``scipy.stats.t``, ``ttest_rel``, ``ttest_ind(equal_var=False)``,
in the ``bench`` extra); this module keeps the conventions around them (degenerate samples, Holm's correction, the
direction of a verdict) and the quantities SciPy does not have. ``df`` may be fractional (Welch).

Conventions (docs/design/protocol.md, "Statistics" and "Aggregation across tasks"):

* ``std`` is the sample standard deviation (``ddof=1``); the 95 % CI of a mean is
  ``mean ± t_{0.975, n-1} · std / sqrt(n)``.
* Time-to-target is ``inf`` when a run never reaches the target; a comparison "reaches" the target when
  ``value <= target`` (lower is better) or ``value >= target`` (higher is better).
* AlgoPerf score with ``r_max = 4``: ``B_s = 1/(r_max - 1) ∫_1^{r_max} ρ_s(τ) dτ``, which for the step
  function ρ_s equals the mean over tasks of ``max(0, r_max - r_{s,w}) / (r_max - 1)``.
* Verdicts are two-sided: a comparison is significant when its two-sided p-value survives Holm's correction,
  and its direction is the sign of the mean difference read through ``higher_is_better``
  (:func:`verdict_direction`), so a clear loss reads as a loss, not as a tie.
* Quality profiles (Dolan–Moré) compare final *errors*, lower is better: a lower-is-better metric is its own
  error, a higher-is-better metric (an accuracy in [0, 1]) has error ``1 - value`` (:func:`metric_error`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import scipy.stats

__all__ = [
    "Summary",
    "TestResult",
    "algoperf_score",
    "finite_values",
    "geometric_mean_speedup",
    "holm_bonferroni",
    "lower_median",
    "median",
    "metric_error",
    "paired_ttest",
    "performance_profile",
    "performance_ratios",
    "steps_to_target",
    "summarize",
    "t_cdf",
    "t_ppf",
    "t_sf",
    "target_value",
    "time_to_target",
    "verdict_direction",
    "welch_ttest",
]

Alternative = Literal["two-sided", "less", "greater"]
Direction = Literal["better", "worse", "none"]


def _check_df(df: float) -> None:
    if not df > 0 or math.isinf(df):
        raise ValueError(f"degrees of freedom must be positive and finite, got {df}")


def t_sf(t: float, df: float) -> float:
    """Survival function P(T > t) of Student's t distribution with ``df`` degrees of freedom."""
    _check_df(df)
    return float(scipy.stats.t.sf(t, df))


def t_cdf(t: float, df: float) -> float:
    """Cumulative distribution P(T <= t) of Student's t distribution."""
    _check_df(df)
    return float(scipy.stats.t.cdf(t, df))


def t_ppf(q: float, df: float) -> float:
    """Quantile function (inverse CDF) of Student's t distribution."""
    _check_df(df)
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must lie in [0, 1], got {q}")
    return float(scipy.stats.t.ppf(q, df))


# ------------------------------------------------------------------------------------------ summaries
@dataclass(frozen=True)
class Summary:
    """Sample summary: ``n``, mean, sample std (ddof=1) and the two-sided 95 % t confidence interval."""

    n: int
    mean: float
    std: float
    ci_low: float
    ci_high: float


def _finite(values: Iterable[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(float(v))]


def summarize(values: Sequence[float], confidence: float = 0.95) -> Summary:
    """Mean, sample standard deviation and t confidence interval of ``values``.

    ``std`` and the interval are ``nan`` for fewer than two values; an empty input gives ``n = 0`` and
    ``nan`` everywhere. Non-finite inputs are the caller's business (they propagate).
    """
    xs = [float(v) for v in values]
    n = len(xs)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = math.fsum(xs) / n
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    var = math.fsum((x - mean) ** 2 for x in xs) / (n - 1)
    std = math.sqrt(var)
    half = t_ppf(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def median(values: Iterable[float]) -> float:
    """Median that tolerates ``inf`` (a miss) and returns ``nan`` for an empty input."""
    xs = sorted(float(v) for v in values)
    n = len(xs)
    if n == 0:
        return math.nan
    mid = n // 2
    if n % 2:
        return xs[mid]
    return (xs[mid - 1] + xs[mid]) / 2.0  # a finite value and inf give inf; -inf and inf give nan


def lower_median(values: Iterable[float]) -> float:
    """The ``ceil(n/2)``-th smallest value: the median for odd ``n``, the lower middle value for even ``n``.

    Used for times to target: it is the time by which half of the seeds have reached the target, so an even
    number of seeds with half of them missing still gives a finite time. ``nan`` for an empty input.
    """
    xs = sorted(float(v) for v in values)
    return xs[(len(xs) + 1) // 2 - 1] if xs else math.nan


def target_value(finals: Iterable[float | None], higher_is_better: bool) -> float:
    """Time-to-target target from the reference arm's final metrics: the ``(floor(n/2) + 1)``-th best value.

    This is the median for an odd number of seeds and the worse of the two middle values for an even number
    (more than half of the reference runs reach it). Failed runs (``None``/non-finite) count as the worst.
    """
    worst = -math.inf if higher_is_better else math.inf
    xs = [worst if v is None or not math.isfinite(v) else float(v) for v in finals]
    if not xs:
        return math.nan
    xs.sort(reverse=higher_is_better)  # best first
    return xs[len(xs) // 2]


# ------------------------------------------------------------------------------------------- t-tests
@dataclass(frozen=True)
class TestResult:
    """A t-test: statistic, degrees of freedom, p-value and the alternative it was computed for."""

    statistic: float
    df: float
    pvalue: float
    alternative: Alternative

    __test__ = False  # not a pytest test class


def _degenerate(diff: float, df: float, alternative: Alternative) -> TestResult:
    """Zero variance: the statistic is ``±inf`` (p = 0 or 1 by the side) or ``nan`` when the means are equal.

    SciPy gives the same values with a warning about dividing by zero; this is the convention, said once.
    """
    if alternative not in ("two-sided", "less", "greater"):
        raise ValueError(f"alternative must be 'two-sided', 'less' or 'greater', got {alternative!r}")
    if diff == 0:
        return TestResult(math.nan, df, math.nan, alternative)
    t = math.copysign(math.inf, diff)
    p = {"two-sided": 0.0, "greater": 0.0 if t > 0 else 1.0, "less": 0.0 if t < 0 else 1.0}[alternative]
    return TestResult(t, df, p, alternative)


def _variance(xs: Sequence[float]) -> float:
    mean = math.fsum(xs) / len(xs)
    return math.fsum((x - mean) ** 2 for x in xs) / (len(xs) - 1)


def welch_ttest(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> TestResult:
    """Welch's unequal-variance t-test of ``mean(a) - mean(b)`` (``scipy.stats.ttest_ind(equal_var=False)``).

    .. math::
        t = \\frac{\\bar a - \\bar b}{\\sqrt{s_a^2/n_a + s_b^2/n_b}}, \\qquad
        \\nu = \\frac{(s_a^2/n_a + s_b^2/n_b)^2}{\\frac{(s_a^2/n_a)^2}{n_a-1} + \\frac{(s_b^2/n_b)^2}{n_b-1}}

    ``alternative="less"`` tests H1: mean(a) < mean(b). Each sample needs at least two values; with zero
    variance in both samples the statistic is ``±inf`` (p = 0 or 1) or ``nan`` when the means are equal.
    """
    xa, xb = [float(v) for v in a], [float(v) for v in b]
    if len(xa) < 2 or len(xb) < 2:
        raise ValueError(f"Welch's t-test needs at least 2 values per sample, got {len(xa)} and {len(xb)}")
    if _variance(xa) == 0.0 and _variance(xb) == 0.0:
        diff = math.fsum(xa) / len(xa) - math.fsum(xb) / len(xb)
        return _degenerate(diff, float(len(xa) + len(xb) - 2), alternative)
    res = scipy.stats.ttest_ind(xa, xb, equal_var=False, alternative=alternative)
    return TestResult(float(res.statistic), float(res.df), float(res.pvalue), alternative)


def paired_ttest(a: Sequence[float], b: Sequence[float], alternative: Alternative = "two-sided") -> TestResult:
    """Paired t-test on ``d_i = a_i - b_i`` (seed-paired results; ``scipy.stats.ttest_rel``):
    ``t = mean(d) / (std(d) / sqrt(n))``.

    ``alternative="less"`` tests H1: mean(d) < 0 (``a`` lower than ``b``). Needs ``n >= 2`` pairs.
    """
    xa, xb = [float(v) for v in a], [float(v) for v in b]
    if len(xa) != len(xb):
        raise ValueError(f"paired t-test needs samples of equal length, got {len(xa)} and {len(xb)}")
    if len(xa) < 2:
        raise ValueError(f"paired t-test needs at least 2 pairs, got {len(xa)}")
    d = [x - y for x, y in zip(xa, xb)]
    if _variance(d) == 0.0:
        return _degenerate(math.fsum(d) / len(d), float(len(d) - 1), alternative)
    res = scipy.stats.ttest_rel(xa, xb, alternative=alternative)
    return TestResult(float(res.statistic), float(res.df), float(res.pvalue), alternative)


def holm_bonferroni(pvalues: Sequence[float], alpha: float = 0.05) -> list[tuple[float, bool]]:
    """Holm's step-down correction: ``(adjusted p, reject)`` for each input, in input order.

    With the m p-values sorted ascending, ``p_adj(i) = max_{j<=i} min(1, (m - j + 1) p_(j))`` and H_i is
    rejected when ``p_adj(i) <= alpha``. A ``nan`` p-value (test not computable) counts as 1.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    ps = [1.0 if p is None or math.isnan(p) else float(p) for p in pvalues]
    m = len(ps)
    order = sorted(range(m), key=lambda i: ps[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * ps[i]))
        adjusted[i] = running
    return [(p, p <= alpha) for p in adjusted]


def verdict_direction(mean_diff: float, significant: bool, higher_is_better: bool) -> Direction:
    """Direction of a two-sided comparison of arm A against arm B from ``mean_diff = mean(A) - mean(B)``.

    ``"better"`` when the difference is significant and points the metric's good way (``mean_diff > 0`` for
    a higher-is-better metric, ``< 0`` for a lower-is-better one), ``"worse"`` when it is significant and
    points the other way, ``"none"`` when it is not significant (or the difference is 0 or ``nan``, which a
    two-sided test never calls significant).
    """
    if not significant or not mean_diff or math.isnan(mean_diff):
        return "none"
    return "better" if (mean_diff > 0) == higher_is_better else "worse"


# ----------------------------------------------------------------------------------- time-to-target
def _reaches(value: float | None, target: float, higher_is_better: bool) -> bool:
    if value is None or not math.isfinite(value):
        return False
    return value >= target if higher_is_better else value <= target


def steps_to_target(
    steps: Sequence[int], values: Sequence[float | None], target: float, higher_is_better: bool
) -> float:
    """First evaluation step whose value reaches ``target`` (``inf`` when none does)."""
    if len(steps) != len(values):
        raise ValueError(f"steps and values differ in length ({len(steps)} vs {len(values)})")
    for s, v in zip(steps, values):
        if _reaches(v, target, higher_is_better):
            return float(s)
    return math.inf


def time_to_target(
    cumulative_s: Sequence[float], values: Sequence[float | None], target: float, higher_is_better: bool
) -> float:
    """Cumulative training time (evaluation excluded) at the first evaluation that reaches ``target``."""
    if len(cumulative_s) != len(values):
        raise ValueError(f"times and values differ in length ({len(cumulative_s)} vs {len(values)})")
    for t, v in zip(cumulative_s, values):
        if _reaches(v, target, higher_is_better):
            return float(t)
    return math.inf


# ---------------------------------------------------------------------------------- AlgoPerf scoring
def performance_ratios(times: Mapping[str, Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """``r_{s,w} = t_{s,w} / min_s t_{s,w}`` for every arm ``s`` and task ``w``.

    ``times[arm][task]`` is a time (or step count) to target, ``inf`` for a miss. A task that every arm
    misses gives ``inf`` for every arm (no one gets credit). Tasks missing for an arm count as misses.
    """
    tasks = sorted({w for per_arm in times.values() for w in per_arm})
    ratios: dict[str, dict[str, float]] = {s: {} for s in times}
    for w in tasks:
        col = {s: float(times[s].get(w, math.inf)) for s in times}
        for s, t in col.items():
            if t < 0 or math.isnan(t):
                raise ValueError(f"time to target must be >= 0 or inf, got {t} for {s!r} on {w!r}")
        best = min(col.values())
        for s, t in col.items():
            if math.isinf(best) or math.isinf(t):
                ratios[s][w] = math.inf
            elif best == 0.0:
                ratios[s][w] = 1.0 if t == 0.0 else math.inf
            else:
                ratios[s][w] = t / best
    return ratios


def performance_profile(ratios: Mapping[str, float], taus: Sequence[float]) -> list[float]:
    """AlgoPerf performance profile ``ρ_s(τ)``: the fraction of tasks with ``r_{s,w} <= τ``."""
    rs = list(ratios.values())
    if not rs:
        return [math.nan for _ in taus]
    return [sum(r <= tau for r in rs) / len(rs) for tau in taus]


def algoperf_score(ratios: Mapping[str, float], r_max: float = 4.0) -> float:
    """AlgoPerf benchmark score ``B_s = 1/(r_max - 1) ∫_1^{r_max} ρ_s(τ) dτ`` (1 = best on every task)."""
    if r_max <= 1:
        raise ValueError(f"r_max must exceed 1, got {r_max}")
    rs = list(ratios.values())
    if not rs:
        return math.nan
    return math.fsum(max(0.0, r_max - max(r, 1.0)) for r in rs) / ((r_max - 1.0) * len(rs))


def geometric_mean_speedup(
    times: Mapping[str, Mapping[str, float]], arm: str, baseline: str = "adamw", r_max: float = 4.0
) -> float:
    """Geometric mean over tasks of ``t_baseline / t_arm``.

    A miss counts as ``r = r_max`` (time = ``r_max`` × the best arm's time on that task) — our choice,
    stated in the report. Tasks that every arm misses carry no information and are skipped; ``nan`` when
    no task remains.
    """
    if arm not in times or baseline not in times:
        raise KeyError(f"need times for both {arm!r} and {baseline!r}")
    logs = []
    for w in sorted(set(times[arm]) | set(times[baseline])):
        col = [float(times[s].get(w, math.inf)) for s in times]
        best = min(col)
        if math.isinf(best) or best <= 0.0:
            continue

        def capped(t: float, best: float = best) -> float:
            return min(t, r_max * best)

        logs.append(math.log(capped(times[baseline].get(w, math.inf))) - math.log(capped(times[arm].get(w, math.inf))))
    if not logs:
        return math.nan
    return math.exp(math.fsum(logs) / len(logs))


def finite_values(values: Iterable[float | None]) -> list[float]:
    """The finite floats of ``values`` (``None``, NaN and inf dropped)."""
    return _finite(values)


def metric_error(value: float | None, higher_is_better: bool) -> float:
    """A final metric as an error, lower is better, for ratios to the best arm (Dolan–Moré profiles).

    Lower-is-better metrics (losses) are their own error; a higher-is-better metric is taken to be an accuracy
    in [0, 1] and its error is ``1 - value``. A missing or non-finite value (a diverged or failed run) is an
    infinite error: a miss.
    """
    if value is None or not math.isfinite(value):
        return math.inf
    return 1.0 - float(value) if higher_is_better else float(value)
