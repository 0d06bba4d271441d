"""The benchmarks' shared machinery now lives in the package, as
fastmp.bench._common (so that `python -m fastmp.bench` works from a wheel).
This module is that module under its old name, for the scripts here that
do `from _common import ...`."""

import sys

import _checkout  # noqa: F401  (this checkout's fastmp when none is installed)
from fastmp.bench import _common

sys.modules[__name__] = _common
