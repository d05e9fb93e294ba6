"""The Ray instance a command's tasks run on: the one already up in this process, a cluster address
(``--ray-address`` or ``$RAY_ADDRESS``, which ``ray job submit`` sets), or a local one started and stopped here."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from app.inputs import CommandLineError
from schemas.errors import CryptoIntelError


@contextmanager
def ray_session(address: str | None = None) -> Iterator[None]:
    """Join or start Ray for the body; only a Ray this call started or connected is shut down after it.

    A user error raised inside a task (too little data, a bad setting) comes out as itself, so the command
    prints its one line instead of the task's traceback."""
    import ray

    from actors.runtime import start_ray, stop_ray
    own = not ray.is_initialized()  # else: inside a job already on Ray (crypto-intel run, a test session)
    if own:
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
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, CryptoIntelError):
            raise cause from None
        raise
    finally:
        if own:
            stop_ray()
