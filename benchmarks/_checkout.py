"""Make `import fastmp` work for the scripts in benchmarks/: an installed
fastmp if there is one, or else this checkout built in place
(`python setup.py build_ext --inplace`).  The reports name the fastmp used."""

import sys
from pathlib import Path

try:
    import fastmp.bench  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    for name in [n for n in sys.modules if n == "fastmp" or n.startswith("fastmp.")]:
        del sys.modules[name]  # an installed fastmp without fastmp.bench: use the checkout
