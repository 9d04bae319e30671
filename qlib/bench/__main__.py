"""``python -m qlib.bench``: the benchmark's command line (``qlib.bench.cli``)."""
import sys

from .cli import main

sys.exit(main())
