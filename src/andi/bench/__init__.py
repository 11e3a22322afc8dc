"""``andi.bench``: the benchmark suite behind ``andi-bench``, apart from the optimizer library (nothing under
``andi.optim`` or ``andi.functional`` imports it).

Its rooms, top to bottom (each imports only the ones below it; ``tests/test_import_layers.py`` checks it):

* the CLI — :mod:`.cli`, :mod:`.launcher`, :mod:`.preflight` (checks before the first run);
* :mod:`andi.bench.report` — what the records say: analysis, statistics, tables, figures, the page;
* :mod:`andi.bench.execution` — computing and keeping runs: runner, sweeps, executors, results directory, claims;
* :mod:`andi.bench.protocols` — what is run: protocols, arms, schedules, run configurations, plans;
* :mod:`andi.bench.tasks` — the problems and their datasets;
* the base — :mod:`.util` (small shared helpers) and :mod:`.errors` (the CLI's error kinds);

and :mod:`andi.bench.stepbench`, the optimizer-step micro-benchmark, on the base alone.
"""
