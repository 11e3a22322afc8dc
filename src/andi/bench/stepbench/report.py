"""Outputs of the step benchmark (:mod:`andi.bench.stepbench`): markdown table, PNG figure, files on disk.

matplotlib is imported lazily and used through :class:`matplotlib.figure.Figure` (no pyplot, no global backend).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["format_markdown", "plot_results", "write_outputs"]


def _fmt(x: float | None, spec: str) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def _fmt_load(load: Mapping[str, Any] | None) -> str:
    if not load or load.get("before") is None:
        return "n/a"
    return f"{load['before'][0]:.1f}/{load['after'][0]:.1f}"


def format_markdown(result: Mapping[str, Any]) -> str:
    """A markdown table of ``result`` (one row per case × optimizer), headed by the device facts."""
    meta = result["meta"]
    dev, peak = meta["device"], meta["peak_bandwidth"]
    lines = [
        f"Device: {dev['type']} — {dev['name']}, {dev['threads']} threads; dtype {meta['dtype']}; "
        f"torch {meta['versions']['torch']}; median of {meta['repeats']} steps after {meta['warmup']} warm-up; "
        f"load average before/after {_fmt_load(meta.get('load_average'))}.",
        f"Peak bandwidth: {peak['peak_gbps']:.1f} GB/s ({peak['source']}). Effective GB/s counts "
        f"{meta['traffic_model']}; ratios are against `{meta['baseline']}`.",
        "",
        "| case | optimizer | params | median ms | min ms | × " + meta["baseline"] + " | ns/param | GB/s @7N "
        "| % peak | state B/param |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["rows"]:
        if r["status"] != "ok":
            lines.append(f"| {r['case']} | {r['optimizer']} | | {r['status']}: {r['reason']} | | | | | | |")
            continue
        frac = r.get("frac_of_peak")
        lines.append(
            f"| {r['case']} | {r['optimizer']} | {r['numel']:,} | {r['median_s'] * 1e3:.3f} | {r['min_s'] * 1e3:.3f} "
            f"| {_fmt(r['ratio_to_baseline'], '.2f')} | {r['ns_per_param']:.3f} | {r['gbps']:.1f} "
            f"| {_fmt(None if frac is None else 100 * frac, '.0f')} | {r['state_bytes_per_param']:.2f} |"
        )
    return "\n".join(lines) + "\n"


# Families keep the report's colours (ANDI green solid, AdamW blue dotted, Muon orange dash-dot); paths of one
# family differ by shade.
_STYLES = {
    "andi-single": ("#74c476", "-"),
    "andi-foreach": ("#31a354", "-"),
    "andi-compiled": ("#006d2c", "-"),
    "andi-fused": ("#00441b", "-"),
    "adamw-foreach": ("#6baed6", ":"),
    "adamw-fused": ("#08519c", ":"),
    "sgd-nesterov": ("tab:gray", "--"),
    "muon": ("tab:orange", "-."),
}
_MARKERS = "osD^v<>px*h"


def plot_results(result: Mapping[str, Any], path: str | Path) -> Path:
    """Save a two-panel PNG: median step time vs N and ns per parameter vs N (log-log), one series per arm.

    Points of the same shape set are joined (``square-sweep`` shows the growth with N); other cases are markers.
    """
    from matplotlib.figure import Figure

    rows = [r for r in result["rows"] if r["status"] == "ok"]
    fig = Figure(figsize=(12, 4.8), layout="constrained")
    ax_t, ax_n = fig.subplots(1, 2)
    arms = list(dict.fromkeys(r["optimizer"] for r in rows))
    for i, arm in enumerate(arms):
        color, ls = _STYLES.get(arm, (f"C{i % 10}", "--"))
        pts = sorted(
            ((r["numel"], r["median_s"], r["ns_per_param"], r["shape_set"]) for r in rows if r["optimizer"] == arm),
            key=lambda p: p[0],
        )
        marker = _MARKERS[i % len(_MARKERS)]
        for ax, k in ((ax_t, 1), (ax_n, 2)):
            for j, sset in enumerate(dict.fromkeys(p[3] for p in pts)):
                xs = [p[0] for p in pts if p[3] == sset]
                ys = [p[k] for p in pts if p[3] == sset]
                ax.plot(
                    xs,
                    ys,
                    color=color,
                    linestyle=ls if len(xs) > 1 else "none",
                    marker=marker,
                    label=arm if j == 0 else None,
                )
    meta = result["meta"]
    for ax, ylabel in ((ax_t, "optimizer.step() median [s]"), (ax_n, "ns per parameter")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("parameters N")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    ax_t.set_title(f"step time — {meta['device']['name']} ({meta['device']['type']}, {meta['dtype']})")
    ax_n.set_title("cost per parameter (flat = O(N))")
    if arms:
        ax_n.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=120)
    return path


def write_outputs(result: Mapping[str, Any], out_dir: str | Path, *, plot: bool = True) -> dict[str, Path]:
    """Write ``step_bench.json``, ``step_bench.md`` and (``plot``) ``step_bench.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "step_bench.json", "markdown": out / "step_bench.md"}
    paths["json"].write_text(json.dumps(result, indent=1) + "\n")
    paths["markdown"].write_text(format_markdown(result))
    if plot:
        paths["png"] = plot_results(result, out / "step_bench.png")
    return paths
