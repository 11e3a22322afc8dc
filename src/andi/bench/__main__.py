"""``python -m andi.bench``: the same as the ``andi-bench`` command."""

import sys

from andi.bench.launcher import main

if __name__ == "__main__":
    sys.exit(main())
