"""Two-sided verdicts: a clear loss reads "worse than", a clear win "better than", a tie "no significant difference".

The regression case is the fair run on ``saddle`` at CPU size (5 seeds) whose report called a clear loss a tie:
ANDI's test loss 0.0293 ± 0.0031 against Muon's 0.0143 ± 0.0002 (Welch two-sided p = 0.0004), lower is better.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

import pytest
from _bench_fakes import SEEDS, arm_result, fake_record, sample

from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.report import ArmResult, Comparison, apply_holm, generate_report, stats
from andi.bench.report.analysis import _compare

scipy_stats = pytest.importorskip("scipy.stats")

ANDI_LOSS = sample(0.0293, 0.0031)
MUON_LOSS = sample(0.0143, 0.0002)


def _verdicts(arms: list[ArmResult], higher_is_better: bool = False) -> dict[str, Comparison]:
    comparisons = _compare("saddle", arms, higher_is_better)
    holder = type("T", (), {"comparisons": comparisons})()
    apply_holm([holder])
    return {c.arm: c for c in comparisons}


def test_the_regression_numbers() -> None:
    assert statistics.mean(ANDI_LOSS) == pytest.approx(0.0293) and statistics.stdev(ANDI_LOSS) == pytest.approx(0.0031)
    assert statistics.mean(MUON_LOSS) == pytest.approx(0.0143) and statistics.stdev(MUON_LOSS) == pytest.approx(0.0002)
    welch = scipy_stats.ttest_ind(ANDI_LOSS, MUON_LOSS, equal_var=False)
    assert round(welch.pvalue, 4) == 0.0004  # as in the run that printed "no significant difference"


def test_clear_loss_is_worse_with_welch_when_seeds_do_not_pair() -> None:
    other_seeds = (2001, 2002, 2003, 2004, 2005)
    c = _verdicts([arm_result("andi", "ANDI", ANDI_LOSS), arm_result("muon", "Muon", MUON_LOSS, other_seeds)])
    ref = scipy_stats.ttest_ind(ANDI_LOSS, MUON_LOSS, equal_var=False)  # two-sided
    assert c["andi"].paired is None and c["andi"].test_name == "Welch"
    assert c["andi"].pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert c["andi"].holm_p == pytest.approx(ref.pvalue, rel=1e-8)  # A vs B and B vs A: one hypothesis
    assert c["andi"].family_size == 1
    assert c["andi"].verdict == "worse than Muon"
    assert c["muon"].verdict == "better than ANDI"


def test_clear_loss_is_worse_with_the_paired_test_when_seeds_pair() -> None:
    c = _verdicts([arm_result("andi", "ANDI", ANDI_LOSS), arm_result("muon", "Muon", MUON_LOSS)])
    ref = scipy_stats.ttest_rel(ANDI_LOSS, MUON_LOSS)  # two-sided
    assert c["andi"].test_name == "paired t" and c["andi"].pvalue == pytest.approx(ref.pvalue, rel=1e-8)
    assert c["andi"].mean_diff == pytest.approx(0.0293 - 0.0143)
    assert c["andi"].verdict == "worse than Muon" and c["muon"].verdict == "better than ANDI"


def test_symmetric_case_is_better() -> None:
    c = _verdicts([arm_result("andi", "ANDI", MUON_LOSS), arm_result("muon", "Muon", ANDI_LOSS)])
    assert c["andi"].verdict == "better than Muon" and c["muon"].verdict == "worse than ANDI"


def test_direction_follows_higher_is_better() -> None:
    accuracy_andi, accuracy_muon = [1 - v for v in ANDI_LOSS], [1 - v for v in MUON_LOSS]
    c = _verdicts(
        [arm_result("andi", "ANDI", accuracy_andi), arm_result("muon", "Muon", accuracy_muon)], higher_is_better=True
    )
    assert c["andi"].verdict == "worse than Muon" and c["muon"].verdict == "better than ANDI"
    assert stats.verdict_direction(0.1, True, higher_is_better=True) == "better"
    assert stats.verdict_direction(0.1, True, higher_is_better=False) == "worse"
    assert stats.verdict_direction(-0.1, False, higher_is_better=False) == "none"
    assert stats.verdict_direction(math.nan, True, higher_is_better=False) == "none"


def test_equal_distributions_are_no_significant_difference() -> None:
    shifted = MUON_LOSS[1:] + MUON_LOSS[:1]  # the same values on other seeds
    c = _verdicts([arm_result("andi", "ANDI", shifted), arm_result("muon", "Muon", MUON_LOSS)])
    assert c["andi"].verdict == c["muon"].verdict == "no significant difference"
    assert c["andi"].pvalue == pytest.approx(scipy_stats.ttest_rel(shifted, MUON_LOSS).pvalue, rel=1e-8)


def test_holm_family_counts_each_pair_once_over_the_protocol_run() -> None:
    adamw = sample(0.05, 0.003)
    c = _verdicts(
        [
            arm_result("adamw", "AdamW", adamw),
            arm_result("muon", "Muon", MUON_LOSS),
            arm_result("andi", "ANDI", ANDI_LOSS),
        ]
    )
    # AdamW vs Muon; Muon vs ANDI and ANDI vs Muon are one pair: a family of two
    assert (c["adamw"].other, c["muon"].other, c["andi"].other) == ("muon", "andi", "muon")
    assert {x.family_size for x in c.values()} == {2}
    p_adamw = scipy_stats.ttest_rel(adamw, MUON_LOSS).pvalue
    p_andi = scipy_stats.ttest_rel(ANDI_LOSS, MUON_LOSS).pvalue
    low, high = sorted((p_adamw, p_andi))
    holm = {low: min(1.0, 2 * low), high: min(1.0, max(2 * low, high))}  # Holm's step-down, m = 2
    assert c["adamw"].holm_p == pytest.approx(holm[p_adamw], rel=1e-8)
    assert c["andi"].holm_p == c["muon"].holm_p == pytest.approx(holm[p_andi], rel=1e-8)


# ========================================================================================== whole report
def _run_fn(values: dict[str, list[float]]) -> Any:
    """A fake ``run``: synthetic records whose reporting runs end at the given test losses, per optimizer."""

    def run(config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
        record = fake_record(config)
        if config.eval_split == "test" and config.optimizer in values and record["status"] == "ok":
            v = values[config.optimizer][SEEDS.index(config.init_seed)]
            record["eval"]["loss"][-1] = v
            record["final"]["value"] = v
            record["final"]["metrics"] = {"loss": v}
        return record

    return run


PROTO = P.FairProtocol(
    name="verdicts",
    arms=P.CORE_ARMS,
    ks=(-1, 0, 1),
    edge_extension=0,
    reporting_seeds=SEEDS,
    description="two-sided verdict test protocol",
)


def _report(tmp_path: Path, andi: list[float], muon: list[float]) -> str:
    sweep = Sweep(tmp_path, run_fn=_run_fn({"andi": andi, "muon": muon, "adamw": sample(0.05, 0.003)}))
    run_fair(PROTO, "saddle", sweep, size="smoke", steps=60)
    return generate_report(tmp_path, figures=False).read_text()


def _andi_row(md: str) -> list[str]:
    section = md.split("| arm | best other arm |", 1)[1]
    line = next(ln for ln in section.splitlines() if ln.startswith("| ANDI |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.parametrize(
    ("andi", "muon", "verdict"),
    [
        (ANDI_LOSS, MUON_LOSS, "worse than Muon"),
        (MUON_LOSS, ANDI_LOSS, "better than Muon"),
        (MUON_LOSS[1:] + MUON_LOSS[:1], MUON_LOSS, "no significant difference"),
    ],
    ids=["loss", "win", "tie"],
)
def test_report_prints_two_sided_verdicts(tmp_path: Path, andi: list[float], muon: list[float], verdict: str) -> None:
    md = _report(tmp_path, andi, muon)
    row = _andi_row(md)
    assert row[1] == "Muon" and row[-1] == verdict  # the table
    summary = next(ln for ln in md.splitlines() if ln.startswith("**ANDI vs the best other arm (Muon)**"))
    assert f"**{verdict}**" in summary  # ANDI's summary line
    verdicts = next(ln for ln in md.splitlines() if ln.startswith("- **saddle**"))
    assert f"ANDI: {verdict}" in verdicts  # the verdict summary
    assert "beats" not in md and "one-sided" not in md
