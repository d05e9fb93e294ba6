"""In-process API servers for tests that need more than one replica or a replica's counters: a filled
scratch database and Redis namespace, and uvicorn servers of ``create_app`` on free 127.0.0.1 ports."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator

import pytest

from tests.serve.api_fixtures import Filled, _free_port, filled_services


@pytest.fixture(scope="module")
def filled() -> Iterator[Filled]:
    """A database filled by the engine over the bundled sample, users admin/pro/free, its own namespace."""
    with filled_services("hot") as f:
        yield f


@contextlib.asynccontextmanager
async def api_server(settings) -> AsyncIterator[tuple[str, object]]:
    """A uvicorn server of ``create_app(settings)`` in this event loop; yields (base URL, app)."""
    import uvicorn

    from serve.api import create_app
    app = create_app(settings)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           access_log=False, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        await task
        if app.state.services is not None:
            await app.state.services.close()
