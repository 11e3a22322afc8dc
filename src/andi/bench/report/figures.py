"""The report's figures: plot data computed from analysed results, and each figure's markdown with its caption.

Drawing is :mod:`andi.bench.report.plots` (matplotlib Agg, imported lazily); this module turns
:class:`~andi.bench.report.TaskResult` objects into what to draw. Per task of a fair protocol:

* ``<prefix>-<task>-curves.png`` — training loss and test metric, median and min–max over reporting seeds;
* ``<prefix>-<task>-lr.png`` — final validation metric of every tuning run against its lr (log x), per arm;
* ``<prefix>-<task>-time-quality.png`` — final test metric against training time, one point per reporting run;
* ``<prefix>-<task>-grad-norm.png`` — global gradient norm against step, median and min–max over seeds (log y).

Across the tasks of a protocol run, ``<prefix>-quality-profile.png``: Dolan–Moré performance profiles of the
final test error (:func:`quality_ratios`). When the tasks are one model at several widths (the ``width``
protocol, :func:`andi.bench.report.width_tasks`):

* ``<prefix>-width-lr.png`` — one panel per arm: final validation metric of every tuning run against its lr
  (log x; log y for a loss), one curve per width;
* ``<prefix>-width-best-lr.png`` — the chosen lr against ``n_embd`` (both log scales), one line per arm.

A figure, or a panel, whose data is missing is skipped — an arm without records, records written before gradient
norms were recorded, a task without tuning runs — so a partial results directory never stops a report. File
names depend only on the protocol, size and task names, and image links are written with ``/`` on every system.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from andi.bench.execution.files import file_safe
from andi.bench.report import stats

if TYPE_CHECKING:
    from andi.bench.report.analysis import TaskResult
    from andi.bench.report.plots import Band

__all__ = [
    "bands",
    "fair_task_figures",
    "figure_lines",
    "lr_figure",
    "quality_profile_lines",
    "quality_ratios",
    "width_figure_lines",
]


# ============================================================================================== curves
def figure_title(t: TaskResult) -> str:
    """Which sweep a figure shows: ``protocol · task (size)``, from the task's manifest."""
    m = t.manifest
    return f"{m.get('protocol', '?')} · {t.task} ({m.get('size', '?')} size)"


def _band(series: Sequence[tuple[Sequence[float], Sequence[float | None]]], bins: int | None = None) -> Any:
    """Median and min–max over seeds; with ``bins``, each seed's curve is first averaged in step bins."""
    import numpy as np

    if not series:
        return [], [], [], []
    max_step = max((max(s) for s, _ in series if len(s)), default=0)
    width = max(1, math.ceil((max_step + 1) / bins)) if bins else 1
    table: dict[float, list[float]] = {}
    for steps, values in series:
        per: dict[float, list[float]] = {}
        for s, v in zip(steps, values):
            x = (s // width) * width + (width - 1) / 2 if bins else float(s)
            per.setdefault(x, []).append(math.nan if v is None else float(v))
        for x, vs in per.items():
            table.setdefault(x, []).append(float(np.nanmean(vs)) if np.isfinite(vs).any() else math.nan)
    xs = sorted(table)
    n = len(series)
    mat = np.full((len(xs), n), np.nan)
    for i, x in enumerate(xs):
        mat[i, : len(table[x])] = table[x]
    mat[~np.isfinite(mat)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns after divergence
        return xs, np.nanmedian(mat, 1), np.nanmin(mat, 1), np.nanmax(mat, 1)


def _series(record: dict, curve: str, metric: str | None) -> tuple[list, list]:
    """``(steps, values)`` of one record's ``curve``: ``train`` loss, ``eval`` ``metric`` or ``grad_norm``."""
    if curve == "train":
        return record["train"]["steps"], record["train"]["loss"]
    if curve == "grad_norm":  # optional: records written before gradient norms were recorded have none
        train = record["train"]
        return train.get("grad_norm_steps") or [], train.get("grad_norm") or []
    return record["eval"].get("steps") or [], record["eval"].get(metric) or []


def bands(task: TaskResult, curve: str, metric: str | None = None, bins: int | None = None) -> list[Band]:
    """One :class:`~andi.bench.report.plots.Band` per arm that has the curve (``train``, ``eval`` or ``grad_norm``)."""
    from andi.bench.report.plots import Band, arm_style

    out = []
    for a in task.arms:
        series = [_series(r, curve, metric) for r in a.records]
        xs, med, lo, hi = _band([s for s in series if len(s[0])], bins)
        if len(xs):
            out.append(Band(a.label, xs, med, lo, hi, arm_style(a.arm)))
    return out


# ============================================================================================= figures
def figure_lines(path: Path | None, rel: Path, alt: str, caption: str) -> list[str]:
    """The markdown of a figure (image link and a one-line italic caption); nothing when it was skipped."""
    if path is None:
        return []
    return [f"![{alt}]({(rel / path.name).as_posix()})", "", f"_{caption}_", ""]


def _log_metric(t: TaskResult) -> bool:
    """Log scale for the held-out metric: saddle's loss spans orders of magnitude (as in the paper)."""
    return t.task == "saddle" and not t.higher_is_better


def lr_figure(t: TaskResult, path: Path, ylabel: str, logy: bool) -> Path | None:
    """Final tuning metric against lr (log x), one line per arm with tuning runs; ``None`` when none has."""
    from andi.bench.report.plots import LrSeries, arm_style, save_lr_sensitivity

    series = [
        LrSeries(a.label, [e["lr"] for e in a.tuning], [e["score"] for e in a.tuning], a.chosen_lr, arm_style(a.arm))
        for i, a in enumerate(t.arms)
        if a.tuning
    ]
    if not series:
        return None
    return save_lr_sensitivity(path, f"{figure_title(t)}: lr sensitivity", series, ylabel, logy)


def curves_figure(t: TaskResult, path: Path, split: str = "test", metric: str | None = None) -> Path | None:
    """Training loss (50 bin means) and the evaluated ``metric`` (the task's by default) against step: median and
    min–max over reporting seeds; ``None`` without curves."""
    from andi.bench.report.plots import Panel, save_panels

    metric = metric or t.metric
    panels = [
        Panel("train loss (bin means)", bands(t, "train", bins=50), "train loss", logy=t.task == "saddle"),
        Panel(f"{split} {metric}", bands(t, "eval", metric), metric, logy=_log_metric(t)),
    ]
    panels = [p for p in panels if p.bands]
    if not panels:
        return None
    return save_panels(path, panels, f"{figure_title(t)}: median and min–max over reporting seeds")


def _is_time(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0


def _time_quality_figure(t: TaskResult, path: Path) -> Path | None:
    """Final test metric against training seconds (evaluation excluded), one point per reporting run."""
    from andi.bench.report.plots import ScatterSeries, arm_style, save_scatter

    series = []
    for a in t.arms:
        points = [
            (float(r["timing"]["train_s"]), float(v))
            for r, v in zip(a.records, a.finals)
            if v is not None and _is_time(r["timing"].get("train_s"))
        ]
        if points:
            series.append(ScatterSeries(a.label, [x for x, _ in points], [y for _, y in points], arm_style(a.arm)))
    if not series:
        return None
    return save_scatter(
        path,
        f"{figure_title(t)}: final test {t.metric} vs training time",
        series,
        "training time (s, evaluation excluded)",
        f"final test {t.metric}",
        logy=_log_metric(t),
    )


def _grad_norm_figure(t: TaskResult, path: Path) -> Path | None:
    from andi.bench.report.plots import Panel, save_panels

    grad_bands = bands(t, "grad_norm")
    if not grad_bands:
        return None
    panel = Panel("global gradient norm", grad_bands, "‖∇L‖₂ (all parameters, minibatch)", logy=True)
    return save_panels(path, [panel], f"{figure_title(t)}: gradient norm, median and min–max over reporting seeds")


def fair_task_figures(t: TaskResult, fig_dir: Path, prefix: str, rel: Path) -> list[str]:
    """Write a fair-protocol task's figures under ``fig_dir``; their markdown, skipped ones left out."""
    base = fig_dir / f"{prefix}-{file_safe(t.task)}"
    return [
        *figure_lines(
            curves_figure(t, base.with_name(f"{base.name}-curves.png")),
            rel,
            f"{t.task} curves",
            "Training loss (each seed's loss averaged over 50 equal step bins) and test metric against step: "
            "median (line) and min–max "
            "(band) over reporting seeds.",
        ),
        *figure_lines(
            lr_figure(t, base.with_name(f"{base.name}-lr.png"), f"final validation {t.metric}", _log_metric(t)),
            rel,
            f"{t.task} lr sensitivity",
            "Final validation metric of every tuning run against its learning rate (log scale); a cross is a "
            "diverged trial, a ring the chosen lr.",
        ),
        *figure_lines(
            _time_quality_figure(t, base.with_name(f"{base.name}-time-quality.png")),
            rel,
            f"{t.task} quality vs wall-clock",
            "Final test metric against training time (evaluation excluded), one point per reporting run.",
        ),
        *figure_lines(
            _grad_norm_figure(t, base.with_name(f"{base.name}-grad-norm.png")),
            rel,
            f"{t.task} gradient norm",
            "Global gradient norm of the minibatch before each evaluation's last update (log scale): median "
            "(line) and min–max (band) over reporting seeds.",
        ),
    ]


# ====================================================================================== across tasks
def quality_ratios(group: Sequence[TaskResult]) -> tuple[dict[str, dict[str, float]], dict[str, tuple[str, str]]]:
    """Dolan–Moré ratios of the final test error: ``r_{s,w} = e_{s,w} / min_s e_{s,w}``; and each arm's label.

    ``e_{s,w}`` is arm ``s``'s median over its reporting seeds on task ``w`` of the final test error
    (:func:`andi.bench.report.stats.metric_error`: the loss itself, or ``1 - accuracy``); a diverged or failed seed
    counts as an infinite error, and an arm without results on a task misses it (``r = inf``). Returns
    ``(ratios[arm][task], {arm: (label, optimizer)})``. A task with a negative or undefined error (not an
    error measure) is left out.
    """
    errors: dict[str, dict[str, float]] = {}
    labels: dict[str, tuple[str, str]] = {}
    for t in group:
        per_arm = {}
        for a in t.arms:
            labels.setdefault(a.arm, (a.label, a.optimizer))
            runs = [stats.metric_error(v, t.higher_is_better) for v in a.finals] + [math.inf] * len(a.errors)
            if runs:
                per_arm[a.arm] = stats.median(runs)
        if per_arm and all(e >= 0 for e in per_arm.values()):  # nan compares False: left out too
            for arm, e in per_arm.items():
                errors.setdefault(arm, {})[t.task] = e
    for arm in labels:
        errors.setdefault(arm, {})
    return stats.performance_ratios(errors), labels


def quality_profile_lines(group: Sequence[TaskResult], fig_dir: Path, prefix: str, rel: Path) -> list[str]:
    """Draw the final-error performance profile of a protocol run; its markdown (nothing when no arm scored)."""
    from andi.bench.report.plots import arm_style, save_profiles

    ratios, labels = quality_ratios(group)
    finite = [r for per_task in ratios.values() for r in per_task.values() if math.isfinite(r)]
    if not finite:
        return []
    tau_max = max(1.1, 1.05 * max(finite))
    path = save_profiles(
        fig_dir / f"{prefix}-quality-profile.png",
        {"final test error": {labels[a][0]: list(ratios[a].values()) for a in labels}},
        tau_max,
        {labels[a][0]: arm_style(a) for a in labels},
        log_tau=tau_max > 4.0,
    )
    return figure_lines(
        path,
        rel,
        "final-quality performance profiles",
        "Dolan–Moré profile of final quality: the fraction of tasks on which an arm's final test error (median "
        "over seeds; error = loss, or 1 − accuracy; a diverged seed counts as infinite) is within a factor τ "
        "of the best arm's.",
    )


# ================================================================================================ width
def _width_arms(widths: Sequence[tuple[int, TaskResult]]) -> list[tuple[str, str, str]]:
    """``(arm, label, optimizer)`` of every arm of the width tasks, in order of first appearance."""
    seen: dict[str, tuple[str, str, str]] = {}
    for _, t in widths:
        for a in t.arms:
            seen.setdefault(a.arm, (a.arm, a.label, a.optimizer))
    return list(seen.values())


def _width_lr_figure(widths: Sequence[tuple[int, TaskResult]], path: Path) -> Path | None:
    """One panel per arm with tuning runs: final validation metric against lr, one curve per width."""
    from andi.bench.report.plots import LrPanel, LrSeries, save_lr_panels, sequence_colors

    colors = sequence_colors(len(widths))
    panels = []
    for arm, label, _ in _width_arms(widths):
        series = []
        for (n, t), color in zip(widths, colors):
            a = next((a for a in t.arms if a.arm == arm), None)
            if a is not None and a.tuning:
                lrs, scores = [e["lr"] for e in a.tuning], [e["score"] for e in a.tuning]
                series.append(LrSeries(f"n_embd {n}", lrs, scores, a.chosen_lr, {"color": color, "linestyle": "-"}))
        if series:
            panels.append(LrPanel(label, series))
    if not panels:
        return None
    t0 = widths[0][1]
    return save_lr_panels(
        path,
        panels,
        f"final validation {t0.metric}",
        logy=not t0.higher_is_better,
        suptitle="lr sensitivity per width (tuning runs)",
        ncols=2 if len(panels) in (2, 4) else min(len(panels), 3),
    )


def _width_best_lr_figure(widths: Sequence[tuple[int, TaskResult]], path: Path) -> Path | None:
    """The chosen lr against ``n_embd`` (log2 x, log y), one line per arm; a ring marks a chosen lr at the edge."""
    from andi.bench.report.plots import LineSeries, arm_style, save_lines

    series = []
    for arm, label, _optimizer in _width_arms(widths):
        points = [(n, a) for n, t in widths for a in t.arms if a.arm == arm and a.chosen_lr > 0]
        if points:
            series.append(
                LineSeries(
                    label,
                    [n for n, _ in points],
                    [a.chosen_lr for _, a in points],
                    arm_style(arm),
                    [a.at_edge or a.edge_capped for _, a in points],
                )
            )
    if not series:
        return None
    return save_lines(
        path,
        "chosen lr against width",
        series,
        "n_embd (log2 scale)",
        "chosen lr (log scale)",
        logx_base=2,
        logy=True,
        flagged_label="at the edge of the explored lrs",
    )


def width_figure_lines(widths: Sequence[tuple[int, TaskResult]], fig_dir: Path, prefix: str, rel: Path) -> list[str]:
    """Write the two width figures (see the module docstring) under ``fig_dir``; their markdown."""
    return [
        *figure_lines(
            _width_lr_figure(widths, fig_dir / f"{prefix}-width-lr.png"),
            rel,
            "lr sensitivity per width",
            "Final validation metric of every tuning run against its learning rate (log scale), one panel per arm "
            "and one curve per width; a cross is a diverged trial, a ring the chosen lr.",
        ),
        *figure_lines(
            _width_best_lr_figure(widths, fig_dir / f"{prefix}-width-best-lr.png"),
            rel,
            "chosen lr against width",
            "The chosen learning rate of each arm against the model width n_embd (both log scales); a flat line "
            "is an lr that transfers across width, a ring a chosen lr at the edge of the lrs explored.",
        ),
    ]
