"""Source actor: one venue's supervised connections inside Ray, drained by the driver in micro-batches."""

from __future__ import annotations

import asyncio

import ray

from actors.metrics import VenueMetrics
from connectors.venues.supervisor import SourceOutput, SupervisorConfig, VenueSupervisor
from engine.venues.registry import make_venue
from engine.venues.sources import SourceSpec


class VenueSourceHost:
    """Runs a :class:`VenueSupervisor` on the actor's event loop; ``drain`` returns what it produced."""

    def __init__(self, spec: SourceSpec, config: SupervisorConfig | None = None) -> None:
        self.spec = spec
        venue = make_venue(spec.venue, spec.channels)
        self.supervisor = VenueSupervisor(venue, list(spec.symbols), ws_url=spec.ws_url, rest_url=spec.rest_url,
                                          config=config)
        self.metrics = VenueMetrics(venue.name)
        self._task: asyncio.Task | None = None

    async def start(self) -> str:
        if self._task is None:
            self._task = asyncio.ensure_future(self.supervisor.run())
        return self.supervisor.venue.name

    async def drain(self, wait_s: float = 0.0) -> SourceOutput:
        """Everything produced since the last call; waits up to ``wait_s`` for something to arrive."""
        if wait_s and not self.supervisor.data_ready.is_set():
            try:
                await asyncio.wait_for(self.supervisor.data_ready.wait(), wait_s)
            except asyncio.TimeoutError:
                pass
        self.metrics.report(self.supervisor.metrics())
        return self.supervisor.drain()

    async def status(self) -> dict:
        m = self.supervisor.metrics()
        self.metrics.report(m)
        return m

    async def stop(self) -> dict:
        await self.supervisor.stop()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        return self.supervisor.metrics()


VenueSourceActor = ray.remote(num_cpus=0)(VenueSourceHost)
