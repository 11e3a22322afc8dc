"""What the records say: ``andi-bench report DIR|ARCHIVE`` and everything it computes and draws.

:mod:`.analysis` turns manifests and records into per-task results and Holm-corrected two-sided comparisons
(statistics in :mod:`.stats`); :mod:`.tables` and :mod:`.figures` format and draw them (matplotlib in :mod:`.plots`);
:mod:`.writer` assembles the page (:func:`generate_report`); :mod:`.archive` reads a ``.tar.xz`` of records safely.
The report reads only what :mod:`andi.bench.execution` wrote, so it may import execution (the results directory, atomic
writes), :mod:`andi.bench.util` and :mod:`andi.bench.errors`, never the CLI; protocols and tasks are known to it only
through the manifests.
"""

from andi.bench.report.analysis import (
    HEAD_TO_HEAD_ARMS,
    HEAD_TO_HEAD_BASELINES,
    ArmResult,
    Comparison,
    TaskResult,
    analyze_fair,
    analyze_replay,
    apply_holm,
    head_to_head,
    head_to_head_pairs,
    width_tasks,
)
from andi.bench.report.archive import extract_results, is_archive, report_from_archive
from andi.bench.report.tables import fmt, fmt_bytes
from andi.bench.report.writer import generate_report

__all__ = [
    "HEAD_TO_HEAD_ARMS",
    "HEAD_TO_HEAD_BASELINES",
    "ArmResult",
    "Comparison",
    "TaskResult",
    "analyze_fair",
    "analyze_replay",
    "apply_holm",
    "extract_results",
    "fmt",
    "fmt_bytes",
    "generate_report",
    "head_to_head",
    "head_to_head_pairs",
    "is_archive",
    "report_from_archive",
    "width_tasks",
]
