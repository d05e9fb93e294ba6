"""Shared fixtures: paths to the real public data in tests/data and to the bundled sample."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data_paths import SHARED_DATA


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        raise FileNotFoundError(f"real reference data expected at {SHARED_DATA} (see tests/data/README.md)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    from actors.runtime import start_ray
    start_ray(num_cpus=2, dashboard=False)
    yield ray
    ray.shutdown()
