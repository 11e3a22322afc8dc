"""The benchmark's shared helpers: one definition each, and records of both kinds name the machine the same way."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from andi.bench import util
from andi.bench.execution import runner, sweep
from andi.bench.execution.runner import RunConfig
from andi.bench.report import analysis as report
from andi.bench.stepbench import bench as stepbench
from andi.bench.util import device_info, final_value, progress_bar


def test_each_helper_has_one_definition() -> None:
    assert runner.sync is stepbench.sync is util.sync
    assert runner.device_info is stepbench.device_info is device_info
    assert runner.versions is stepbench.versions is util.versions
    assert runner.progress_bar is sweep.progress_bar is progress_bar
    assert report.final_value is sweep.final_value is final_value
    for module, old_name in (
        (runner, "_device_info"),
        (stepbench, "_device_info"),
        (runner, "_progress_bar"),
        (sweep, "_bar"),
        (report, "_final"),
        (sweep, "_final_value"),
    ):
        assert not hasattr(module, old_name), f"{module.__name__}.{old_name} is back"


def test_final_value() -> None:
    def record(status: str, value: object) -> dict:
        return {"status": status, "final": {"value": value}}

    assert final_value(record("ok", 0.25)) == 0.25 and final_value(record("ok", 3)) == 3.0
    assert final_value(record("diverged", 0.25)) is None
    for bad in (None, math.nan, math.inf, True, "0.5"):
        assert final_value(record("ok", bad)) is None, bad


def test_progress_bar_off_is_a_silent_stand_in(capsys: pytest.CaptureFixture[str]) -> None:
    for bar in (progress_bar(5, "off", enabled=False), progress_bar(0, "empty", enabled=True)):
        bar.update(1)
        bar.set_postfix(loss="1.0", refresh=False)
        bar.close()
    assert capsys.readouterr() == ("", "")


def test_runner_and_stepbench_record_the_same_cpu(synthetic_data_root: Path) -> None:
    config = RunConfig(task="saddle", size="smoke", optimizer="adamw", lr=1e-3, steps=2, eval_every=0)
    record = runner.run(config, data_root=synthetic_data_root)
    step = stepbench.run_step_bench(
        ["tiny"], ["adamw-foreach"], "cpu", repeats=1, warmup=1, peak={"peak_gbps": 1.0, "source": "fixed for the test"}
    )
    assert record["device"] == step["meta"]["device"] == device_info(torch.device("cpu"))
    assert record["versions"] == step["meta"]["versions"]
    # Records written before the two agreed named the CPU by platform.processor(); they stay valid.
    record["device"]["name"] = "x86_64"
    assert sweep.validate_record(record, config.key(), config.to_dict()) == []
