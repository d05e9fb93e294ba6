"""Shared fixtures: paths to the real public data in ../shared/data and to the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real reference data expected at {SHARED_DATA}")
    return SHARED_DATA
