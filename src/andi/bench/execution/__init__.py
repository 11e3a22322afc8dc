"""How runs are computed and kept: one run (:mod:`.runner`), sweeps of plans (:mod:`.sweep`), the executors that
compute them (:mod:`.executors`: serial, local workers, Ray), the results directory (:mod:`.store`), run claims that
let several processes share it (:mod:`.claims`) and atomic file writes (:mod:`.files`).

It may import :mod:`andi.bench.protocols` (what to run), :mod:`andi.bench.tasks`, :mod:`andi.bench.util`,
:mod:`andi.bench.errors` and the optimizer library; never the report or the CLI.
"""
