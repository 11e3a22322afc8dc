"""The ``andi-bench`` entry point: says in one line which extra to install when the benchmark's packages are missing.

``pip install .`` (in a checkout) installs the optimizer with torch alone; the benchmark needs numpy, matplotlib,
tqdm and scipy (the ``bench`` extra, ``pip install '.[bench]'``). This module imports nothing beyond the standard
library until they are there.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Sequence

__all__ = ["BENCH_REQUIREMENTS", "main", "missing_requirements"]

#: The modules ``andi-bench`` needs beyond torch (the ``[bench]`` extra).
BENCH_REQUIREMENTS = ("numpy", "matplotlib", "tqdm", "scipy")
#: Exit status when the machine cannot serve the command (as :data:`andi.bench.errors.EXIT_SETUP`).
_EXIT_SETUP = 3


def missing_requirements() -> list[str]:
    """The modules of :data:`BENCH_REQUIREMENTS` that cannot be imported here."""
    return [name for name in BENCH_REQUIREMENTS if importlib.util.find_spec(name) is None]


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``andi-bench`` (:func:`andi.bench.cli.main`), or print one line naming the extra and return 3."""
    missing = missing_requirements()
    if missing:
        print(
            f"andi-bench: error: the benchmark needs {', '.join(missing)}, which are not installed; "
            "pip install numpy matplotlib tqdm scipy (the 'bench' extra: pip install -e '.[bench]' in a checkout)",
            file=sys.stderr,
        )
        return _EXIT_SETUP
    from andi.bench.cli import main as cli_main

    return cli_main(argv)
