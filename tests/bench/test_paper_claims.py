"""The claims file: declared comparisons that exist, a hash in every manifest and a first-line warning when the file
changed after the runs, and diverged reporting runs counted at the declared penalty instead of vanishing."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from _bench_fakes import CountingRun, diverging_reporting_seed

from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.paper_claims import CLAIMS_FILE, claims_sha256, hash_note, load_claims
from andi.bench.report import generate_report

PROTO = P.FairProtocol(
    name="claims-test",
    arms=tuple(a for a in P.CORE_ARMS if a.name in ("adamw", "andi")),
    ks=(-1, 0, 1),
    edge_extension=0,
    reporting_seeds=(1001, 1002, 1003),
    description="claims-file test protocol",
)


def test_every_declared_comparison_names_a_protocol_task_and_arms_that_exist() -> None:
    claims = load_claims()
    assert claims.sha256 == claims_sha256()
    for claim in claims.claims:
        for c in claim.comparisons:
            protocol = P.get_protocol(c.protocol)
            assert isinstance(protocol, P.FairProtocol), claim.id
            names = {a.name for a in protocol.arms}
            assert c.task in protocol.tasks and {c.arm, c.baseline} <= names, (claim.id, c)
            assert c.size in ("cpu", "full"), (claim.id, c)
            assert claims.penalty(c.task) is not None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d.update(alpha=2.0), "alpha"),
        (lambda d: d["claims"][0].update(rule="most-vibes"), "rule must be one of"),
        (lambda d: d["claims"][0]["comparisons"][0].update(direction="sideways"), "direction"),
        (lambda d: d["claims"][0]["comparisons"].append(d["claims"][0]["comparisons"][0]), "listed twice"),
        (lambda d: d["penalties"].pop("saddle"), "no penalty declared for task 'saddle'"),
        (lambda d: d["claims"][1].pop("margin"), "positive margin"),
    ],
)
def test_a_malformed_claims_file_is_refused_naming_the_file_and_the_fault(tmp_path: Path, edit, message: str) -> None:
    data = json.loads(CLAIMS_FILE.read_text())
    edit(data)
    path = tmp_path / "claims.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as err:
        load_claims(path)
    assert str(path) in str(err.value)


def test_a_diverged_reporting_seed_stays_in_n_the_mean_and_the_tests_at_the_penalty(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, run_fn=diverging_reporting_seed("andi", 1002))
    (manifest,) = [run_fair(PROTO, "saddle", sweep, size="smoke", steps=30)]
    assert manifest["claims_sha256"] == claims_sha256()
    text = generate_report(tmp_path, figures=False).read_text()
    penalty = load_claims().penalty("saddle")
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi")
    finals = []
    for key in andi["reporting"]:
        record = json.loads((tmp_path / f"{key}.json").read_text())
        finals.append(record["final"]["value"] if record["status"] == "ok" else penalty)
    assert finals.count(penalty) == 1
    row = next(line for line in text.splitlines() if line.startswith("| ANDI |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[4] == "3/3, 1/3 diverged"
    mean, std = (float(x) for x in cells[3].split(" ± "))
    assert mean == pytest.approx(statistics.mean(finals), rel=1e-3)
    assert std == pytest.approx(statistics.stdev(finals), rel=1e-3)
    assert "declared penalty" in text
    assert text.startswith("# andi-bench report")  # made under the current claims file: no warning


def test_a_report_over_records_made_under_another_claims_file_says_so_first(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    run_fair(PROTO, "saddle", sweep, size="smoke", steps=30)
    (path,) = tmp_path.glob("manifest-*.json")
    manifest = json.loads(path.read_text())
    manifest["claims_sha256"] = "0" * 64
    path.write_text(json.dumps(manifest))
    first = generate_report(tmp_path, figures=False).read_text().splitlines()[0]
    assert first.startswith("**Warning: these records were made under another version of the claims file**")
    assert "000000000000" in first and claims_sha256()[:12] in first


def test_records_from_before_the_claims_file_are_not_flagged() -> None:
    assert hash_note([None, None]) is None
    assert hash_note([claims_sha256()]) is None
    assert hash_note(["f" * 64, None]) is not None


def test_toys_get_their_own_profile_and_a_deterministic_task_no_tests(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    for task in ("saddle", "rosenbrock", "quadratic"):
        run_fair(PROTO, task, sweep, size="smoke", steps=30)
    text = generate_report(tmp_path, figures=False).read_text()
    assert "### Across the real tasks (the toy landscapes have their own profile below) (1 task(s))" in text
    assert "### Across the toy landscapes (2 task(s))" in text
    rosenbrock = text.split("### rosenbrock", 1)[1].split("### ", 1)[0]
    assert "Tests n/a: `rosenbrock` is deterministic" in rosenbrock and "paired t" not in rosenbrock
    head_to_head = text.split("(head to head)", 1)[1].split("### ", 1)[0]
    assert "| rosenbrock |" not in head_to_head and "| quadratic |" in head_to_head
    assert "n/a on `rosenbrock`" in head_to_head
