"""The report's figures on synthetic results: every figure is written, linked and captioned; missing data skips one.

Records come from :func:`_bench_fakes.fake_record`, plus a gradient-norm curve shaped like the runner's
(``train.grad_norm_steps`` = eval step − 1) unless a test wants records written before that field existed.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from _bench_fakes import CountingRun

from andi.bench import protocols as P
from andi.bench.execution.store import validate_record
from andi.bench.execution.sweep import Sweep, run_fair
from andi.bench.report import ArmResult, TaskResult, generate_report, stats
from andi.bench.report.figures import quality_ratios

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PROTO = P.FairProtocol(
    name="figs",
    arms=P.CORE_ARMS,
    ks=(-1, 0, 1),
    edge_extension=1,
    reporting_seeds=(1001, 1002, 1003),
    description="figure test protocol",
)
TASKS = ("saddle", "gpt")
PER_TASK = ("curves", "lr", "time-quality", "grad-norm")


class GradNormRun(CountingRun):
    """:class:`CountingRun` whose records carry a gradient norm before every evaluation after step 0."""

    def __call__(self, config: Any, *, data_root: Any = None, progress: bool = False) -> dict:
        record = super().__call__(config, data_root=data_root, progress=progress)
        steps = [s - 1 for s in record["eval"]["steps"] if s > 0]
        scale = {"adamw": 1.0, "muon": 0.5, "andi": 2.0}.get(config.optimizer, 1.0)
        record["train"]["grad_norm_steps"] = steps
        record["train"]["grad_norm"] = [scale * math.exp(-s / 30) * (1 + 0.01 * (config.init_seed % 7)) for s in steps]
        assert validate_record(record) == []
        return record


def _results(root: Path, run_fn: Any) -> Path:
    sweep = Sweep(root, run_fn=run_fn)
    for task in TASKS:
        run_fair(PROTO, task, sweep, size="smoke", steps=60)
    return root


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = _results(tmp_path_factory.mktemp("figures"), GradNormRun())
    generate_report(root)
    return root


def _figure_names(md: str) -> list[str]:
    return re.findall(r"\]\(figures/([^)]+\.png)\)", md)


def test_every_figure_is_written_linked_and_captioned(results: Path) -> None:
    md = (results / "report.md").read_text()
    expected = {f"figs-smoke-{task}-{kind}.png" for task in TASKS for kind in PER_TASK}
    expected |= {"figs-smoke-figure1.png", "figs-smoke-profile.png", "figs-smoke-quality-profile.png"}
    assert set(_figure_names(md)) == expected
    lines = md.splitlines()
    for name in expected:
        data = (results / "figures" / name).read_bytes()
        assert data[:8] == PNG_SIGNATURE and len(data) > 5000, name
        i = next(i for i, line in enumerate(lines) if f"](figures/{name})" in line)
        caption = lines[i + 2]
        assert caption.startswith("_") and caption.endswith("_") and len(caption) > 20, name  # one-line caption


def test_report_without_grad_norms_skips_only_that_figure(tmp_path: Path) -> None:
    """Records written before gradient norms were recorded: the report works and leaves that figure out."""
    root = _results(tmp_path, CountingRun())
    md = generate_report(root).read_text()
    names = set(_figure_names(md))
    assert not any("grad-norm" in n for n in names) and not list((root / "figures").glob("*grad-norm*"))
    for task in TASKS:
        assert {f"figs-smoke-{task}-{kind}.png" for kind in ("curves", "lr", "time-quality")} <= names
    assert "figs-smoke-quality-profile.png" in names


def test_partial_results_draw_what_is_there(tmp_path: Path) -> None:
    """Mixed old and new records, and an arm with no record left: the figures draw the rest."""
    root = _results(tmp_path, GradNormRun())
    manifest = json.loads((root / "manifest-figs-saddle-smoke.json").read_text())
    arms = {a["arm"]: a["reporting"] for a in manifest["arms"]}
    for key in arms["andi"]:
        (root / f"{key}.json").unlink()
    path = root / f"{arms['muon'][0]}.json"
    old = json.loads(path.read_text())
    del old["train"]["grad_norm_steps"], old["train"]["grad_norm"]
    path.write_text(json.dumps(old))
    md = generate_report(root).read_text()
    for kind in PER_TASK:
        assert f"figs-smoke-saddle-{kind}.png" in _figure_names(md)


def _task(name: str, higher_is_better: bool, finals: dict[str, list[float | None]]) -> TaskResult:
    arms = [
        ArmResult(arm, arm, arm, 0.01, 1, False, False, [], [1, 2, 3], list(v), stats.summarize([]))
        for arm, v in finals.items()
    ]
    return TaskResult({}, name, "accuracy" if higher_is_better else "loss", higher_is_better, None, arms)


def test_quality_ratios_use_errors_and_count_divergence_as_a_miss() -> None:
    group = [
        _task("loss-task", False, {"a": [0.2, 0.2, 0.3], "b": [0.4, 0.5, 0.4], "c": [0.1, None, None]}),
        _task("acc-task", True, {"a": [0.90, 0.90, 0.90], "b": [0.95, 0.95, 0.96]}),  # error = 1 - accuracy
    ]
    ratios, labels = quality_ratios(group)
    assert set(labels) == {"a", "b", "c"}
    assert ratios["a"] == {"loss-task": 1.0, "acc-task": pytest.approx(0.10 / 0.05)}
    assert ratios["b"] == {"loss-task": pytest.approx(2.0), "acc-task": 1.0}
    # c: median error over seeds with two diverged seeds is infinite; absent on acc-task: a miss
    assert ratios["c"] == {"loss-task": math.inf, "acc-task": math.inf}
    assert stats.metric_error(0.9, higher_is_better=True) == pytest.approx(0.1)
    assert stats.metric_error(None, higher_is_better=False) == math.inf
