"""The Ray instance a command's tasks run on: the one already up in this process, a cluster address
(``--ray-address`` or ``$RAY_ADDRESS``, which ``ray job submit`` sets), or a local one started and stopped here."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from app.inputs import CommandLineError


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Join or start Ray for the body; only a Ray this call started or connected is shut down after it."""
    import ray

    from actors.runtime import start_ray, stop_ray
    if ray.is_initialized():  # inside a job that is already on Ray (crypto-intel run, a test session)
        yield
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address:
        try:
            ray.init(address=address, logging_level="WARNING")
        except ConnectionError as e:
            raise CommandLineError(f"--ray-address {address}: {e}") from None
    else:
        start_ray(dashboard=False)
    try:
        yield
    finally:
        stop_ray()
