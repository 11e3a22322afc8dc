"""The published results pages are what their committed records give: regenerating each page from its archive
reproduces the committed markdown (every table, verdict and figure reference) exactly."""

from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pytest

from andi.bench import cli

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
PUBLISHED = ("study", "study-v2", "study-saddle-full", "width", "width-v2", "replay", "replay-v7", "gpt-paper-size")


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", PUBLISHED)
def test_the_committed_page_is_what_the_committed_records_give(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = RESULTS / name / "records.tar.xz"
    committed = RESULTS / name / "report.md"
    assert archive.is_file() and committed.is_file(), f"{name}: publish it with scripts/publish_results.sh"
    monkeypatch.chdir(ROOT)  # the report names the archive as given: the same relative path as when published
    out = tmp_path / "report.md"
    assert cli.main(["report", str(archive.relative_to(ROOT)), "--out", str(out)]) == 0
    assert out.read_text() == committed.read_text()
    # results.json, the same numbers machine-readable, is committed beside the page and regenerates byte for byte
    assert (tmp_path / "results.json").read_text() == (RESULTS / name / "results.json").read_text()
    # every figure the page shows was regenerated and is committed beside it
    figures = re.findall(r"!\[[^]]*\]\((figures/[^)]+)\)", committed.read_text())
    assert figures, f"{name}: a results page without figures"
    for rel in figures:
        assert (tmp_path / rel).is_file() and (RESULTS / name / rel).is_file(), rel


def test_results_json_holds_each_reporting_runs_final_metric_as_counted() -> None:
    """The per-seed finals of the GPT study's results.json are the records' own final values (no run diverged)."""
    data = json.loads((RESULTS / "gpt-paper-size" / "results.json").read_text())
    with tarfile.open(RESULTS / "gpt-paper-size" / "records.tar.xz") as tar:
        records = [
            json.load(tar.extractfile(m)) for m in tar.getmembers() if not m.name.lstrip("./").startswith("manifest")
        ]
    (task,) = data["runs"][0]["tasks"]
    for arm in task["arms"]:
        expected = {
            str(r["config"]["init_seed"]): r["final"]["value"]
            for r in records
            if r["config"]["eval_split"] == "test"
            and r["config"]["lr"] == arm["chosen_lr"]
            and r["config"]["optimizer"] == arm["optimizer"]
        }
        assert arm["finals"] == expected and arm["n"] == 5 and arm["n_diverged"] == 0
        assert arm["mean"] == pytest.approx(sum(expected.values()) / 5)
