"""The published results pages are what their committed records give: regenerating each page from its archive
reproduces the committed markdown (every table, verdict and figure reference) exactly."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from andi.bench import cli

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "results"
PUBLISHED = ("study", "study-saddle-full", "width", "replay-v7", "gpt-paper-size")


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
    # every figure the page shows was regenerated and is committed beside it
    figures = re.findall(r"!\[[^]]*\]\((figures/[^)]+)\)", committed.read_text())
    assert figures, f"{name}: a results page without figures"
    for rel in figures:
        assert (tmp_path / rel).is_file() and (RESULTS / name / rel).is_file(), rel
