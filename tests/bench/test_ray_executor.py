"""The Ray executor on a real two-node Ray cluster on this machine equals the serial executor.

``ray.cluster_utils.Cluster`` (Ray's own multi-node test harness) starts a head and a second node, each with one
CPU, so the runs are spread over two nodes; ``cluster.shutdown()`` stops exactly what it started. This machine may
only talk to the loopback range: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` makes every node and the driver use
127.0.0.1 (Ray reads it when imported, so it is set before). Skipped only when Ray is not installed (the ``[ray]``
extra; CI installs it with ``[dev]``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from andi.bench import protocols as P
from andi.bench.execution.executors import RayExecutor
from andi.bench.execution.sweep import Sweep, run_protocol

METRIC_FIELDS = ("key", "config", "status", "diverged_at", "train", "eval", "final", "resolved", "optimizer_info")


def _records(root: Path) -> dict[str, dict]:
    return {
        r["key"]: r
        for r in (json.loads(p.read_text()) for p in root.glob("*.json") if not p.name.startswith("manifest-"))
    }


@pytest.mark.filterwarnings("ignore:ANDI_DATA_VERIFY=0:UserWarning")
def test_ray_two_node_cluster_equals_serial(
    tmp_path: Path, synthetic_data_root: Path, monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # loopback only; read when ray is imported
    monkeypatch.setenv("ANDI_DATA_VERIFY", "0")  # the Ray workers do not see the fixture's trusted checksums
    ray = pytest.importorskip("ray")
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    monkeypatch.setattr(ray_constants, "ENABLE_RAY_CLUSTER", False)  # in case ray was imported before the setenv

    protocol, task = P.QUICK_SMOKE, "saddle"
    with Sweep(tmp_path / "serial", data_root=synthetic_data_root) as serial:
        (expected,) = run_protocol(protocol, serial, tasks=[task], size="smoke")

    t0 = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        ray.init(address=cluster.address)
        executor = RayExecutor(threads=1)
        assert executor.capacity == 2 and len(ray.nodes()) == 2
        with Sweep(tmp_path / "ray", data_root=synthetic_data_root, executor=executor) as sweep:
            (manifest,) = run_protocol(protocol, sweep, tasks=[task], size="smoke")
    finally:
        ray.shutdown()
        cluster.shutdown()
    elapsed = time.perf_counter() - t0

    assert manifest == expected
    want, got = _records(tmp_path / "serial"), _records(tmp_path / "ray")
    assert want.keys() == got.keys() and len(got) == len(protocol.arms) * 5
    for key, record in want.items():
        for name in METRIC_FIELDS:
            assert got[key][name] == record[name], (key, name)
        assert got[key]["execution"]["executor"] == "ray" and got[key]["execution"]["threads"] == 1
    assert sorted(p.name for p in (tmp_path / "ray").iterdir() if p.suffix != ".json") == []
    # A bound that catches a hung cluster, not a speed claim: alone on 2 cores this takes well under a minute, but
    # beside a running study (2 busy workers) it took 314 s, so the bound leaves room for a loaded CI machine.
    assert elapsed < 600, f"the Ray cluster sweep took {elapsed:.0f} s"
