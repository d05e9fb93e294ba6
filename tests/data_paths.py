"""Where the real public reference data lives: tests/data inside the checkout (see tests/data/README.md).

Nothing outside the repository is read: a fresh clone has everything the tests and benchmarks need.
"""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA_ROOT = REPO / "tests" / "data"
# the name the tests import (kept from when the data lived in a folder shared beside the checkout)
SHARED_DATA = DATA_ROOT
