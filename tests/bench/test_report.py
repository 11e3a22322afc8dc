"""``andi-bench report`` on a synthetic results directory: markdown tables that match the JSON, valid PNGs."""

from __future__ import annotations

import json
import logging
import math
import os
import stat
import statistics
from pathlib import Path

import pytest
from _bench_fakes import CountingRun

from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair, run_replay
from andi.bench.report import fmt, fmt_bytes, generate_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROTO = P.FairProtocol(
    name="synthetic",
    arms=P.CORE_ARMS + P.FAMILY_ARMS[:1],
    ks=(-2, -1, 0, 1, 2, 3),
    edge_extension=2,
    reporting_seeds=(1001, 1002, 1003),
    description="synthetic test protocol",
)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    sweep = Sweep(root, run_fn=CountingRun())
    for task in ("saddle", "gpt"):
        run_fair(PROTO, task, sweep, size="smoke", steps=60)
    for task in ("saddle", "cifar", "gpt"):
        run_replay(P.REPLAY, task, sweep, size="smoke", steps=100)
    generate_report(root)
    return root


def _rows(md: str, heading: str) -> dict[str, list[str]]:
    """Table rows (by first cell) of the first table after ``heading``."""
    section = md.split(heading, 1)[1]
    rows = {}
    started = False
    for line in section.splitlines():
        if line.startswith("|"):
            started = True
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells
        elif started:
            break
    return rows


def _load(root: Path, key: str) -> dict:
    return json.loads((root / f"{key}.json").read_text())


def test_report_files_and_pngs(results: Path) -> None:
    md = (results / "report.md").read_text()
    assert md.startswith("# andi-bench report")
    pngs = sorted((results / "figures").glob("*.png"))
    names = {p.name for p in pngs}
    assert {
        "synthetic-smoke-saddle-curves.png",
        "synthetic-smoke-gpt-lr.png",
        "synthetic-smoke-figure1.png",
        "synthetic-smoke-profile.png",
        "replay-smoke-figure1.png",
        "replay-smoke-cifar-lr.png",
    } <= names
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, p.name
        assert f"](figures/{p.name})" in md  # every figure is linked from the report


@pytest.mark.parametrize("task", ["saddle", "gpt"])
def test_fair_table_matches_json(results: Path, task: str) -> None:
    md = (results / "report.md").read_text()
    manifest = json.loads((results / f"manifest-synthetic-{task}-smoke.json").read_text())
    rows = _rows(md, f"### {task}\n")
    adamw_entry = next(a for a in manifest["arms"] if a["arm"] == "adamw")
    adamw_finals = [_load(results, k)["final"]["value"] for k in adamw_entry["reporting"]]
    target = statistics.median(adamw_finals)
    assert f"value) = {fmt(target)}." in md.split(f"### {task}\n", 1)[1]
    medians = {}
    for entry in manifest["arms"]:
        recs = [_load(results, k) for k in entry["reporting"]]
        finals = [r["final"]["value"] for r in recs]
        row = rows[entry["label"]]
        # chosen lr and the trial count (grid + edge extension) come from the tuning records
        tuning = {lr: _load(results, t["keys"][0])["final"]["value"] for t in entry["tuning"] for lr in [t["lr"]]}
        best_lr = min((lr for lr, v in tuning.items() if v is not None), key=lambda lr: tuning[lr])
        assert row[1].split(" ")[0] == fmt(best_lr)
        assert int(row[2]) == len(entry["tuning"]) == (6 + (2 if entry["edge_extended"] else 0))
        assert ("edge-ext." in row[1]) == entry["edge_extended"]
        assert row[3] == f"{fmt(statistics.mean(finals))} ± {fmt(statistics.stdev(finals))}"
        assert row[4] == f"{len(finals)}/{len(finals)}, 0/{len(finals)} diverged"
        steps_tt, time_tt = [], []
        for r in recs:
            hit = [i for i, v in enumerate(r["eval"]["loss"]) if v is not None and v <= target]
            steps_tt.append(r["eval"]["steps"][hit[0]] if hit else math.inf)
            time_tt.append(r["timing"]["cumulative_train_s"][hit[0]] if hit else math.inf)
        medians[entry["arm"]] = statistics.median(time_tt)
        assert row[5] == fmt(statistics.median(steps_tt))
        assert row[6] == fmt(statistics.median(time_tt))
        step_ms = statistics.median(r["timing"]["optimizer_step_median_s"] for r in recs) * 1e3
        assert row[8] == fmt(step_ms, 3)
        assert row[9] == fmt_bytes(recs[0]["memory"]["state_bytes"])
        assert row[10] == fmt_bytes(statistics.median(r["memory"]["peak_bytes"] for r in recs)) + " (RSS)"
    for entry in manifest["arms"]:
        t = medians[entry["arm"]]
        assert rows[entry["label"]][7] == ("miss" if math.isinf(t) else fmt(medians["adamw"] / t, 3))
    assert any(math.isinf(t) for t in medians.values())  # the synthetic SGD arm misses the target


def test_welch_line_matches_scipy(results: Path) -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    md = (results / "report.md").read_text()
    section = md.split("### gpt\n", 1)[1].split("### ", 1)[0]
    manifest = json.loads((results / "manifest-synthetic-gpt-smoke.json").read_text())
    finals = {a["arm"]: [_load(results, k)["final"]["value"] for k in a["reporting"]] for a in manifest["arms"]}
    best_other = min((a for a in finals if a != "andi"), key=lambda a: statistics.mean(finals[a]))
    ref = scipy_stats.ttest_ind(finals["andi"], finals[best_other], equal_var=False)
    line = next(ln for ln in section.splitlines() if ln.startswith("**ANDI vs the best other arm"))
    label = next(a["label"] for a in manifest["arms"] if a["arm"] == best_other)
    assert f"({label})" in line
    assert f"Welch t = {fmt(ref.statistic, 3)}" in line and f"two-sided p = {fmt(ref.pvalue, 3)}" in line
    assert any(v in line for v in ("no significant difference", f"better than {label}", f"worse than {label}"))


def test_lr_sensitivity_marks_diverged_trials(results: Path) -> None:
    manifest = json.loads((results / "manifest-synthetic-saddle-smoke.json").read_text())
    andi = next(a for a in manifest["arms"] if a["arm"] == "andi")
    failed = [t for t in andi["tuning"] if t["score"] is None]
    assert failed, "the synthetic grid should contain diverged trials"
    assert all(_load(results, t["keys"][0])["status"] == "diverged" for t in failed)


def test_replay_section(results: Path) -> None:
    md = (results / "report.md").read_text()
    replay = md.split("## Protocol `replay`", 1)[1]
    rows = _rows(replay, "### gpt\n")
    manifest = json.loads((results / "manifest-replay-gpt-smoke.json").read_text())
    for entry in manifest["arms"]:
        recs = [_load(results, k) for k in entry["reporting"]]
        last = [r["train"]["loss"][-1] for r in recs]
        row = rows[entry["label"]]
        assert row[1] == fmt(entry["chosen_lr"])
        assert row[3:5] == [fmt(v) for v in last]
        assert row[5] == fmt(statistics.mean(last))
    assert "ANDI-script Muon" in rows
    assert "the paper reports 0.05" in replay.split("### gpt\n", 1)[1]


def test_report_cli_errors_on_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no manifest"):
        generate_report(tmp_path)


def test_report_flags_missing_records(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    manifest = run_fair(P.QUICK_SMOKE, "saddle", sweep, size="smoke")
    (tmp_path / f"{manifest['arms'][0]['reporting'][0]}.json").unlink()
    text = generate_report(tmp_path, figures=False).read_text()
    assert "1 record(s) named by a manifest are missing or corrupt" in text
    assert not (tmp_path / "figures").exists()


@pytest.fixture
def partial_results(tmp_path: Path) -> Path:
    """Quick-smoke results with a report; then every ANDI record of gpt deleted and one Muon record corrupted."""
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    run_fair(P.QUICK_SMOKE, "saddle", sweep, size="smoke")
    gpt = run_fair(P.QUICK_SMOKE, "gpt", sweep, size="smoke")
    generate_report(tmp_path, figures=False)
    arms = {a["arm"]: a["reporting"] for a in gpt["arms"]}
    for key in arms["andi"]:
        (tmp_path / f"{key}.json").unlink()
    (tmp_path / f"{arms['muon'][0]}.json").write_text("{")
    return tmp_path


def test_report_cli_on_partial_results(partial_results: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An arm without a surviving record is shown as missing instead of crashing the report; the corrupt record
    is said to be excluded, not recomputed (``report`` never recomputes)."""
    from andi.bench import cli

    stale = (partial_results / "report.md").read_text()
    with caplog.at_level(logging.WARNING, logger="andi.bench"):
        assert cli.main(["report", str(partial_results)]) == 0
    warning = next(r.getMessage() for r in caplog.records if "corrupt result file" in r.getMessage())
    assert "excluded from this report" in warning and "will be recomputed" not in warning
    md = (partial_results / "report.md").read_text()
    assert md != stale
    rows = _rows(md, "### gpt\n")
    assert rows["ANDI"][3] == "missing (0 of 2 seeds)" and rows["ANDI"][4] == "0/2 (2 missing)"
    assert rows["Muon"][4] == "1/2, 0/1 diverged (1 missing)"
    assert _rows(md, "### Across tasks")["ANDI"][5] == "1/2 (1 missing)"
    assert (partial_results / "figures" / "quick-smoke-smoke-gpt-curves.png").exists()  # plotted without ANDI


def test_a_failed_report_leaves_what_was_there_untouched(partial_results: Path) -> None:
    """A report that cannot be produced deletes nothing it did not make, and leaves no staging files."""
    before = (partial_results / "report.md").read_bytes()
    (partial_results / "figures").write_text("a file where the figures folder should be")
    with pytest.raises(OSError):
        generate_report(partial_results)
    assert (partial_results / "report.md").read_bytes() == before
    assert sorted(p.name for p in partial_results.glob("*report*")) == ["report.md"]


def test_a_report_interrupted_while_rendering_leaves_the_old_one(
    partial_results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import andi.bench.report.writer as writer

    before = (partial_results / "report.md").read_bytes()
    figures_before = sorted(partial_results.glob("figures/*"))

    def interrupted(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_render", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate_report(partial_results)
    assert (partial_results / "report.md").read_bytes() == before
    assert sorted(partial_results.glob("figures/*")) == figures_before
    assert not list(partial_results.glob(".andi-report-*"))


def test_report_is_written_with_the_umask(tmp_path: Path) -> None:
    sweep = Sweep(tmp_path, run_fn=CountingRun())
    run_fair(P.QUICK_SMOKE, "saddle", sweep, size="smoke")
    old = os.umask(0o027)
    try:
        path = generate_report(tmp_path, figures=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_every_arm_has_its_own_style_the_same_on_every_page() -> None:
    """One style per arm of the family (colour, line, marker), from the arm's name alone."""
    import andi
    from andi.bench.protocols.registry import PROTOCOLS
    from andi.bench.report.plots import ARM_STYLES, arm_style

    arms = {getattr(a, "name", a) for p in PROTOCOLS.values() for a in getattr(p, "arms", ())} | set(
        andi.list_optimizers()
    )
    styles = {arm: arm_style(arm) for arm in arms}
    canonical = {arm: s for arm, s in styles.items() if arm in ARM_STYLES}
    keys = [(s["color"], s["linestyle"], s["marker"]) for s in canonical.values()]
    assert len(set(keys)) == len(keys), "two arms share a style"
    assert set(ARM_STYLES) >= {getattr(a, "name", a) for p in PROTOCOLS.values() for a in getattr(p, "arms", ())}
    # the same arm looks the same wherever it is drawn, whatever else is on the page
    assert all(arm_style(arm) == styles[arm] for arm in arms)
    assert arm_style("my-optimizer") == arm_style("my-optimizer") and set(arm_style("my-optimizer")) == {
        "color",
        "linestyle",
        "marker",
    }


def test_an_infinite_t_statistic_reads_as_infinity_not_as_a_miss() -> None:
    import math

    from andi.bench.report.tables import fmt, fmt_stat

    assert (fmt_stat(math.inf), fmt_stat(-math.inf), fmt_stat(2.5)) == ("+∞", "−∞", fmt(2.5, 3))
    assert fmt(math.inf) == "miss"  # a time to target that was never reached
