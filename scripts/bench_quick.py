#!/usr/bin/env python
"""Wall time of ``andi-bench quick`` with its defaults and with each explicit execution setting, side by side.

A benchmark, not a test: it takes about ten minutes on 2 cores. Run it after changing the execution defaults
(:mod:`andi.bench.execution.defaults`); the defaults should stay within 15 % of the best explicit setting, on an idle
machine and on one whose cores are busy with other work (``--busy N`` starts N spinning processes for the
duration and stops them after). Each setting runs into its own fresh output folder, report included, as the
README's command does; the order is the listed one, so compare times of one invocation only.

    python scripts/bench_quick.py --json quick-idle.json
    python scripts/bench_quick.py --busy 2 --json quick-busy.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: (label, extra arguments) — the default first, then every explicit setting of threads and workers on 2 cores.
SETTINGS: list[tuple[str, list[str]]] = [
    ("defaults (no flags)", []),
    ("--executor serial (torch's threads)", ["--executor", "serial"]),
    ("--threads 1 (serial)", ["--threads", "1"]),
    ("--threads 2 (serial)", ["--threads", "2"]),
    ("--workers 2 --threads 1", ["--workers", "2", "--threads", "1"]),
    ("--workers 1 --threads 2", ["--workers", "1", "--threads", "2"]),
]


def _spin() -> None:  # pragma: no cover - a load generator
    while True:
        pass


def time_quick(extra: list[str], out: Path, size: str) -> float:
    cmd = ["andi-bench", "quick", "--size", size, "--out", str(out), *extra]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="cpu", choices=("cpu", "smoke"), help="quick's size (default: cpu, as the README)")
    p.add_argument("--busy", type=int, default=0, metavar="N", help="spinning processes beside it (default: 0)")
    p.add_argument("--only", default=None, help="comma-separated indices of SETTINGS to run (default: all)")
    p.add_argument("--json", type=Path, default=None, help="also write the measurements here")
    args = p.parse_args(argv)
    chosen = [SETTINGS[int(i)] for i in args.only.split(",")] if args.only else SETTINGS
    spinners = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(args.busy)]
    for s in spinners:
        s.start()
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-quick-") as tmp:
            for i, (label, extra) in enumerate(chosen):
                seconds = time_quick(extra, Path(tmp) / str(i), args.size)
                rows.append({"setting": label, "args": extra, "seconds": round(seconds, 1)})
                print(f"{label:40s} {seconds:7.1f} s", flush=True)
    finally:
        for s in spinners:
            s.kill()
            s.join()
    best = min(r["seconds"] for r in rows[1:]) if len(rows) > 1 else rows[0]["seconds"]
    print(f"\n| `andi-bench quick --size {args.size}` with | wall time | vs best explicit |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['seconds']:.1f} s | {r['seconds'] / best:.2f}× |")
    if args.json:
        meta = {
            "size": args.size,
            "busy_processes": args.busy,
            "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
            "cpu": platform.processor() or platform.machine(),
            "python": sys.version.split()[0],
        }
        args.json.write_text(json.dumps({"machine": meta, "runs": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
