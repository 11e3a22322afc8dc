"""``andi.bench``: the benchmark suite behind ``andi-bench``.

Datasets (:mod:`andi.bench.data`), tasks (:mod:`andi.bench.tasks`), learning-rate schedules
(:mod:`andi.bench.schedules`) and the single-run runner (:mod:`andi.bench.runner`) live here, apart from the
optimizer library: nothing under ``andi.optim`` or ``andi.functional`` imports this package.
"""
