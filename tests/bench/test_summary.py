"""``andi-bench summary``: claim verdicts generated from published archives and the claims file, by each claim's
rule and with Holm over exactly its declared comparisons; the committed results page is what it generates."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from _bench_fakes import diverging_reporting_seed, fake_record

from andi.bench import cli
from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.paper_claims import CLAIMS_FILE, load_claims
from andi.bench.report.summary import BEGIN, END, claim_results, summary_block, update_page

ROOT = Path(__file__).resolve().parents[2]
PROTO = P.FairProtocol(
    name="summary-test",
    arms=tuple(a for a in P.CORE_ARMS if a.name in ("adamw", "muon", "andi")),
    ks=(-1, 0, 1),
    edge_extension=0,
    reporting_seeds=(1001, 1002, 1003, 1004),
    description="summary test protocol",
)


def _publish(results: Path, name: str, run_fn) -> None:
    """A sweep of PROTO on saddle, packed as ``results/name/records.tar.xz`` (as scripts/publish_results.sh does)."""
    work = results.parent / f"work-{name}"
    run_fair(PROTO, "saddle", Sweep(work, run_fn=run_fn), size="smoke", steps=30)
    (results / name).mkdir(parents=True)
    with tarfile.open(results / name / "records.tar.xz", "w:xz") as tar:
        for path in sorted(work.glob("*.json")):
            tar.add(path, arcname=path.name)


def _claims(tmp_path: Path, claims: list[dict]) -> Path:
    data = json.loads(CLAIMS_FILE.read_text())
    data["claims"] = claims
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(data))
    return path


def _cmp(arm: str, baseline: str, protocol: str = "summary-test") -> dict:
    return {"protocol": protocol, "task": "saddle", "size": "smoke", "arm": arm, "baseline": baseline,
            "metric": "loss", "direction": "lower"}  # fmt: skip


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("published") / "results"
    _publish(results, "plain", fake_record)
    return results


def test_each_rule_reads_its_comparisons(published: Path, tmp_path: Path) -> None:
    """The fake records put ANDI (0.22) below Muon (0.25) below AdamW (0.30) on every seed."""
    claims = load_claims(
        _claims(
            tmp_path,
            [
                {"id": "win", "rule": "better-than-all", "comparisons": [_cmp("andi", "adamw"), _cmp("andi", "muon")]},
                {"id": "lose", "rule": "better-than-all", "comparisons": [_cmp("adamw", "andi")]},
                {"id": "robust", "rule": "robust-not-worse", "comparisons": [_cmp("andi", "muon")]},
                {"id": "later", "rule": "better-than-all", "comparisons": [_cmp("andi", "muon", "study-v9")]},
            ],
        )
    )
    results = {c.claim.id: c for c in claim_results(published, claims)}
    assert results["win"].verdict == "held"
    assert results["lose"].verdict == "did not hold"
    assert results["robust"].verdict == "held"
    assert results["later"].verdict == "not run yet" and "study-v9" in results["later"].reason
    # Holm over the claim's own two comparisons: the larger p is unadjusted, the smaller doubled
    rows = results["win"].comparisons
    raw = sorted(r.test.pvalue for r in rows)
    assert sorted(r.holm_p for r in rows) == pytest.approx([min(1.0, 2 * raw[0]), max(2 * raw[0], raw[1])])
    block = "\n".join(summary_block(list(results.values()), claims))
    assert block.startswith(BEGIN) and block.endswith(END) and "**held**" in block and "not run yet" in block


def test_a_diverged_seed_breaks_robustness_and_counts_at_the_penalty(tmp_path: Path) -> None:
    results = tmp_path / "results"
    _publish(results, "diverging", diverging_reporting_seed("andi", 1003))
    claims = load_claims(
        _claims(tmp_path, [{"id": "robust", "rule": "robust-not-worse", "comparisons": [_cmp("andi", "muon")]}])
    )
    (claim,) = claim_results(results, claims)
    assert claim.verdict == "did not hold" and "1 reporting run(s)" in claim.reason
    (row,) = claim.comparisons
    assert row.arm.n_penalized == 1 and len(row.arm.scored()) == 4
    assert claims.penalty("saddle") in dict(row.arm.scored()).values()


def test_update_page_replaces_only_the_generated_block(tmp_path: Path) -> None:
    page = tmp_path / "index.md"
    page.write_text(f"# Results\n\nprose before\n\n{BEGIN}\nold table\n{END}\n\nprose after\n")
    old, new = update_page(page, [BEGIN, "new table", END])
    assert new == f"# Results\n\nprose before\n\n{BEGIN}\nnew table\n{END}\n\nprose after\n" and old != new


def test_the_committed_results_page_is_what_the_records_and_the_claims_file_give(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)
    assert cli.main(["summary", "--check"]) == 0


def test_summary_check_through_the_real_entry_point_fails_on_a_stale_page(tmp_path: Path, published: Path) -> None:
    page = tmp_path / "index.md"
    page.write_text(f"{BEGIN}\nhand-edited\n{END}\n")
    argv = [sys.executable, "-m", "andi.bench", "summary", "--results", str(published), "--page", str(page)]
    stale = subprocess.run([*argv, "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "is not what the records give" in stale.stdout
    assert subprocess.run(argv, capture_output=True, text=True).returncode == 0
    assert subprocess.run([*argv, "--check"], capture_output=True, text=True).returncode == 0
    assert "hand-edited" not in page.read_text()
