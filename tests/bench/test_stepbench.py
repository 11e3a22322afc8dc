"""The step benchmark's output is correct (timing itself is never asserted: CI machines are noisy)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from andi.bench.stepbench import (
    Arm,
    cli_main,
    format_markdown,
    measure_peak_bandwidth,
    resolve_shape_set,
    run_step_bench,
    write_outputs,
)
from andi.bench.stepbench import bench as stepbench

PEAK = {"peak_gbps": 10.0, "source": "fixed for the test"}
ARMS = ["andi-single", "andi-foreach", "adamw-foreach", "sgd-nesterov", "muon"]


@pytest.fixture(scope="module")
def tiny_result() -> dict:
    torch.manual_seed(0)
    return run_step_bench(["tiny"], ARMS, "cpu", torch.float32, repeats=3, warmup=1, peak=PEAK)


def test_gpt124m_is_gpt2_small() -> None:
    (case,) = resolve_shape_set("gpt124m")
    assert case.numel == 124_439_808  # GPT-2 small with a tied head
    assert len(case.shapes) == 2 + 12 * 12 + 2
    assert case.shapes[0] == (50257, 768) and (2304, 768) in case.shapes and (768, 3072) in case.shapes


def test_shape_sets() -> None:
    (case,) = resolve_shape_set("8x1024^2")
    assert case.shapes == ((1024, 1024),) * 8
    (case,) = resolve_shape_set("3x5x7")
    assert case.shapes == ((5, 7),) * 3 and case.numel == 105
    cpu = [c.name for c in resolve_shape_set("square-sweep", device_type="cpu")]
    assert cpu == ["256^2", "512^2", "1024^2", "2048^2"]
    assert [c.shapes[0][0] for c in resolve_shape_set("square-sweep", device_type="cuda")][-1] == 8192
    assert len(resolve_shape_set("square-sweep", max_side=512)) == 2
    with pytest.raises(ValueError, match="Unknown shape set"):
        resolve_shape_set("7x")
    with pytest.raises(ValueError, match="below the smallest"):
        resolve_shape_set("square-sweep", max_side=100)


def test_rows_are_complete_and_consistent(tiny_result: dict) -> None:
    rows = {r["optimizer"]: r for r in tiny_result["rows"]}
    assert list(rows) == ARMS
    (case,) = resolve_shape_set("tiny")
    for name, r in rows.items():
        assert r["status"] == "ok", r["reason"]
        assert r["repeats"] == 3 and len(r["times_s"]) == 3
        assert r["min_s"] <= r["median_s"] <= max(r["times_s"])
        assert r["traffic_bytes"] == 7 * r["numel"] * 4
        assert r["gbps"] == pytest.approx(r["traffic_bytes"] / r["median_s"] / 1e9)
        assert r["frac_of_peak"] == pytest.approx(r["gbps"] / PEAK["peak_gbps"])
        assert r["ratio_to_baseline"] == pytest.approx(r["median_s"] / rows["adamw-foreach"]["median_s"])
        assert r["ns_per_param"] == pytest.approx(r["median_s"] / r["numel"] * 1e9)
        if name != "muon":
            assert r["numel"] == case.numel and r["n_tensors"] == len(case.shapes)
    assert rows["adamw-foreach"]["ratio_to_baseline"] == 1.0
    # Muon only takes the 2-D tensors.
    assert rows["muon"]["numel"] == sum(math.prod(s) for s in case.shapes if len(s) == 2)


def test_state_bytes_are_exact(tiny_result: dict) -> None:
    rows = {r["optimizer"]: r for r in tiny_result["rows"]}
    n, k = rows["adamw-foreach"]["numel"], rows["adamw-foreach"]["n_tensors"]
    for name in ("andi-single", "andi-foreach", "sgd-nesterov", "muon"):
        assert rows[name]["state_bytes"] == 4 * rows[name]["numel"], name  # one fp32 buffer per parameter
        assert rows[name]["state_bytes_per_param"] == 4.0
    # AdamW: exp_avg + exp_avg_sq, plus one fp32 `step` scalar per tensor.
    assert rows["adamw-foreach"]["state_bytes"] == 8 * n + 4 * k


def test_baseline_is_added_and_unknown_arm_rejected() -> None:
    result = run_step_bench(["tiny"], ["sgd-nesterov"], "cpu", repeats=1, warmup=1, peak=PEAK)
    assert [r["optimizer"] for r in result["rows"]] == ["sgd-nesterov", "adamw-foreach"]
    assert result["meta"]["baseline"] == "adamw-foreach"
    with pytest.raises(ValueError, match="Unknown optimizer arm"):
        run_step_bench(["tiny"], ["adamw-turbo"], "cpu", repeats=1, peak=PEAK)
    with pytest.raises(ValueError, match="repeats and warmup"):
        run_step_bench(["tiny"], ["sgd-nesterov"], "cpu", repeats=0, peak=PEAK)


def test_broken_and_slow_arms_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(params):
        raise RuntimeError("no kernel for this")

    real = stepbench.available_arms
    monkeypatch.setattr(stepbench, "available_arms", lambda: real() | {"broken": Arm("broken", "raises", broken)})
    result = run_step_bench(
        ["tiny"], ["broken", "sgd-nesterov"], "cpu", repeats=2, warmup=1, peak=PEAK, interleave=False
    )
    rows = {r["optimizer"]: r for r in result["rows"]}
    assert rows["broken"]["status"] == "error" and "no kernel for this" in rows["broken"]["reason"]
    assert rows["sgd-nesterov"]["status"] == "ok" and rows["broken"]["ratio_to_baseline"] is None
    slow = run_step_bench(["tiny"], ["andi-single"], "cpu", repeats=20, warmup=1, peak=PEAK, max_seconds=1e-9)
    rows = {r["optimizer"]: r for r in slow["rows"]}
    assert rows["andi-single"]["status"] == "skipped" and "max_seconds" in rows["andi-single"]["reason"]
    assert "skipped" in format_markdown(slow)


def test_interleaved_and_sequential_agree_on_everything_but_time() -> None:
    kw = dict(repeats=2, warmup=1, peak=PEAK)
    a = run_step_bench(["tiny"], ["andi-foreach", "muon"], "cpu", interleave=True, **kw)["rows"]
    b = run_step_bench(["tiny"], ["andi-foreach", "muon"], "cpu", interleave=False, **kw)["rows"]
    keys = ("optimizer", "numel", "n_tensors", "state_bytes", "traffic_bytes", "repeats", "status")
    assert [[r[k] for k in keys] for r in a] == [[r[k] for k in keys] for r in b]


def test_outputs(tiny_result: dict, tmp_path) -> None:
    paths = write_outputs(tiny_result, tmp_path)
    loaded = json.loads(paths["json"].read_text())
    assert loaded["kind"] == "step-bench" and loaded["rows"] == tiny_result["rows"]
    meta = loaded["meta"]
    assert meta["device"]["type"] == "cpu" and meta["versions"]["torch"] == torch.__version__
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = paths["markdown"].read_text()
    for arm in ARMS:
        assert f"| tiny | {arm} |" in table


def test_measured_bandwidth_is_positive() -> None:
    peak = measure_peak_bandwidth("cpu", mib=8, repeats=3)
    assert peak["peak_gbps"] == max(peak["copy_gbps"], peak["triad_gbps"], peak["axpy_gbps"]) > 0
    assert peak["source"].startswith("measured")


def test_cli(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["--list", "--device", "cpu"]) == 0
    assert "andi-foreach" in capsys.readouterr().out
    out = tmp_path / "step"
    rc = cli_main(
        [
            "--shapes",
            "tiny",
            "--optimizers",
            "andi-foreach",
            "--device",
            "cpu",
            "--repeats",
            "2",
            "--warmup",
            "1",
            "--out",
            str(out),
            "--no-plot",
            "--quiet",
            "--peak-gbps",
            "10",
        ]
    )
    assert rc == 0
    rows = json.loads((out / "step_bench.json").read_text())["rows"]
    assert [r["optimizer"] for r in rows] == ["andi-foreach", "adamw-foreach"]
    assert not (out / "step_bench.png").exists()
    assert cli_main(["--shapes", "nonsense", "--device", "cpu", "--out", str(out), "--quiet", "--peak-gbps", "1"]) == 2


def test_registry_arms_run() -> None:
    registry = pytest.importorskip("andi.optim.registry")
    arms = stepbench.available_arms()
    expected = {f"reg:{n}" for n in registry.list_optimizers() if n not in ("andi", "adamw", "sgd")}
    assert expected == {n for n in arms if n.startswith("reg:")}
    wanted = [n for n in ("reg:lion", "reg:sinkgd") if n in arms]
    if not wanted:
        pytest.skip("neither lion nor sinkgd is registered here")
    result = run_step_bench(["tiny"], wanted, "cpu", repeats=2, warmup=1, peak=PEAK)
    for r in result["rows"]:
        assert r["status"] == "ok", r["reason"]


def test_registry_arms_are_derived_from_the_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each ``reg:`` arm builds its entry at the entry's default lr; an entry added to the registry is an arm too."""
    from andi.optim.registry import OPTIMIZERS
    from andi.optim.routed import ALGORITHMS

    for arm_name, arm in stepbench.available_arms().items():
        if arm_name.startswith("reg:"):
            spec = OPTIMIZERS[arm_name.removeprefix("reg:")]
            optimizer = arm.build([torch.nn.Parameter(torch.zeros(4, 3))])  # a matrix: the entry's own algorithm
            assert [g["lr"] for g in optimizer.param_groups] == [spec.default_lr], arm_name

    added = dataclasses.replace(
        OPTIMIZERS["adamw"], name="adagrad-entry", default_lr=0.125, factory=torch.optim.Adagrad
    )
    monkeypatch.setitem(OPTIMIZERS, added.name, added)
    arm = stepbench.available_arms()["reg:adagrad-entry"]
    optimizer = arm.build([torch.nn.Parameter(torch.zeros(4, 3))])
    assert type(optimizer) is torch.optim.Adagrad and optimizer.param_groups[0]["lr"] == 0.125
    assert ALGORITHMS["adagrad-entry"] is torch.optim.Adagrad  # and RoutedOptimizer routes it
