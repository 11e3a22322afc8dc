"""What the report adds for the evidence study: edge-capped arms, the head-to-head table, the width section, archives.

* an arm whose manifest entry says ``edge_capped`` shows ``(edge-capped)`` beside its chosen lr, with a sentence;
* ANDI and ANDI-hybrid are tested against AdamW and Muon pair by pair, two-sided, with Holm over that family alone;
* the ``width`` protocol's tasks (``task_model.n_embd`` 64/128/256) get a learning-rate transfer table and figures;
* ``andi-bench report`` reads a ``.tar.xz`` of a results directory: the report names the archive, never the
  temporary folder it was extracted to, is the same on every run, and a member pointing outside is refused.

Records come from :func:`_bench_fakes.fake_record` (no training); the width runs shift each optimizer's best lr
with the width (AdamW ∝ 1/width, Muon ∝ 1/√width, ANDI unchanged) so that the transfer table has something to show.
"""

from __future__ import annotations

import dataclasses
import io
import json
import statistics
import tarfile
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from _bench_fakes import CountingRun, Z, arm_result, fake_record, sample

from andi.bench import cli
from andi.bench import protocols as P
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.report import (
    Comparison,
    TaskResult,
    generate_report,
    head_to_head,
    width_tasks,
)
from andi.bench.report.tables import fmt, width_table_lines

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
WIDTHS = {"gpt-w64": 64, "gpt-w128": 128, "gpt-w256": 256}


def _rows(md: str, heading: str) -> list[list[str]]:
    """The rows (cells) of the first table after ``heading``, header and separator left out."""
    rows: list[list[str]] = []
    for line in md.split(heading, 1)[1].splitlines():
        if line.startswith("|"):
            rows.append([c.strip() for c in line.strip("|").split("|")])
        elif rows:
            break
    return rows[2:]


def _section(md: str, heading: str) -> str:
    """The text from ``heading`` to the next heading of the same or a higher level."""
    rest = md.split(heading, 1)[1]
    return next((rest.split(mark, 1)[0] for mark in ("\n### ", "\n## ") if mark in rest), rest)


# ========================================================================================= edge-capped
class ShiftedRun(CountingRun):
    """:class:`CountingRun` with each optimizer's lr scaled by ``factors`` before the fake is evaluated (the record
    keeps the requested config): a factor of 1/1000 puts the optimum far above any grid, so the edge rule caps."""

    def __init__(self, factors: dict[str, float]) -> None:
        super().__init__()
        self.factors = factors

    def __call__(self, config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
        self.calls.append(config.key())
        record = fake_record(dataclasses.replace(config, lr=config.lr * self.factors.get(config.optimizer, 1.0)))
        record["key"], record["config"] = config.key(), config.to_dict()
        return record


CAPPED = P.FairProtocol(
    name="capped",
    arms=P.CORE_ARMS,
    ks=(-1, 0, 1),
    edge_extension=1,
    edge_extension_rounds=2,
    reporting_seeds=(1001, 1002, 1003),
    description="edge-capped test protocol",
)


def test_edge_capped_arm_is_marked_with_a_sentence(tmp_path: Path) -> None:
    """The plan marks Muon (optimum 1000× above its grid) edge-capped after 2 rounds; the report says so."""
    manifest = run_fair(CAPPED, "saddle", Sweep(tmp_path, run_fn=ShiftedRun({"muon": 1e-3})), size="smoke", steps=60)
    capped = {a["arm"]: a["edge_capped"] for a in manifest["arms"]}
    assert capped == {"adamw": False, "muon": True, "andi": False}
    assert manifest["spec"]["edge_extension_rounds"] == 2
    md = generate_report(tmp_path, figures=False).read_text()
    rows = {r[0]: r for r in _rows(md, "### saddle\n")}
    muon = next(a for a in manifest["arms"] if a["arm"] == "muon")
    assert rows["Muon"][1] == f"{fmt(muon['chosen_lr'])} (edge-ext.) (edge-capped)"
    assert "edge-capped" not in rows["ANDI"][1] and "edge-capped" not in rows["AdamW"][1]
    table = _section(md, "### saddle\n")
    sentence = next(line for line in table.splitlines() if line.startswith("(edge-capped)"))
    assert sentence.startswith("(edge-capped) Muon: the chosen lr of this arm is still at the edge of the explored")
    assert "after the maximum number of edge-extension rounds (2), so its optimum may lie beyond it" in sentence


def test_without_the_key_nothing_is_said(tmp_path: Path) -> None:
    """Manifests written before ``edge_capped`` existed (and arms that are not capped) read as before."""
    manifest = run_fair(P.QUICK_SMOKE, "saddle", Sweep(tmp_path, run_fn=CountingRun()), size="smoke")
    path = tmp_path / "manifest-quick-smoke-saddle-smoke.json"
    for arm in manifest["arms"]:
        arm.pop("edge_capped", None)
    path.write_text(json.dumps(manifest))
    md = generate_report(tmp_path, figures=False).read_text()
    assert "edge-capped" not in md
    # the same arm marked capped, in a manifest whose spec does not name the number of rounds
    manifest["arms"][1]["edge_capped"] = True
    manifest["spec"].pop("edge_extension_rounds", None)
    path.write_text(json.dumps(manifest))
    md = generate_report(tmp_path, figures=False).read_text()
    label = manifest["arms"][1]["label"]
    assert f"| {label} | {fmt(manifest['arms'][1]['chosen_lr'])}" in md and "(edge-capped) |" in md
    assert f"(edge-capped) {label}: " in md and "extension rounds, so its optimum may lie beyond it." in md


# ======================================================================================== head to head
ANDI_LOSS = sample(0.0293, 0.0031)  # the fair saddle run's numbers: a clear loss to Muon
MUON_LOSS = sample(0.0143, 0.0002)
ADAMW_LOSS = sample(0.0800, 0.0030)  # clearly worse than ANDI
HYBRID_LOSS = sample(0.0801, 0.0030, Z[::-1])  # overlaps AdamW, the seeds in another order: no difference


def _group() -> list[TaskResult]:
    """saddle: every pair on common seeds (paired t); gpt: Muon on other seeds (Welch), SGD not a baseline."""
    saddle = [
        arm_result("adamw", "AdamW", ADAMW_LOSS),
        arm_result("muon", "Muon", MUON_LOSS),
        arm_result("andi", "ANDI", ANDI_LOSS),
        arm_result("andi-hybrid", "ANDI (hybrid)", HYBRID_LOSS),
    ]
    gpt = [
        arm_result("adamw", "AdamW", sample(1.60, 0.01)),
        arm_result("muon", "Muon", sample(1.55, 0.02), (2001, 2002, 2003, 2004, 2005)),
        arm_result("andi", "ANDI", sample(1.50, 0.02, Z[::-1])),
        arm_result("sgd", "SGD", sample(2.0, 0.1)),
        arm_result("andi-hybrid", "ANDI (hybrid)", [1.58, None, None, None, None]),  # one finite result: skipped
    ]
    return [
        TaskResult({}, "saddle", "loss", False, None, saddle),
        TaskResult({}, "gpt", "loss", False, None, gpt),
    ]


def _holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values, written out independently of :mod:`andi.bench.report.stats`."""
    m = len(pvalues)
    order = sorted(range(m), key=lambda i: pvalues[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def test_head_to_head_verdicts_pvalues_and_holm() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    group = _group()
    rows = head_to_head(group)
    by = {(c.task, c.arm, c.other): c for c in rows}
    assert list(by) == [
        ("saddle", "andi", "adamw"),
        ("saddle", "andi", "muon"),
        ("saddle", "andi-hybrid", "adamw"),
        ("saddle", "andi-hybrid", "muon"),
        ("gpt", "andi", "adamw"),
        ("gpt", "andi", "muon"),
    ]  # gpt's hybrid has one finite result: both its pairs skipped; SGD is no baseline
    assert by["saddle", "andi", "muon"].verdict == "worse than Muon"  # the regression: once read as no difference
    assert by["saddle", "andi", "adamw"].verdict == "better than AdamW"
    assert by["saddle", "andi-hybrid", "adamw"].verdict == "no significant difference"
    assert by["gpt", "andi", "muon"].verdict == "better than Muon"
    finals = {(t.task, a.arm): a.finals for t in group for a in t.arms}
    for c in rows:
        a, b = finals[c.task, c.arm], finals[c.task, c.other]
        if c.task == "saddle":
            ref = scipy_stats.ttest_rel(a, b)
            assert c.test_name == "paired t"
            assert c.mean_diff == pytest.approx(statistics.mean(a) - statistics.mean(b), abs=1e-12)
        elif c.other == "muon":  # no common seed: Welch
            ref = scipy_stats.ttest_ind(a, b, equal_var=False)
            assert c.test_name == "Welch" and c.paired is None
        else:
            ref = scipy_stats.ttest_rel(a, b)
        assert c.pvalue == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)
        assert c.welch.pvalue == pytest.approx(scipy_stats.ttest_ind(a, b, equal_var=False).pvalue, rel=1e-9)
        assert c.family_size == len(rows) == 6
    for c, p in zip(rows, _holm([c.pvalue for c in rows])):
        assert c.holm_p == pytest.approx(p, rel=1e-12)
        assert c.reject == (p <= 0.05)
    # the best-other-arm family is untouched: a fresh call gives the same rows, the task results are not modified
    assert all(t.comparisons == [] for t in group)
    again = head_to_head(group)
    assert [(c.holm_p, c.verdict) for c in again] == [(c.holm_p, c.verdict) for c in rows]


def test_head_to_head_direction_for_higher_is_better() -> None:
    high = [arm_result("adamw", "AdamW", sample(0.90, 0.002)), arm_result("andi", "ANDI", sample(0.80, 0.002, Z[::-1]))]
    (row,) = head_to_head([TaskResult({}, "cifar", "accuracy", True, None, high)])
    assert row.mean_diff < 0 and row.verdict == "worse than AdamW"
    assert head_to_head([TaskResult({}, "x", "loss", False, None, [arm_result("sgd", "SGD", sample(1, 0.1))])]) == []


# ================================================================================================ width
def width_run(config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
    """:func:`fake_record` whose best lr moves with the width: AdamW ∝ 1/width, Muon ∝ 1/√width, ANDI fixed."""
    width = WIDTHS[config.task]
    exponent = {"adamw": 1.0, "muon": 0.5}.get(config.optimizer, 0.0)
    record = fake_record(dataclasses.replace(config, lr=config.lr * (width / 64) ** exponent))
    record["key"], record["config"] = config.key(), config.to_dict()
    return record


def _width_results(root: Path) -> Path:
    sweep = Sweep(root, run_fn=width_run)
    for task in WIDTHS:
        run_fair(P.get_protocol("width"), task, sweep, size="cpu", steps=60)
    return root


@pytest.fixture(scope="module")
def width_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _width_results(tmp_path_factory.mktemp("width"))
    generate_report(root)
    return root


def test_width_transfer_table(width_results: Path) -> None:
    md = (width_results / "report.md").read_text()
    manifests = {t: json.loads((width_results / f"manifest-width-{t}-cpu.json").read_text()) for t in WIDTHS}
    assert [m["task_model"]["n_embd"] for m in manifests.values()] == [64, 128, 256]
    section = _section(md, "### Learning-rate transfer across width\n")
    header = next(line for line in section.splitlines() if line.startswith("| arm"))
    assert header == (
        "| arm | best lr, n_embd 64 (`gpt-w64`) | best lr, n_embd 128 (`gpt-w128`) | "
        "best lr, n_embd 256 (`gpt-w256`) | ratio n_embd 256 / 64 |"
    )
    rows = {r[0]: r for r in _rows(md, "### Learning-rate transfer across width\n")}
    assert list(rows) == ["AdamW", "Muon", "ANDI", "ANDI (hybrid)"]
    for entry in manifests["gpt-w64"]["arms"]:
        chosen = [next(a for a in m["arms"] if a["arm"] == entry["arm"])["chosen_lr"] for m in manifests.values()]
        row = rows[entry["label"]]
        assert row[1:4] == [fmt(lr) for lr in chosen]  # no arm is at an edge here: no marker
        assert row[4] == fmt(chosen[-1] / chosen[0], 3)
    assert rows["AdamW"][1:] == ["0.002", "0.001", "0.0005", "0.25"]  # the optimum halves with each doubling
    assert rows["ANDI"][4] == "1"
    assert "0.25 is what lr ∝ 1/width would give" in section
    # the tasks of the group are in width order, and the width section comes after the verdicts
    order = [md.index(f"### {t}\n") for t in WIDTHS]
    assert order == sorted(order) and md.index("### Verdicts") < md.index("### Learning-rate transfer")


def test_width_figures(width_results: Path) -> None:
    md = (width_results / "report.md").read_text()
    for name in ("width-cpu-width-lr.png", "width-cpu-width-best-lr.png"):
        data = (width_results / "figures" / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
        assert f"](figures/{name})" in _section(md, "### Learning-rate transfer across width\n")


def test_width_section_needs_two_widths_and_marks_edges(tmp_path: Path) -> None:
    """Without figures the table is still there; one width alone (the study's gpt) gets no section."""
    root = _width_results(tmp_path)
    md = generate_report(root, figures=False).read_text()
    assert "### Learning-rate transfer across width" in md and not (root / "figures").exists()

    def task(n: int | None, **flags: bool) -> TaskResult:
        arm = dataclasses.replace(
            arm_result("adamw", "AdamW", sample(1, 0.1)), chosen_lr=0.001 * 64 / (n or 64), **flags
        )
        manifest = {"task_model": {"n_embd": n}} if n is not None else {"task_model": None}
        return TaskResult(manifest, f"t{n}", "loss", False, None, [arm])

    assert width_tasks([task(64), task(None)]) == []
    widths = width_tasks([task(256, edge_capped=True, at_edge=True), task(64), task(128, at_edge=True)])
    assert [n for n, _ in widths] == [64, 128, 256]
    lines = width_table_lines(widths)
    assert lines[2] == "| AdamW | 0.001 | 0.0005 (at edge) | 0.00025 (edge-capped) | 0.25 |"
    assert "so a ratio involving it is a bound" in lines[-1]


def test_head_to_head_section_in_the_report(width_results: Path) -> None:
    md = (width_results / "report.md").read_text()
    heading = "### ANDI against AdamW and Muon (head to head)\n"
    assert md.index("### gpt-w256\n") < md.index(heading) < md.index("### Verdicts")
    rows = _rows(md, heading)
    assert len(rows) == 3 * 2 * 2
    assert [r[:3] for r in rows[:4]] == [
        ["gpt-w64", "ANDI", "AdamW"],
        ["gpt-w64", "ANDI", "Muon"],
        ["gpt-w64", "ANDI (hybrid)", "AdamW"],
        ["gpt-w64", "ANDI (hybrid)", "Muon"],
    ]
    assert all(r[7] == "paired t" for r in rows)
    assert all(r[10] in ("better than AdamW", "worse than AdamW", "no significant difference") for r in rows[::2])
    assert f"Holm–Bonferroni over the {len(rows)} comparison(s) of this table" in _section(md, heading)
    assert "separate from the best-other-arm comparisons" in _section(md, heading)


# ============================================================================================== archives
@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("archived") / "results"
    sweep = Sweep(root, run_fn=CountingRun())
    run_fair(P.QUICK_SMOKE, "gpt", sweep, size="smoke")
    return root


def _tar(path: Path, results: Path, arcname: str = "results") -> Path:
    with tarfile.open(path, "w:xz") as tar:
        tar.add(results, arcname=arcname)
    return path


def _without_results_line(md: str) -> list[str]:
    return [line for line in md.splitlines() if not line.startswith("Results directory: ")]


def test_report_from_an_archive(results_dir: Path, tmp_path: Path) -> None:
    archive = _tar(tmp_path / "study.tar.xz", results_dir)
    assert cli.main(["report", str(archive), "--out", str(tmp_path / "a" / "report.md")]) == 0
    md = (tmp_path / "a" / "report.md").read_text()
    assert f"Results directory: `{archive}`." in md.splitlines()
    assert "andi-report-" not in md and tempfile.gettempdir() + "/andi-report" not in md

    extracted = tmp_path / "extracted"
    with tarfile.open(archive) as tar:  # our own archive; the data filter where this Python has it
        tar.extractall(extracted, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    assert cli.main(["report", str(extracted / "results"), "--out", str(tmp_path / "b" / "report.md")]) == 0
    direct = (tmp_path / "b" / "report.md").read_text()
    assert _without_results_line(md) == _without_results_line(direct) and md != direct

    assert cli.main(["report", str(archive), "--out", str(tmp_path / "c" / "report.md")]) == 0
    assert (tmp_path / "c" / "report.md").read_bytes() == (tmp_path / "a" / "report.md").read_bytes()
    names = {d: sorted(p.name for p in (tmp_path / d / "figures").glob("*.png")) for d in "abc"}
    assert names["a"] == names["b"] == names["c"] and "quick-smoke-smoke-gpt-lr.png" in names["a"]
    assert not list(tmp_path.glob("andi-report-*"))


def test_archive_without_a_top_folder_and_default_out(results_dir: Path, tmp_path: Path) -> None:
    """Members at the archive's top level; the report goes next to the archive by default."""
    archive = _tar(tmp_path / "flat.tar.xz", results_dir, arcname=".")
    assert cli.main(["report", str(archive), "--no-figures"]) == 0
    md = (tmp_path / "report.md").read_text()
    assert md.startswith("# andi-bench report") and f"`{archive}`" in md
    assert not (tmp_path / "figures").exists()


def _add(tar: tarfile.TarFile, name: str, data: bytes = b"x", **fields: Any) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data) if "type" not in fields else 0
    for k, v in fields.items():
        setattr(info, k, v)
    tar.addfile(info, io.BytesIO(data) if info.isreg() else None)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "fifo"])
def test_unsafe_archive_is_refused(
    kind: str, results_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    archive = home / "evil.tar.xz"
    unique = f"evil-{uuid.uuid4().hex}"
    outside = {
        "dotdot": Path(tempfile.gettempdir()) / unique,  # where ../evil would land from the temporary folder
        "absolute": tmp_path / unique,
    }.get(kind)
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(results_dir, arcname="results")
        if kind == "dotdot":
            _add(tar, f"../{unique}")
        elif kind == "absolute":
            _add(tar, str(outside))
        elif kind == "symlink":
            _add(tar, "results/link.json", type=tarfile.SYMTYPE, linkname="/etc/passwd")
        elif kind == "hardlink":
            _add(tar, "results/link.json", type=tarfile.LNKTYPE, linkname="/etc/passwd")
        else:
            _add(tar, "results/pipe", type=tarfile.FIFOTYPE)
    status = cli.main(["report", str(archive)])
    err = capsys.readouterr().err
    assert status == 3, err
    assert err.startswith(f"andi-bench: error: report {archive}: member ") and "refusing to extract" in err
    assert err.count("\n") == 1
    assert sorted(p.name for p in home.iterdir()) == ["evil.tar.xz"]  # no report, no figures
    assert outside is None or not outside.exists()


def test_unreadable_or_empty_archive(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.tar.xz"
    bad.write_bytes(b"not an archive at all")
    assert cli.main(["report", str(bad)]) == 3
    assert "not a readable tar archive" in capsys.readouterr().err
    empty = tmp_path / "empty.tar.gz"
    with tarfile.open(empty, "w:gz") as tar:
        _add(tar, "notes/readme.txt")
    assert cli.main(["report", str(empty)]) == 3
    assert f"no manifest-*.json in {empty}" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()
    other = tmp_path / "results.zip"
    other.write_bytes(b"PK")
    assert cli.main(["report", str(other)]) == 3
    assert "not a directory or a .tar, .tar.gz or .tar.xz archive" in capsys.readouterr().err


def test_comparison_is_reused() -> None:
    """The head-to-head rows are :class:`Comparison` objects, with the same verdict wording as the table above."""
    (row, *_) = head_to_head(_group())
    assert isinstance(row, Comparison) and row.other_label == "AdamW"


def test_a_refused_archive_leaves_the_report_beside_it(results_dir: Path, tmp_path: Path) -> None:
    """docs/results/<study>/ holds an archive and its report: a bad archive there must not delete that report."""
    good = _tar(tmp_path / "study.tar.xz", results_dir)
    assert cli.main(["report", str(good), "--no-figures"]) == 0
    before = (tmp_path / "report.md").read_bytes()
    bad = tmp_path / "other.tar.xz"
    bad.write_bytes(b"not an archive at all")
    assert cli.main(["report", str(bad)]) == 3
    assert (tmp_path / "report.md").read_bytes() == before


def test_a_corrupt_duplicate_member_is_reported_as_the_archives(
    results_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = next(p for p in sorted(results_dir.glob("*.json")) if not p.name.startswith("manifest-"))
    archive = tmp_path / "dup.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(results_dir, arcname="results")
        _add(tar, f"results/{record.name}", b"{")  # a second copy of one record, corrupt: the later one wins
    with caplog.at_level("WARNING", logger="andi.bench"):
        assert cli.main(["report", str(archive), "--no-figures"]) == 0
    text = caplog.text
    assert "holds 1 file name(s) twice" in text
    assert f"corrupt result file {archive}: {record.name}" in text and "archive the results directory again" in text
    assert "moved to" not in text and "andi-bench run" not in text and "andi-report-" not in text
