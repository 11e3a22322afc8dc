"""``results.json``: what a report shows, machine-readable, written beside every ``report.md``.

One object per protocol run (protocol, size, kind, variant) with, per task and arm, how its lr was chosen and what
its reporting runs gave, and every comparison of the report with its test. Fields (numbers are floats; ``null``
where undefined):

* ``schema`` (1), ``alpha``.
* ``runs[]``: ``protocol``, ``size``, ``kind`` (``fair`` or ``replay``), ``variant``, ``tasks[]``.
* ``tasks[]``: ``task``, ``metric``, ``higher_is_better``, ``penalty`` (the value a diverged or failed reporting run
  counts at; ``null``: such runs are left out), ``target`` (time-to-target value), ``arms[]``, ``comparisons[]``
  (each arm against the best other arm, Holm over the protocol run), and for fair runs ``head_to_head[]`` (ANDI
  arms against AdamW and Muon, Holm over that table).
* ``arms[]``: ``arm``, ``label``, ``optimizer``, ``chosen_lr``, ``grid`` (the declared lrs), ``extension`` (edge
  points added), ``refinement`` (√2 points added), ``at_edge``, ``edge_capped``, ``tuning_seeds``, ``tuning[]``
  (``lr``, ``score`` = mean final validation metric over the tuning seeds), ``reporting_seeds``, ``n`` (reporting
  runs counted), ``n_expected``, ``n_diverged``, ``n_failed``, ``mean``, ``std``, ``finals`` (``{seed: value}`` as
  counted, penalties included), ``step_time_ms`` (median ``optimizer.step()``).
* ``comparisons[]`` / ``head_to_head[]``: ``arm``, ``baseline``, ``test`` (``paired t`` or ``Welch``), ``difference``
  (arm − baseline, the tested mean difference), ``ci95`` (``[low, high]``), ``p`` (two-sided), ``holm_p``,
  ``family_size``, ``verdict`` (``better than …``, ``worse than …`` or ``no significant difference``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from andi.bench.report.analysis import ALPHA, ArmResult, Comparison, TaskResult, head_to_head

__all__ = ["SCHEMA", "results_data"]

SCHEMA = 1


def _num(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _arm(a: ArmResult, manifest_arm: dict[str, Any], tuning_seeds: Sequence[int]) -> dict[str, Any]:
    scored = a.scored()
    return {
        "arm": a.arm,
        "label": a.label,
        "optimizer": a.optimizer,
        "chosen_lr": a.chosen_lr,
        "grid": list(manifest_arm.get("grid", [])),
        "extension": list(manifest_arm.get("extension", [])),
        "refinement": list(manifest_arm.get("refinement", [])),
        "at_edge": a.at_edge,
        "edge_capped": a.edge_capped,
        "tuning_seeds": list(manifest_arm.get("tuning_seeds", tuning_seeds)),
        "tuning": [{"lr": t["lr"], "score": _num(t.get("score"))} for t in a.tuning],
        "reporting_seeds": list(manifest_arm.get("seeds", a.seeds)),
        "n": len(scored),
        "n_expected": a.expected,
        "n_diverged": a.n_failed,
        "n_failed": len(a.errors),
        "mean": _num(a.summary.mean),
        "std": _num(a.summary.std),
        "finals": {str(s): _num(v) for s, v in scored},
        "step_time_ms": _num(a.step_time_s * 1e3),
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    low, high = c.interval()
    return {
        "arm": c.arm,
        "baseline": c.other,
        "test": c.test_name,
        "difference": _num(c.mean_diff),
        "ci95": [_num(low), _num(high)],
        "p": _num(c.pvalue),
        "holm_p": _num(c.holm_p),
        "family_size": c.family_size,
        "verdict": c.verdict,
    }


def _task(t: TaskResult, kind: str, h2h: Sequence[Comparison]) -> dict[str, Any]:
    entries = {e["arm"]: e for e in t.manifest.get("arms", [])}
    penalty = next((a.penalty for a in t.arms if a.penalty is not None), None)
    spec = t.manifest.get("spec", {})
    tuning_seeds = spec.get("tuning_seeds", [spec["search_seed"]] if "search_seed" in spec else [])
    data = {
        "task": t.task,
        "metric": t.metric,
        "higher_is_better": t.higher_is_better,
        "penalty": penalty,
        "target": _num(t.target),
        "arms": [_arm(a, entries.get(a.arm, {}), tuning_seeds) for a in t.arms],
        "comparisons": [_comparison(c) for c in t.comparisons],
    }
    if kind == "fair":
        data["head_to_head"] = [_comparison(c) for c in h2h if c.task == t.task]
    return data


def results_data(runs: Sequence[tuple[str, str, str, str, Sequence[TaskResult]]]) -> dict[str, Any]:
    """The ``results.json`` object of a report over ``runs``: ``(kind, protocol, size, variant, tasks)`` each."""
    out = []
    for kind, protocol, size, variant, group in runs:
        h2h = head_to_head(group, ALPHA) if kind == "fair" else []
        out.append(
            {
                "protocol": protocol,
                "size": size,
                "kind": kind,
                "variant": variant,
                "tasks": [_task(t, kind, h2h) for t in group],
            }
        )
    return {"schema": SCHEMA, "alpha": ALPHA, "runs": out}
