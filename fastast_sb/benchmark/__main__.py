"""``python -m fastast_sb.benchmark``: see :mod:`fastast_sb.benchmark.cli`."""

import sys

from fastast_sb.benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())
