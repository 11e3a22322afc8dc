"""The optimizer-step micro-benchmark behind ``andi-bench step``: the arms it times (:mod:`.arms`), the timing loop
(:mod:`.bench`) over the shape sets of :mod:`.shapes`, and its tables and figure (:mod:`.report`).

It times ``optimizer.step()`` alone on synthetic gradients, so it imports only :mod:`andi.bench.util` and the optimizer
library: no task, protocol or results directory.
"""

from andi.bench.stepbench.bench import (
    SHAPE_SETS,
    Arm,
    Case,
    available_arms,
    baseline_arm,
    cli_main,
    default_arms,
    format_markdown,
    measure_peak_bandwidth,
    plot_results,
    resolve_shape_set,
    run_step_bench,
    write_outputs,
)

__all__ = [
    "SHAPE_SETS",
    "Arm",
    "Case",
    "available_arms",
    "baseline_arm",
    "cli_main",
    "default_arms",
    "format_markdown",
    "measure_peak_bandwidth",
    "plot_results",
    "resolve_shape_set",
    "run_step_bench",
    "write_outputs",
]
