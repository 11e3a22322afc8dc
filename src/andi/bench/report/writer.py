"""``andi-bench report DIR|ARCHIVE``: the markdown page with PNG figures, assembled from the analysis of the records.

For each protocol run found in ``DIR`` (its ``manifest-*.json``) the report gives, per task:

* fair protocols — a table (arm, chosen lr, trials used, final held-out metric mean ± std over reporting
  seeds, median steps and wall-clock to target, speedup over AdamW, optimizer-step time, optimizer-state
  bytes, peak memory), the comparison of every arm with the best *other* arm, and figures (curves with seed
  bands, lr sensitivity, final quality against training time, gradient norm: :mod:`andi.bench.report.figures`);
  then the head-to-head table of ANDI and ANDI-hybrid against AdamW and Muon (:func:`head_to_head`), a verdict
  summary, the AlgoPerf performance profile and score (r_max = 4), the geometric-mean speedup over AdamW,
  Dolan–Moré profiles of the final test error across tasks, and — when the tasks are one model at two or more
  widths (``task_model.n_embd`` in the manifests: the ``width`` protocol) — a learning-rate transfer section: the
  chosen lr of every arm at each width with the ratio largest-width / smallest-width lr, and two figures (tuning
  curves per width, chosen lr against width);
* the replay protocol — the paper's quantities (last recorded minibatch loss per seed, the ANDI grid
  search) and a Figure-1-like three-panel plot.

A chosen lr is marked ``(edge-ext.)`` when the edge rule extended the grid, ``(at edge)`` when it is at an edge of
the lrs explored, and ``(edge-capped)`` when the manifest says it is still there after the last extension round
(study protocols), with a sentence under the table: that arm's optimum may lie beyond the grid.

Verdicts are two-sided. Each arm is tested against the best other arm (by mean final metric) with a two-sided
paired t-test over the seeds both have when at least two pair up, Welch's two-sided t-test otherwise; the
p-values of the protocol run's distinct comparisons (A vs B and B vs A are one) go through Holm–Bonferroni at
α = 0.05, and a rejected comparison reads "better than B" or "worse than B" from the sign of the mean
difference and whether higher is better; otherwise "no significant difference". The head-to-head table uses the
same tests and wording for the pairs the paper's claims are about (ANDI or ANDI-hybrid against AdamW or Muon, on
every task), with Holm–Bonferroni over that table's rows as a family of its own.

The target of time-to-target is the median final metric of tuned AdamW over the reporting seeds.

Partial results never stop a report: a record that is missing or corrupt (moved aside, excluded, never
recomputed here) leaves its seed out, an arm with no surviving record is shown as ``missing (0 of n seeds)``
and skipped in the plots, and a figure without data is left out. The report is replaced atomically; if it
cannot be produced, the previous report at that path is removed, since it describes other results and would
be taken for the current one.

``ARCHIVE`` is a ``.tar``, ``.tar.gz`` or ``.tar.xz`` of a results directory, read by
:mod:`andi.bench.report.archive` (every member checked, extracted into a temporary folder, the report written to
``--out``, default ``report.md`` next to the archive). The report is a function of the records alone: it names the
results as given on the command line (the archive, never the temporary folder), holds no time stamp, orders
everything by sorted names or the manifests' order, and links figures with ``/`` on every system, so the same
records give the same bytes, and the figures the same file names, on every run and machine.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from andi.bench.execution.files import atomic_write_text
from andi.bench.execution.runner import V7_SCORE_EVALUATIONS
from andi.bench.execution.store import ResultStore, variant_id
from andi.bench.paper_claims import hash_note
from andi.bench.protocols.replay import V7_REPRODUCED_WITHIN
from andi.bench.report import stats
from andi.bench.report.analysis import (
    ALPHA,
    R_MAX,
    TaskResult,
    _Records,
    analyze_fair,
    analyze_replay,
    apply_holm,
    head_to_head,
    head_to_head_pairs,
    manifest_width,
    replay_is_scored,
    run_shape,
    width_tasks,
)
from andi.bench.report.figures import (
    bands,
    curves_figure,
    fair_task_figures,
    figure_lines,
    lr_figure,
    quality_profile_lines,
    width_figure_lines,
)
from andi.bench.report.results_json import results_data
from andi.bench.report.tables import (
    comparison_lines,
    env_lines,
    fair_table,
    fmt,
    fmt_bytes,
    fmt_signed,
    head_to_head_lines,
    verdict_summary_lines,
    width_table_lines,
)

__all__ = ["generate_report"]

_FIG1_ORDER = ("saddle", "cifar", "gpt")
_FIG1_TITLES = {"saddle": "SADDLE (autoencoder)", "cifar": "CIFAR (ResNet-9)", "gpt": "GPT (char NanoGPT)"}


def _figure1_lines(panels: list[Any], path: Path | None, rel: Path, suptitle: str, caption: str) -> list[str]:
    """The Figure-1 layout (saddle, cifar, gpt in the paper's order) of ``panels`` that have data, if any."""
    from andi.bench.report.plots import save_panels

    panels = [p for p in panels if p.bands]
    if path is None or not panels:
        return []
    order = {title: i for i, title in enumerate(_FIG1_TITLES.values())}
    panels.sort(key=lambda p: order[p.title])
    return figure_lines(save_panels(path, panels, suptitle), rel, "figure 1", caption)


def _variant_words(m: dict) -> str:
    steps = f"{m['steps']} steps" if m.get("steps") else "the protocol's steps"
    seeds = m["spec"].get("reporting_seeds") or m.get("seeds")
    return f"{steps}, {m['dtype']} on {m['device']}, reporting seeds {seeds}"


def _shape_line(t: TaskResult) -> str:
    steps, batch = run_shape(t)
    m = t.manifest
    return (
        f"Every run: {steps if steps else '?'} steps of batch {batch if batch else '?'}, {m['dtype']} on {m['device']}."
    )


def _source_lines(t: TaskResult) -> list[str]:
    """Where a task or optimizer from outside the package came from, with the SHA-256 its records were made with
    (:mod:`andi.bench.tasks.external`, :mod:`andi.optim.user`); nothing for the package's own."""
    records = [r for a in t.arms for r in a.records]
    task_sha = sorted({r["config"].get("task_source") for r in records} - {None})
    lines = []
    if task_sha:
        lines.append(f"Task from outside the package: `{t.task}`, source SHA-256 {', '.join(task_sha)}.")
    for a in t.arms:
        shas = sorted({r["config"].get("optimizer_source") for r in a.records} - {None})
        if shas:
            where = f"{a.label} = `{a.optimizer}`"
            lines.append(f"Optimizer from outside the package: {where}, source SHA-256 {', '.join(shas)}.")
    return [*lines, ""] if lines else []


def _fair_section(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    from andi.bench.report.plots import Panel

    m = group[0].manifest
    spec = m["spec"]
    lines = [f"## Protocol `{m['protocol']}` — size `{m['size']}`", "", spec.get("description", ""), ""]
    if not spec.get("evidence", True):
        lines += [
            "> **Demonstration, not evidence**: too few seeds and grid points for a claim. "
            "Use `andi-bench run --protocol fair` for results.",
            "",
        ]
    ks = spec["ks"]
    lines += [
        f"lr grid per arm: base × {spec['factor']:g}^k, k ∈ {{{ks[0]}, …, {ks[-1]}}} ({len(ks)} points), "
        f"edge extension {spec['edge_extension']} points; tuning seeds {spec['tuning_seeds']}, reporting "
        f"seeds {spec['reporting_seeds']}; schedule {spec['schedule']} (warmup {spec['warmup_frac']:g}, "
        f"decay {spec['decay_frac']:g}); selection on the final validation metric, report on test.",
        "",
    ]
    fig1 = []
    for t in group:
        lines += [
            f"### {t.task}",
            "",
            _shape_line(t),
            "",
            *_source_lines(t),
            *fair_table(t),
            "",
            *comparison_lines(t, ALPHA),
            "",
        ]
        if fig_dir is not None:
            lines += fair_task_figures(t, fig_dir, prefix, rel)
            if t.task in _FIG1_ORDER:
                train = bands(t, "train", bins=50)
                fig1.append(Panel(_FIG1_TITLES[t.task], train, "training loss (bin means)", logy=t.task == "saddle"))
    pairs = [(t, a, b) for t in group for a, b in head_to_head_pairs(t)]
    if pairs:
        lines += head_to_head_lines(group, head_to_head(group, ALPHA), pairs, ALPHA)
    lines += verdict_summary_lines(group, ALPHA)
    figure1 = _figure1_lines(
        fig1,
        fig_dir / f"{prefix}-figure1.png" if fig_dir is not None else None,
        rel,
        "Training loss as in the paper's Figure 1 (each seed's loss averaged over 50 equal step bins; median and "
        "min–max over reporting seeds)",
        "Training loss per task in the paper's Figure-1 layout: median (line) and min–max (band) over reporting "
        "seeds of each seed's means over 50 equal step bins.",
    )
    if figure1:
        lines += ["### Figure-1 layout (training loss; the tables above use held-out metrics)", "", *figure1]
    real, toys = [t for t in group if not t.toy], [t for t in group if t.toy]
    for subset, title, suffix in ((real, "Across tasks", ""), (toys, "Across the toy landscapes", "-toys")):
        if not subset:
            continue
        if subset is real and toys:
            title = "Across the real tasks (the toy landscapes have their own profile below)"
        lines += _aggregate(subset, fig_dir, prefix + suffix, rel, title)
        if fig_dir is not None:
            lines += quality_profile_lines(subset, fig_dir, prefix + suffix, rel)
    widths = width_tasks(group)
    if widths:
        lines += ["### Learning-rate transfer across width", "", *width_table_lines(widths), ""]
        if fig_dir is not None:
            lines += width_figure_lines(widths, fig_dir, prefix, rel)
    return lines


def _aggregate(
    group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path, title: str = "Across tasks"
) -> list[str]:
    """The AlgoPerf table across tasks (time and steps to target) and its performance-profile figure."""
    from andi.bench.report.plots import arm_style, save_profiles

    tasks = [t for t in group if t.target is not None]
    if not tasks:
        return []
    labels = {a.arm: (a.label, a.optimizer) for t in tasks for a in t.arms}
    # An arm without any surviving record on a task has no time there: left out, which scores as a miss.
    present = {arm: [t for t in tasks if any(a.arm == arm and a.records for a in t.arms)] for arm in labels}
    declared = {arm: sum(any(a.arm == arm for a in t.arms) for t in tasks) for arm in labels}
    times = {arm: {t.task: t.arm(arm).median_time for t in present[arm]} for arm in labels}
    steps = {arm: {t.task: t.arm(arm).median_steps for t in present[arm]} for arm in labels}
    ref = group[0].manifest.get("reference_arm", "adamw")
    rt, rs = stats.performance_ratios(times), stats.performance_ratios(steps)
    lines = [
        f"### {title} ({len(tasks)} task(s))",
        "",
        "| arm | AlgoPerf score (time) | AlgoPerf score (steps) | geomean speedup vs AdamW (time) | "
        "geomean speedup (steps) | tasks reaching target |",
        "|---|---|---|---|---|---|",
    ]
    for arm, (label, _) in labels.items():
        reached = sum(math.isfinite(v) for v in times[arm].values())
        missing = declared[arm] - len(times[arm])
        missing_note = f" ({missing} missing)" if missing else ""
        gt = stats.geometric_mean_speedup(times, arm, ref, R_MAX) if ref in times else math.nan
        gs = stats.geometric_mean_speedup(steps, arm, ref, R_MAX) if ref in steps else math.nan
        lines.append(
            f"| {label} | {fmt(stats.algoperf_score(rt[arm], R_MAX), 3)} | "
            f"{fmt(stats.algoperf_score(rs[arm], R_MAX), 3)} | {fmt(gt, 3)} | {fmt(gs, 3)} | "
            f"{reached}/{declared[arm]}{missing_note} |"
        )
    incomplete = any(declared[a] > len(times[a]) for a in labels)
    missing_rule = " A task where an arm has no results (missing) counts as a miss for it." if incomplete else ""
    lines += [
        "",
        f"AlgoPerf score B = 1/(r_max − 1) ∫₁^r_max ρ(τ) dτ with r_max = {R_MAX:g} (1 = fastest on every "
        f"task). In the geometric mean a miss counts as r = r_max (our choice).{missing_rule}",
        "",
    ]
    if fig_dir is not None:
        p = save_profiles(
            fig_dir / f"{prefix}-profile.png",
            {
                "wall-clock": {labels[a][0]: list(rt[a].values()) for a in labels},
                "steps": {labels[a][0]: list(rs[a].values()) for a in labels},
            },
            R_MAX,
            {labels[a][0]: arm_style(a) for a in labels},
        )
        lines += figure_lines(
            p,
            rel,
            "performance profiles",
            "AlgoPerf performance profiles: the fraction of tasks an arm reaches the target within τ times the "
            "fastest arm's wall-clock time (left) or steps (right).",
        )
    return lines


def _replay_task_head(t: TaskResult, columns: list[str]) -> list[str]:
    """A replay task's heading, its run shape and the header of its table with ``columns``."""
    return [f"### {t.task}", "", _shape_line(t), "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]


def _scored_replay_section(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    """A replay that scores runs as its script does, set beside the author's table (the v7 experiment)."""
    m = group[0].manifest
    spec = m["spec"]
    author = dict(spec["author_scores"])
    lines = [
        f"## Protocol `{m['protocol']}` (the author's script) — size `{m['size']}`",
        "",
        f"Every arm at the lr the script chose, seeds {m['seeds']}; an evaluation of the validation split every "
        f"{spec.get('eval_every')} steps, a run's score is the mean of its last {V7_SCORE_EVALUATIONS} evaluations, "
        "and the table sets the mean score over the seeds beside the author's. A number is reproduced when ours lies "
        f"within {fmt(V7_REPRODUCED_WITHIN)} of the author's (declared before the runs).",
        "",
    ]
    for t in group:
        seeds = m["seeds"]
        lines += _replay_task_head(
            t,
            [
                "arm",
                "lr",
                *(f"score, seed {s}" for s in seeds),
                *("mean (ours)", "the author's", "ours − author's", "reproduced", "opt step (ms)", "state", "peak mem"),
            ],
        )
        for a in t.arms:
            per = dict(zip(a.seeds, a.finals))
            theirs = author.get(a.arm)
            complete = len(stats.finite_values(a.finals)) == len(seeds)
            diff = a.summary.mean - theirs if theirs is not None and complete else None
            verdict = "—" if diff is None else ("yes" if abs(diff) <= V7_REPRODUCED_WITHIN else "no")
            lines.append(
                f"| {a.label} | {fmt(a.chosen_lr)} | "
                + " | ".join(fmt(per[s], 5) if s in per else "missing" for s in seeds)
                + f" | {fmt(a.summary.mean, 5)} | {fmt(theirs, 5)} | {fmt_signed(diff)} | {verdict} | "
                f"{fmt(a.step_time_s * 1e3, 3)} | {fmt_bytes(a.state_bytes)} | {fmt_bytes(a.peak_bytes)} |"
            )
        ranked = sorted((a for a in t.arms if a.summary.mean is not None), key=lambda a: a.summary.mean)
        ranked_theirs = sorted((a for a in t.arms if a.arm in author), key=lambda a: author[a.arm])
        same = [a.arm for a in ranked] == [a.arm for a in ranked_theirs]
        lines += [
            "",
            "Ordering by mean score, ours: "
            + " < ".join(a.label for a in ranked)
            + "; the author's: "
            + " < ".join(a.label for a in ranked_theirs)
            + (" (the same)." if same else " (different)."),
            "",
            *comparison_lines(t, ALPHA, "score"),
            "",
            "_Two seeds, the lrs chosen on the same validation numbers that are reported: a reproduction, not "
            "evidence._",
            "",
        ]
        if fig_dir is not None:
            lines += figure_lines(
                curves_figure(t, fig_dir / f"{prefix}-{t.task}-curves.png", split="validation", metric="loss"),
                rel,
                f"{t.task} curves",
                "Training loss (each seed's loss averaged over 50 equal step bins) and the validation loss of "
                "every evaluation against step: median (line) and min–max (band) over the two seeds.",
            )
    return lines


def _replay_section(group: list[TaskResult], fig_dir: Path | None, prefix: str, rel: Path) -> list[str]:
    from andi.bench.report.plots import Panel

    m = group[0].manifest
    if replay_is_scored(m):
        return _scored_replay_section(group, fig_dir, prefix, rel)
    paper = dict(m["spec"].get("paper_andi_lr", []))
    lines = [
        f"## Protocol `replay` (the paper's script) — size `{m['size']}`",
        "",
        f"{m['steps']} steps, pre-update minibatch loss recorded every {m['record_every']} steps, seeds "
        f"{m['seeds']}, constant lr, ANDI searched on seed {m['spec']['search_seed']} only; AdamW and the "
        "script's \"Muon\" untuned. Reproduces the paper's numbers; its flaws are listed in "
        "docs/design/protocol.md §(b).",
        "",
    ]
    fig1 = []
    for t in group:
        seeds = m["seeds"]
        lines += _replay_task_head(
            t,
            [
                "arm",
                "lr",
                "trials",
                *(f"loss @ last record, seed {s}" for s in seeds),
                *("mean", "opt step (ms)", "state", "peak mem"),
            ],
        )
        for a in t.arms:
            per = dict(zip(a.seeds, a.finals))
            lines.append(
                f"| {a.label} | {fmt(a.chosen_lr)} | {a.trials or 'fixed'} | "
                + " | ".join(fmt(per[s]) if s in per else "missing" for s in seeds)
                + f" | {fmt(a.summary.mean)} | {fmt(a.step_time_s * 1e3, 3)} | {fmt_bytes(a.state_bytes)}"
                f" | {fmt_bytes(a.peak_bytes)} |"
            )
        andi = next((a for a in t.arms if a.tuning), None)
        if andi is not None:
            lines += [
                "",
                f"ANDI grid search (seed {m['spec']['search_seed']}; lowest last recorded loss wins, "
                f"NaN skipped): "
                + ", ".join(f"{fmt(e['lr'])} → {fmt(e['score'])}" for e in andi.tuning)
                + f". Chosen {fmt(andi.chosen_lr)}; the paper reports {fmt(paper.get(t.task))}.",
            ]
        lines += [
            "",
            *comparison_lines(t, ALPHA, "loss"),
            "",
            "_Two seeds, one of them the tuning seed: not evidence._",
            "",
        ]
        if fig_dir is not None:
            lines += figure_lines(
                lr_figure(t, fig_dir / f"{prefix}-{t.task}-lr.png", "loss at last record", t.task == "saddle"),
                rel,
                f"{t.task} ANDI lr search",
                "ANDI's grid search on the search seed: loss at the last record against lr (log scale); a cross "
                "is a diverged trial, a ring the chosen lr.",
            )
            if t.task in _FIG1_ORDER:
                train = bands(t, "train")
                fig1.append(Panel(_FIG1_TITLES[t.task], train, "training loss (minibatch)", logy=t.task == "saddle"))
    figure1 = _figure1_lines(
        fig1,
        fig_dir / f"{prefix}-figure1.png" if fig_dir is not None else None,
        rel,
        "Replay of the paper's Figure 1 (median and range over seeds 42, 1337)",
        "The paper's Figure 1 replayed: recorded minibatch training loss, median (line) and range (band) over "
        "the two seeds.",
    )
    if figure1:
        lines += ["### Figure 1 (replay)", "", *figure1]
    return lines


def generate_report(
    results_dir: str | Path, out: str | Path | None = None, *, figures: bool = True, shown_as: str | None = None
) -> Path:
    """Write ``report.md`` (default: in ``results_dir``) and PNGs under ``figures/`` next to it.

    ``shown_as`` is what the report's "Results directory" line names (default: ``results_dir``), e.g. the archive
    the directory was extracted from (the records are then a throw-away copy: a corrupt one is left out, not moved
    aside). The report and its figures are made in a staging folder beside ``out`` and moved into place only once
    all of them exist: on any failure (a bad record, a full disk, Ctrl-C) what was at ``out`` stays as it was.
    """
    results_dir = Path(results_dir)
    out = Path(out) if out is not None else results_dir / "report.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".andi-report-", dir=out.parent))
    try:
        text, data = _render(results_dir, staging / out.name, figures, shown_as)
        made = sorted((staging / "figures").glob("*")) if figures else []
        if made:
            (out.parent / "figures").mkdir(exist_ok=True)
        for figure in made:
            os.replace(figure, out.parent / "figures" / figure.name)
        atomic_write_text(out.with_name("results.json"), json.dumps(data, indent=1, sort_keys=True) + "\n")
        return atomic_write_text(out, text)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _render(results_dir: Path, out: Path, figures: bool, shown_as: str | None) -> tuple[str, dict[str, Any]]:
    """The markdown of the report on ``results_dir`` (figures are written under ``out``'s folder) and its
    ``results.json`` object (:mod:`andi.bench.report.results_json`)."""
    # A corrupt record is left out (moved aside in a results directory); the report never recomputes anything.
    if shown_as is None:
        store = ResultStore(
            results_dir,
            corrupt_note="excluded from this report (re-run the command that produced it, `andi-bench run` or "
            "`quick` with the same arguments, to recompute it)",
        )
        shown_as = str(results_dir)
    else:
        store = ResultStore(
            results_dir,
            corrupt_note="excluded from this report; the archive holds a corrupt copy of this record (where it "
            "holds a name twice, the later copy is the one extracted): archive the results directory again",
            quarantine=False,
            shown_as=shown_as,
        )
    manifests = store.manifests()
    if not manifests:
        raise FileNotFoundError(
            f"no manifest-*.json in {shown_as}: run `andi-bench quick` or "
            "`andi-bench run` with --out pointing there first"
        )
    fig_dir = out.parent / "figures" if figures else None
    recs = _Records(store)
    # One section per protocol, size and variant (a second sweep on the folder with other steps, dtype or seeds).
    groups: dict[tuple[str, str, str, str], list[dict]] = {}
    for m in manifests:
        groups.setdefault((m["kind"], m["protocol"], m["size"], variant_id(m)), []).append(m)
    variants: dict[tuple[str, str, str], list[str]] = {}
    for kind, protocol, size, variant in sorted(groups):
        variants.setdefault((kind, protocol, size), []).append(variant)
    lines = ["# andi-bench report", "", f"Results directory: `{shown_as}`.", ""]
    stale = hash_note([m.get("claims_sha256") for m in manifests])
    if stale:
        lines = [stale, "", *lines]
    body: list[str] = []
    analysed: list[TaskResult] = []
    runs: list[tuple[str, str, str, str, list[TaskResult]]] = []
    order = {t: i for i, t in enumerate(_FIG1_ORDER)}
    for (kind, protocol, size, variant), ms in sorted(groups.items(), key=lambda kv: (kv[0][0] == "replay", kv[0])):
        ms.sort(key=lambda m: (order.get(m["task"], len(order)), manifest_width(m), m["task"]))
        several = len(variants[(kind, protocol, size)]) > 1
        prefix = f"{protocol}-{size}" + (f"-{variant}" if several else "")
        if kind == "replay":
            group = [analyze_replay(m, recs) for m in ms]
            apply_holm(group)
            section = _replay_section(group, fig_dir, prefix, Path("figures"))
        else:
            group = [analyze_fair(m, recs) for m in ms]
            apply_holm(group)
            section = _fair_section(group, fig_dir, prefix, Path("figures"))
        if several:  # the heading names the variant, so two sweeps of one protocol and size stay apart
            section[0] += f" — variant `{variant}` ({_variant_words(ms[0])})"
        body += section
        analysed += group
        runs.append((kind, protocol, size, variant, group))
    lines += [*env_lines(analysed), ""]
    if recs.missing:
        lines += [
            f"> **{len(recs.missing)} record(s) named by a manifest are missing or corrupt** and were left "
            "out; re-run the same command to recompute them.",
            "",
        ]
    tuning_keys = [k for m in manifests for a in m["arms"] for t in a.get("tuning", []) for k in t["keys"]]
    named = [recs.peek(k) for k in tuning_keys] + list(recs.cache.values())
    failed_records = {r["key"]: r for r in named if r is not None and r.get("status") == "failed"}
    if failed_records:
        failed, first = sorted(failed_records), next(iter(failed_records.values()))
        last_line = (first.get("error") or "").strip().splitlines()[-1:] or ["?"]
        lines += [
            f"> **{len(failed)} run(s) failed with an error** (twice: each was retried once), e.g. "
            f"`{first['config']['task']}/{first['config']['optimizer']}` lr {fmt(first['config']['lr'])}: "
            f"`{last_line[0]}`. A failed tuning run scores like a diverged one; failed reporting runs are "
            "counted as failed in `n`. Tracebacks are in the records (`error`); re-run the same command to "
            "retry them.",
            "",
        ]
    lines += body
    return "\n".join(lines).rstrip() + "\n", results_data(runs)
