"""Where the real public reference data lives: $CRYPTO_INTEL_SHARED_DATA, else ../shared/data beside
the checkout, else /work/shared/data (the machines' shared folder)."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _find() -> Path:
    candidates = [os.environ.get("CRYPTO_INTEL_SHARED_DATA"), REPO.parent / "shared" / "data",
                  "/work/shared/data"]
    for c in candidates:
        if c and Path(c).is_dir():
            return Path(c)
    raise FileNotFoundError("real reference data not found: set CRYPTO_INTEL_SHARED_DATA or place it at "
                            f"{REPO.parent / 'shared' / 'data'}")


SHARED_DATA = _find()
