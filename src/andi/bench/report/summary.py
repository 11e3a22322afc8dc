"""``andi-bench summary``: the verdict of every declared paper claim, generated from the published records.

For each claim of the claims file (:mod:`andi.bench.paper_claims`) and each of its comparisons, the records come
from the published archive (``<results>/<name>/records.tar.xz``) whose manifests hold the comparison's protocol,
task and size; the two arms are analysed as in the report (:func:`~andi.bench.report.analysis.analyze_fair`: a
diverged or failed reporting run counts at the task's declared penalty) and compared two-sided (paired t over the
common seeds). Holm–Bonferroni runs over the claim's own comparisons — its declared family, nothing else — and the
claim's rule turns the comparisons into *held*, *did not hold* or *inconclusive* (*not run yet* while a protocol has
no published records).

The result is a markdown block that :func:`update_page` writes between two marker lines of the results page
(``docs/results/index.md``), leaving the hand-written prose around it alone; ``andi-bench summary --check`` says
whether the committed page is what the committed records give.
"""

from __future__ import annotations

import contextlib
import math
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from andi.bench.execution.store import ResultStore
from andi.bench.paper_claims import Claim, Claims, load_claims
from andi.bench.paper_claims import Comparison as Declared
from andi.bench.report import stats
from andi.bench.report.analysis import ArmResult, Comparison, TaskResult, _Records, analyze_fair, compare_arms
from andi.bench.report.archive import extract_results
from andi.bench.report.tables import fmt, fmt_mean_std

__all__ = ["BEGIN", "END", "ClaimResult", "ComparisonResult", "claim_results", "summary_block", "update_page"]

#: The marker lines of the generated block in the results page.
BEGIN = "<!-- andi-bench summary: begin (generated from the published records and the claims file; do not edit) -->"
END = "<!-- andi-bench summary: end -->"

_SIZES = {"cpu": "CPU size", "full": "the paper's size", "smoke": "smoke size"}


@dataclass
class ComparisonResult:
    """One declared comparison, tested (``test`` is ``None`` when the records do not allow it)."""

    declared: Declared
    source: str | None  # the published folder the records came from; None: not run yet
    task: TaskResult | None
    arm: ArmResult | None
    baseline: ArmResult | None
    test: Comparison | None
    holm_p: float = math.nan
    significant: bool = False

    @property
    def direction(self) -> str:
        """``better``, ``worse`` (for the arm, in the declared direction) or ``none`` (not significant)."""
        if self.test is None or not self.significant:
            return "none"
        lower = self.test.mean_diff < 0
        return "better" if lower == (self.declared.direction == "lower") else "worse"


@dataclass
class ClaimResult:
    claim: Claim
    comparisons: list[ComparisonResult]
    verdict: str  # "held", "did not hold", "inconclusive" or "not run yet"
    reason: str


@contextlib.contextmanager
def _published(results: Path) -> Iterator[dict[tuple[str, str, str], tuple[str, dict, _Records]]]:
    """Every published archive under ``results`` extracted into a temporary folder, its manifests by
    ``(protocol, task, size)`` (the first variant of each)."""
    found: dict[tuple[str, str, str], tuple[str, dict, _Records]] = {}
    with tempfile.TemporaryDirectory(prefix="andi-summary-") as tmp:
        for i, archive in enumerate(sorted(results.glob("*/records.tar.xz"))):
            name = archive.parent.name
            folder = extract_results(archive, Path(tmp) / str(i))
            store = ResultStore(folder, quarantine=False, shown_as=str(archive), corrupt_note="left out")
            records = _Records(store)
            for manifest in store.manifests():
                if manifest.get("kind") == "fair":
                    found.setdefault(
                        (manifest["protocol"], manifest["task"], manifest["size"]), (name, manifest, records)
                    )
        yield found


def _rule_verdict(claim: Claim, rows: Sequence[ComparisonResult]) -> tuple[str, str]:
    """The claim's verdict and why, by its rule (the wording is in the claims file)."""
    if any(r.source is None for r in rows):
        missing = sorted({r.declared.protocol for r in rows if r.source is None})
        return "not run yet", f"no published records of {', '.join(missing)}"
    if any(r.test is None for r in rows):
        return "inconclusive", "a comparison has fewer than two results per arm"
    worse = [r for r in rows if r.direction == "worse"]
    if claim.rule == "better-than-all":
        if worse:
            return "did not hold", "significantly worse than " + _names(worse)
        if all(r.direction == "better" for r in rows):
            return "held", "significantly better than " + _names(rows)
        return "inconclusive", "not significantly different from " + _names([r for r in rows if r.direction == "none"])
    if claim.rule == "robust-not-worse":
        diverged = sum(r.arm.n_penalized for r in rows if r.arm is not None)
        if diverged:
            return "did not hold", f"{diverged} reporting run(s) of the arm diverged or failed"
        if worse:
            return "did not hold", "significantly worse than " + _names(worse)
        if all(r.direction == "better" or _mean_at_least_as_good(r) for r in rows):
            return "held", "converged on every seed, not worse than " + _names(rows)
        return "inconclusive", "no significant difference, with a worse mean than " + _names(rows)
    if claim.rule == "parity-at-lower-cost":
        margin = claim.margin or 0.0
        if worse:
            return "did not hold", "significantly worse than " + _names(worse)
        if any(r.direction == "better" for r in rows):
            return "inconclusive", "significantly better than " + _names([r for r in rows if r.direction == "better"])
        wide = [r for r in rows if not _within(r.test.interval(), margin)]  # type: ignore[union-attr]
        if wide:
            return "inconclusive", f"the 95 % CI leaves ±{fmt(margin)} against " + _names(wide)
        dearer = [r for r in rows if not r.arm.step_time_s < r.baseline.step_time_s]  # type: ignore[union-attr]
        if dearer:
            return "inconclusive", "its optimizer step is not cheaper than " + _names(dearer)
        return "held", f"within ±{fmt(margin)} of " + _names(rows) + " at a cheaper step"
    raise ValueError(f"unknown rule {claim.rule!r}")


def _names(rows: Sequence[ComparisonResult]) -> str:
    return " and ".join(r.baseline.label if r.baseline is not None else r.declared.baseline for r in rows)


def _mean_at_least_as_good(r: ComparisonResult) -> bool:
    a, b = r.arm.summary.mean, r.baseline.summary.mean  # type: ignore[union-attr]
    return a <= b if r.declared.direction == "lower" else a >= b


def _within(interval: tuple[float, float], margin: float) -> bool:
    low, high = interval
    return math.isfinite(low) and math.isfinite(high) and -margin <= low and high <= margin


def claim_results(results: str | Path, claims: Claims | None = None) -> list[ClaimResult]:
    """Every declared claim tested on the published records under ``results`` (see the module docstring)."""
    claims = claims or load_claims()
    out = []
    with _published(Path(results)) as published:
        analysed: dict[tuple[str, str, str], TaskResult] = {}
        for claim in claims.claims:
            rows = []
            for d in claim.comparisons:
                key = (d.protocol, d.task, d.size)
                if key not in published:
                    rows.append(ComparisonResult(d, None, None, None, None, None))
                    continue
                name, manifest, records = published[key]
                if key not in analysed:
                    analysed[key] = analyze_fair(manifest, records)
                t = analysed[key]
                arms = {a.arm: a for a in t.arms}
                rows.append(
                    ComparisonResult(
                        d, name, t, arms.get(d.arm), arms.get(d.baseline), compare_arms(t, d.arm, d.baseline)
                    )
                )
            tested = [r for r in rows if r.test is not None]
            adjusted = stats.holm_bonferroni([r.test.pvalue for r in tested], claims.alpha)  # type: ignore[union-attr]
            for r, (p, reject) in zip(tested, adjusted):
                r.holm_p, r.significant = p, reject
            verdict, reason = _rule_verdict(claim, rows)
            out.append(ClaimResult(claim, rows, verdict, reason))
    return out


def _arm_cell(a: ArmResult | None) -> str:
    if a is None:
        return "—"
    n = len(a.scored())
    diverged = f", {a.n_penalized} diverged" if a.n_penalized else ""
    return f"{a.label} {fmt_mean_std(a.summary)} (n = {n}{diverged})"


def _diff_cell(r: ComparisonResult) -> str:
    if r.test is None:
        return "—"
    low, high = r.test.interval()
    ci = "" if math.isnan(low) else f" [{fmt(low, 3)}, {fmt(high, 3)}]"
    return f"{fmt(r.test.mean_diff, 3)}{ci}"


def summary_block(results: Sequence[ClaimResult], claims: Claims | None = None) -> list[str]:
    """The generated markdown: one row per declared comparison, the claim's verdict on its first row."""
    claims = claims or load_claims()
    lines = [
        BEGIN,
        "",
        "| claim | tested on | arm | baseline | arm − baseline [95 % CI] | Holm p | comparison | verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for c in results:
        for i, r in enumerate(c.comparisons):
            d = r.declared
            where = f"`{d.task}` at {_SIZES.get(d.size, d.size)} (`{d.protocol}`" + (
                f", [page]({r.source}/report.md))" if r.source else ", not run yet)"
            )
            result = {"better": "better", "worse": "worse", "none": "no significant difference"}[r.direction]
            lines.append(
                "| "
                + " | ".join(
                    [
                        c.claim.paper if i == 0 else "",
                        where,
                        _arm_cell(r.arm),
                        _arm_cell(r.baseline),
                        _diff_cell(r),
                        fmt(r.holm_p, 2) if r.test is not None else "—",
                        result if r.test is not None else "—",
                        f"**{c.verdict}**: {c.reason}" if i == 0 else "",
                    ]
                )
                + " |"
            )
    lines += [
        "",
        f"Final test metric, mean ± std over the reporting seeds (a diverged or failed run counts at its task's "
        f"declared penalty). Two-sided paired t over the seeds both arms have; Holm–Bonferroni over each claim's "
        f"declared comparisons only, α = {fmt(claims.alpha)}; the verdict follows the claim's rule. Claims file "
        f"`src/andi/bench/paper_claims.json`, SHA-256 `{claims.sha256[:12]}`. Generated by `andi-bench summary`.",
        "",
        END,
    ]
    return lines


def update_page(page: str | Path, block: Sequence[str]) -> tuple[str, str]:
    """``(old text, new text)`` of ``page`` with the generated block replaced (appended when the markers are
    absent); the caller writes or compares."""
    path = Path(page)
    old = path.read_text() if path.exists() else ""
    text = "\n".join(block)
    if BEGIN in old and END in old:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        new = head + text + tail
    else:
        new = old + ("\n" if old and not old.endswith("\n") else "") + ("\n" if old else "") + text + "\n"
    return old, new
