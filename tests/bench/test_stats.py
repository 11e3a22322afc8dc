"""Known-answer tests for andi.bench.report.stats, checked against scipy.stats where it has an equivalent."""

from __future__ import annotations

import math

import pytest

from andi.bench.report import stats

scipy_stats = pytest.importorskip("scipy.stats")

SAMPLES = [
    ([0.91, 0.93, 0.90, 0.95, 0.92], [0.89, 0.90, 0.88, 0.91, 0.87]),
    ([1.52, 1.49, 1.55], [1.61, 1.58, 1.70, 1.66]),
    ([3.0, 3.5, 2.5, 3.2], [3.1, 3.4, 2.9, 3.3]),
]


@pytest.mark.parametrize("df", [1.0, 2.0, 2.7, 4.0, 9.5, 30.0, 200.0])
@pytest.mark.parametrize("t", [-12.0, -3.1, -0.4, 0.0, 0.25, 1.7, 5.5, 40.0])
def test_t_cdf_and_sf_match_scipy(t: float, df: float) -> None:
    assert stats.t_cdf(t, df) == pytest.approx(scipy_stats.t.cdf(t, df), rel=1e-9, abs=1e-13)
    assert stats.t_sf(t, df) == pytest.approx(scipy_stats.t.sf(t, df), rel=1e-9, abs=1e-13)


@pytest.mark.parametrize("df", [1.0, 2.0, 3.3, 4.0, 10.0, 57.0])
@pytest.mark.parametrize("q", [0.001, 0.025, 0.3, 0.5, 0.9, 0.975, 0.9999])
def test_t_ppf_matches_scipy(q: float, df: float) -> None:
    assert stats.t_ppf(q, df) == pytest.approx(scipy_stats.t.ppf(q, df), rel=1e-9, abs=1e-12)


def test_t_edges_and_errors() -> None:
    assert stats.t_ppf(0.0, 3) == -math.inf and stats.t_ppf(1.0, 3) == math.inf
    assert stats.t_cdf(math.inf, 3) == 1.0 and stats.t_sf(math.inf, 3) == 0.0
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats.t_cdf(1.0, 0.0)
    with pytest.raises(ValueError, match="quantile"):
        stats.t_ppf(1.5, 3)


def test_summary_matches_numpy_and_scipy_interval() -> None:
    xs = [2.0, 4.0, 4.5, 5.0, 7.25]
    s = stats.summarize(xs)
    mean = sum(xs) / len(xs)
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    lo, hi = scipy_stats.t.interval(0.95, len(xs) - 1, loc=mean, scale=std / math.sqrt(len(xs)))
    assert (s.n, s.mean, s.std) == (5, pytest.approx(mean), pytest.approx(std))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo, rel=1e-9), pytest.approx(hi, rel=1e-9))
    one = stats.summarize([3.0])
    assert one.mean == 3.0 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([]).n == 0


@pytest.mark.parametrize(("a", "b"), SAMPLES)
@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_welch_matches_scipy(a: list[float], b: list[float], alternative: str) -> None:
    ours = stats.welch_ttest(a, b, alternative=alternative)
    ref = scipy_stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.df == pytest.approx(ref.df, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-8)


@pytest.mark.parametrize(("a", "b"), [(x, y[: len(x)]) for x, y in SAMPLES])
@pytest.mark.parametrize("alternative", ["two-sided", "less", "greater"])
def test_paired_matches_scipy(a: list[float], b: list[float], alternative: str) -> None:
    ours = stats.paired_ttest(a, b, alternative=alternative)
    ref = scipy_stats.ttest_rel(a, b, alternative=alternative)
    assert ours.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert ours.pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert ours.df == len(a) - 1


def test_ttest_degenerate_and_invalid_inputs() -> None:
    assert stats.welch_ttest([1.0, 1.0], [2.0, 2.0], "less").pvalue == 0.0
    assert math.isnan(stats.paired_ttest([1.0, 2.0], [1.0, 2.0]).pvalue)
    with pytest.raises(ValueError, match="at least 2"):
        stats.welch_ttest([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="equal length"):
        stats.paired_ttest([1.0, 2.0], [1.0, 2.0, 3.0])


def test_holm_known_answer() -> None:
    # Hand computation: sorted p = 0.01, 0.02, 0.03, 0.04 (m = 4) -> 0.04, 0.06, 0.06, 0.06 (monotone).
    res = stats.holm_bonferroni([0.03, 0.01, 0.04, 0.02], alpha=0.05)
    assert [p for p, _ in res] == pytest.approx([0.06, 0.04, 0.06, 0.06])
    assert [r for _, r in res] == [False, True, False, False]
    # NaN counts as 1; adjusted values never exceed 1.
    res = stats.holm_bonferroni([float("nan"), 0.001, 0.6], alpha=0.05)
    assert [p for p, _ in res] == pytest.approx([1.0, 0.003, 1.0])


def test_time_and_steps_to_target_respect_direction() -> None:
    steps, times = [0, 100, 200, 300], [0.0, 1.5, 3.0, 4.5]
    loss = [2.0, 1.2, 0.9, 0.95]
    acc = [0.1, 0.5, 0.8, 0.82]
    assert stats.steps_to_target(steps, loss, 1.0, higher_is_better=False) == 200
    assert stats.time_to_target(times, loss, 1.0, higher_is_better=False) == 3.0
    assert stats.steps_to_target(steps, acc, 0.8, higher_is_better=True) == 200
    assert stats.steps_to_target(steps, loss, 0.5, higher_is_better=False) == math.inf
    assert stats.steps_to_target(steps, [None, float("nan"), 0.1, 0.1], 1.0, False) == 200
    with pytest.raises(ValueError, match="length"):
        stats.time_to_target([0.0], loss, 1.0, False)


def test_median_with_misses() -> None:
    assert stats.median([3.0, math.inf, 1.0]) == 3.0
    assert stats.median([1.0, math.inf]) == math.inf
    assert stats.median([4.0, 2.0]) == 3.0
    assert math.isnan(stats.median([]))


def test_lower_median_and_target_reach_half_of_the_seeds() -> None:
    assert stats.lower_median([5.0, 1.0, 3.0]) == 3.0  # odd: the median
    assert stats.lower_median([4.0, math.inf]) == 4.0  # even: half of the seeds reached it by 4
    assert stats.lower_median([1.0, 2.0, math.inf, math.inf]) == 2.0
    assert math.isnan(stats.lower_median([]))
    assert stats.target_value([0.3, 0.1, 0.2], higher_is_better=False) == 0.2
    assert stats.target_value([0.3, 0.1], higher_is_better=False) == 0.3  # the worse middle value
    assert stats.target_value([0.9, 0.8], higher_is_better=True) == 0.8
    assert stats.target_value([0.9, None, 0.7], higher_is_better=True) == 0.7  # a failure is the worst
    assert stats.target_value([None, None], higher_is_better=False) == math.inf
    # Both reference seeds reach a 2-seed target, so the reference never "misses" its own target.
    finals = [0.31, 0.35]
    target = stats.target_value(finals, higher_is_better=False)
    assert all(stats.steps_to_target([0, 10], [1.0, f], target, False) == 10 for f in finals)


def test_algoperf_ratios_profile_and_score() -> None:
    times = {
        "a": {"t1": 10.0, "t2": 30.0, "t3": math.inf},
        "b": {"t1": 20.0, "t2": 15.0, "t3": 8.0},
        "c": {"t1": 50.0, "t2": math.inf},  # t3 missing: a miss
    }
    r = stats.performance_ratios(times)
    assert r["a"] == {"t1": 1.0, "t2": 2.0, "t3": math.inf}
    assert r["b"] == {"t1": 2.0, "t2": 1.0, "t3": 1.0}
    assert r["c"] == {"t1": 5.0, "t2": math.inf, "t3": math.inf}
    assert stats.performance_profile(r["a"], [1.0, 1.9, 2.0, 4.0]) == pytest.approx([1 / 3, 1 / 3, 2 / 3, 2 / 3])
    # Closed form vs a fine numerical integral of rho over [1, 4].
    for arm in r:
        n = 30000
        taus = [1.0 + 3.0 * (i + 0.5) / n for i in range(n)]
        numeric = sum(stats.performance_profile(r[arm], taus)) / n
        assert stats.algoperf_score(r[arm], r_max=4.0) == pytest.approx(numeric, abs=1e-4)
    assert stats.algoperf_score(r["a"]) == pytest.approx((1.0 + 2 / 3 + 0.0) / 3)
    assert stats.algoperf_score({"t": 1.0}) == 1.0
    # A task every arm misses gives nobody credit.
    assert stats.performance_ratios({"a": {"t": math.inf}, "b": {"t": math.inf}})["a"]["t"] == math.inf


def test_geometric_mean_speedup_counts_misses_as_r_max() -> None:
    times = {"adamw": {"t1": 10.0, "t2": 20.0}, "x": {"t1": 5.0, "t2": math.inf}}
    # t1: 10/5 = 2; t2: x misses -> time 4 * best(20) = 80 -> 20/80 = 0.25; geomean sqrt(0.5).
    assert stats.geometric_mean_speedup(times, "x", "adamw", r_max=4.0) == pytest.approx(math.sqrt(0.5))
    assert stats.geometric_mean_speedup(times, "adamw", "adamw") == pytest.approx(1.0)
    all_miss = {"adamw": {"t": math.inf}, "x": {"t": math.inf}}
    assert math.isnan(stats.geometric_mean_speedup(all_miss, "x"))
