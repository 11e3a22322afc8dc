"""PNG figures for the benchmark report (matplotlib, Agg, imported lazily).

The figures are drawn on :class:`matplotlib.figure.Figure` objects directly — no ``pyplot`` and no global
backend switch — so producing a report never disturbs an interactive matplotlib session and works headless.

Line styles follow the paper's Figure 1 where it has them: AdamW dotted (blue), Muon dash-dot (orange),
ANDI solid (green); other arms are dashed in further colours.
"""

from __future__ import annotations

import math
import textwrap
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "Band",
    "LineSeries",
    "LrPanel",
    "LrSeries",
    "Panel",
    "ScatterSeries",
    "arm_style",
    "save_lines",
    "save_lr_panels",
    "save_lr_sensitivity",
    "save_panels",
    "save_profiles",
    "save_scatter",
    "sequence_colors",
]

#: One style per arm, the same on every page: colour (colour-blind-safe hues of Okabe–Ito and Tol), line style and
#: marker. Relatives share a hue family and differ in line and marker (ANDI's variants green, Muon's orange).
ARM_STYLES: dict[str, dict[str, Any]] = {
    "andi": {"color": "#009E73", "linestyle": "-", "marker": "o"},
    "andi-hybrid": {"color": "#006B4F", "linestyle": "--", "marker": "s"},
    "andi-reference": {"color": "#44BB99", "linestyle": ":", "marker": "o"},
    "andi-v7": {"color": "#117733", "linestyle": "-.", "marker": "o"},
    "adamw": {"color": "#0072B2", "linestyle": ":", "marker": "^"},
    "muon": {"color": "#E69F00", "linestyle": "-.", "marker": "D"},
    "d-muon": {"color": "#D55E00", "linestyle": "--", "marker": "D"},
    "d-muon-v7": {"color": "#D55E00", "linestyle": ":", "marker": "d"},
    "muon-andi-paper": {"color": "#E69F00", "linestyle": ":", "marker": "d"},
    "normuon": {"color": "#DDCC77", "linestyle": "--", "marker": "P"},
    "sgd": {"color": "#555555", "linestyle": "--", "marker": "v"},
    "sinkgd-l1": {"color": "#AA3377", "linestyle": ":", "marker": "<"},
    "sinkgd-l5": {"color": "#AA3377", "linestyle": "--", "marker": ">"},
    "rmnp": {"color": "#CC3311", "linestyle": "-.", "marker": "X"},
    "scion-colnorm": {"color": "#56B4E9", "linestyle": "--", "marker": "h"},
    "scion-rownorm": {"color": "#332288", "linestyle": "-.", "marker": "H"},
    "soap": {"color": "#882255", "linestyle": "-", "marker": "*"},
    "shampoo": {"color": "#999933", "linestyle": "-", "marker": "p"},
    "prodigy": {"color": "#661100", "linestyle": "--", "marker": "8"},
    "lion": {"color": "#6699CC", "linestyle": ":", "marker": "*"},
}
#: Arm names that are another name of an arm above (the optimizer an arm runs may differ from its name).
_ALIASES = {"sinkgd": "sinkgd-l5", "scion": "scion-colnorm"}
_SPARE_COLORS = ("#88CCEE", "#44AA99", "#CC6677", "#BBBBBB", "#EE7733", "#0077BB", "#EE3377", "#009988")
_SPARE_LINESTYLES = ("-", "--", ":", "-.")
_SPARE_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*")


def arm_style(arm: str) -> dict[str, Any]:
    """Colour, line style and marker of an arm from its name alone, so an arm looks the same on every page.

    Arms outside :data:`ARM_STYLES` (a user's optimizer) get a style derived from a hash of the name.
    """
    name = _ALIASES.get(arm, arm)
    if name in ARM_STYLES:
        return dict(ARM_STYLES[name])
    h = zlib.crc32(name.encode())
    return {
        "color": _SPARE_COLORS[h % len(_SPARE_COLORS)],
        "linestyle": _SPARE_LINESTYLES[(h >> 8) % len(_SPARE_LINESTYLES)],
        "marker": _SPARE_MARKERS[(h >> 16) % len(_SPARE_MARKERS)],
    }


@dataclass
class Band:
    """A curve (``center``) with a shaded band ``[low, high]`` over seeds."""

    label: str
    steps: Sequence[float]
    center: Sequence[float]
    low: Sequence[float] | None = None
    high: Sequence[float] | None = None
    style: dict[str, Any] = field(default_factory=dict)


@dataclass
class Panel:
    """One axes: a title, axis labels and the bands drawn on it."""

    title: str
    bands: list[Band]
    ylabel: str = "loss"
    xlabel: str = "step"
    logy: bool = False


@dataclass
class LrSeries:
    """Final metric against lr for one arm; ``None``/non-finite scores are failed trials."""

    label: str
    lrs: Sequence[float]
    scores: Sequence[float | None]
    chosen: float | None = None
    style: dict[str, Any] = field(default_factory=dict)


@dataclass
class ScatterSeries:
    """Points of one arm (e.g. one per reporting run) for :func:`save_scatter`."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    style: dict[str, Any] = field(default_factory=dict)


@dataclass
class LrPanel:
    """One axes of :func:`save_lr_panels`: a title and its lr curves (e.g. one arm, a curve per width)."""

    title: str
    series: list[LrSeries]


@dataclass
class LineSeries:
    """A line through points of one arm for :func:`save_lines`; ``flagged`` points get an open marker."""

    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    style: dict[str, Any] = field(default_factory=dict)
    flagged: Sequence[bool] = ()


def sequence_colors(n: int) -> list[str]:
    """``n`` colours along viridis, dark to light (e.g. one per width, in increasing order), as ``#rrggbb``."""
    from matplotlib import colormaps
    from matplotlib.colors import to_hex

    cmap = colormaps["viridis"]
    return [to_hex(cmap(0.85 * i / max(1, n - 1))) for i in range(n)]


def _figure(ncols: int, nrows: int = 1, width: float = 4.6, height: float = 3.6) -> Any:
    from matplotlib.figure import Figure  # lazy: the library never needs matplotlib

    fig = Figure(figsize=(width * ncols, height * nrows), layout="tight")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _positive_only(values: Sequence[float]) -> bool:
    return all(v > 0 for v in values if v is not None and math.isfinite(v))


def _spans_a_decade(values: Sequence[float]) -> bool:
    """Positive values whose largest is more than ten times the smallest: read on a log axis."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return bool(finite) and _positive_only(finite) and max(finite) > 10 * min(finite)


def _label_axes(ax: Any, title: str, xlabel: str, ylabel: str, *, legend: bool) -> None:
    """Labels, title, a light grid on both tick levels and (when there is something to name) the legend."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    if legend:
        _outside_legend(ax)


def save_panels(path: str | Path, panels: Sequence[Panel], suptitle: str = "", ncols: int | None = None) -> Path:
    """Draw ``panels`` side by side (median line with a min–max band per arm) and save a PNG."""
    if not panels:
        raise ValueError("no panels to draw")
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(ncols, nrows)
    for i, panel in enumerate(panels):
        ax = axes[i // ncols][i % ncols]
        for band in panel.bands:
            style = {"linewidth": 1.8, "markevery": 0.1, "markersize": 5, **band.style}
            ax.plot(band.steps, band.center, label=band.label, **style)
            if band.low is not None and band.high is not None:
                ax.fill_between(band.steps, band.low, band.high, color=style.get("color"), alpha=0.18, linewidth=0)
        values = [v for b in panel.bands for v in b.center]
        if (panel.logy and _positive_only(values)) or _spans_a_decade(values):
            ax.set_yscale("log")
        _label_axes(ax, panel.title, panel.xlabel, panel.ylabel, legend=bool(panel.bands))
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if suptitle:  # wrapped to the figure's width (about 10 characters per inch): one panel is narrow
        fig.suptitle(textwrap.fill(suptitle, width=max(40, int(10 * fig.get_figwidth()))))
    return _save(fig, path)


def _draw_lr(ax: Any, series: Sequence[LrSeries], ylabel: str, title: str, logy: bool) -> None:
    """Final metric vs lr per series on ``ax`` (log x); failed trials are crosses on the top edge, a ring the
    chosen lr."""
    finite = [s for ser in series for s in ser.scores if s is not None and math.isfinite(s)]
    top = max(finite) if finite else 1.0
    for ser in series:
        pts = sorted(zip(ser.lrs, ser.scores), key=lambda p: p[0])
        ok = [(lr, s) for lr, s in pts if s is not None and math.isfinite(s)]
        failed = [lr for lr, s in pts if s is None or not math.isfinite(s)]
        style = {"linewidth": 1.6, **ser.style}
        if ok:
            ax.plot([p[0] for p in ok], [p[1] for p in ok], markersize=4, label=ser.label, **{"marker": "o", **style})
        if failed:
            ax.plot(
                failed,
                [top] * len(failed),
                linestyle="none",
                marker="x",
                markersize=8,
                color=style.get("color"),
                label=f"{ser.label} (diverged)",
            )
        if ser.chosen is not None:
            chosen = [s for lr, s in ok if math.isclose(lr, ser.chosen, rel_tol=1e-9)]
            if chosen:
                ax.plot(
                    [ser.chosen],
                    chosen,
                    linestyle="none",
                    marker="o",
                    markersize=11,
                    markerfacecolor="none",
                    color=style.get("color"),
                )
    ax.set_xscale("log")
    if logy and _positive_only(finite):
        ax.set_yscale("log")
    _label_axes(ax, title, "learning rate (log scale)", ylabel, legend=bool(series))


def save_lr_sensitivity(
    path: str | Path, title: str, series: Sequence[LrSeries], ylabel: str, logy: bool = False
) -> Path:
    """Final metric vs lr per arm (log x), DeepOBS style; failed trials are crosses on the top edge."""
    fig, axes = _figure(1, width=5.6, height=4.0)
    _draw_lr(axes[0][0], series, ylabel, title, logy)
    return _save(fig, path)


def save_lr_panels(
    path: str | Path,
    panels: Sequence[LrPanel],
    ylabel: str,
    logy: bool = False,
    suptitle: str = "",
    ncols: int | None = None,
) -> Path:
    """:func:`save_lr_sensitivity`'s plot once per panel (e.g. one arm per panel, one curve per width)."""
    if not panels:
        raise ValueError("no panels to draw")
    ncols = ncols or len(panels)
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = _figure(ncols, nrows, width=5.0, height=3.8)
    for i, panel in enumerate(panels):
        _draw_lr(axes[i // ncols][i % ncols], panel.series, ylabel, panel.title, logy)
    for j in range(len(panels), nrows * ncols):
        axes[j // ncols][j % ncols].set_visible(False)
    if suptitle:
        fig.suptitle(textwrap.fill(suptitle, width=max(40, int(10 * fig.get_figwidth()))))
    return _save(fig, path)


def save_lines(
    path: str | Path,
    title: str,
    series: Sequence[LineSeries],
    xlabel: str,
    ylabel: str,
    logx_base: float | None = None,
    logy: bool = False,
    flagged_label: str = "",
) -> Path:
    """One line with markers per series; ``flagged`` points ringed (``flagged_label`` names them in the legend).

    ``logx_base`` draws x on a log scale of that base with a tick at every x of the data, labelled plainly
    (e.g. base 2 for model widths 64, 128, 256)."""
    from matplotlib.ticker import NullLocator

    fig, axes = _figure(1, width=5.6, height=4.0)
    ax = axes[0][0]
    named = False
    for ser in series:
        style = {"linewidth": 1.8, **ser.style}
        ax.plot(ser.xs, ser.ys, markersize=5, label=ser.label, **{"marker": "o", **style})
        flagged = [(x, y) for x, y, f in zip(ser.xs, ser.ys, ser.flagged) if f]
        if flagged:
            ax.plot(
                [x for x, _ in flagged],
                [y for _, y in flagged],
                linestyle="none",
                marker="o",
                markersize=12,
                markerfacecolor="none",
                color=style.get("color"),
                label=flagged_label if flagged_label and not named else None,
            )
            named = named or bool(flagged_label)
    xs = sorted({x for ser in series for x in ser.xs})
    ys = [y for ser in series for y in ser.ys]
    if logx_base and _positive_only(xs):
        ax.set_xscale("log", base=logx_base)
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.xaxis.set_minor_locator(NullLocator())
    if (logy and _positive_only(ys)) or _spans_a_decade(ys):
        ax.set_yscale("log")
    _label_axes(ax, title, xlabel, ylabel, legend=bool(series))
    return _save(fig, path)


def save_scatter(
    path: str | Path,
    title: str,
    series: Sequence[ScatterSeries],
    xlabel: str,
    ylabel: str,
    logx: bool = False,
    logy: bool = False,
) -> Path:
    """One marker per point, coloured by arm (e.g. final quality against training time, one point per run)."""
    fig, axes = _figure(1, width=5.6, height=4.0)
    ax = axes[0][0]
    for ser in series:
        style = ser.style or {}
        ax.scatter(
            ser.xs,
            ser.ys,
            s=28,
            alpha=0.8,
            color=style.get("color"),
            marker=style.get("marker", "o"),
            label=ser.label,
            edgecolors="none",
        )
    xs = [x for ser in series for x in ser.xs]
    ys = [y for ser in series for y in ser.ys]
    if logx and _positive_only(xs):
        ax.set_xscale("log")
    if (logy and _positive_only(ys)) or _spans_a_decade(ys):
        ax.set_yscale("log")
    _label_axes(ax, title, xlabel, ylabel, legend=bool(series))
    return _save(fig, path)


def save_profiles(
    path: str | Path,
    profiles: Mapping[str, Mapping[str, Sequence[float]]],
    r_max: float,
    styles: Mapping[str, dict[str, Any]] | None = None,
    log_tau: bool = False,
) -> Path:
    """Performance profiles: one panel per measure, ``ρ_s(τ)`` for ``τ ∈ [1, r_max]`` per arm.

    ``profiles[measure][arm]`` are the arm's per-task ratios ``r_{s,w}`` (``inf`` for a miss). ``log_tau``
    draws τ on a log scale (Dolan–Moré), for ratios that range over orders of magnitude.
    """
    fig, axes = _figure(len(profiles), width=4.8, height=3.6)
    for ax, (measure, per_arm) in zip(axes[0], profiles.items()):
        for arm, ratios in per_arm.items():
            rs = sorted(r for r in ratios if r <= r_max)
            n = len(ratios)
            xs, ys = [1.0], [0.0]
            for k, r in enumerate(rs, start=1):
                xs += [max(r, 1.0), max(r, 1.0)]
                ys += [ys[-1], k / n]
            xs.append(r_max)
            ys.append(ys[-1])
            style = {"linewidth": 1.8, **(styles or {}).get(arm, {}), "marker": None}
            ax.plot(xs, ys, label=arm, **style)
        if log_tau:
            ax.set_xscale("log")
        ax.set_xlim(1.0, r_max)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("τ (ratio to the best arm)")
        ax.set_ylabel("fraction of tasks with r ≤ τ")
        ax.set_title(f"performance profile: {measure}")
        ax.grid(True, alpha=0.3)
        _outside_legend(ax)
    return _save(fig, path)


def _outside_legend(ax: Any) -> None:
    """The legend right of the axes, where it covers no data (the saved figure widens to hold it)."""
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, format="png", bbox_inches="tight")
    return path
