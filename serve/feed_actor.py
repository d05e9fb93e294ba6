"""The WebSocket live feed as a Ray actor beside Serve: one process, its own event loop, the
feed server reading Redis Streams and API keys checked against Postgres."""

from __future__ import annotations

import ray


class FeedHost:
    """Starts ``serve.feed.FeedServer`` inside the actor and keeps it running."""

    def __init__(self, database_url: str, redis_url: str, namespace: str, host: str, port: int) -> None:
        self.args = (database_url, redis_url, namespace, host, port)
        self.server = None
        self.accounts = None

    async def start(self) -> int:
        """Listen; returns the bound port."""
        from serve.accounts import Accounts
        from serve.feed import FeedServer
        database_url, redis_url, namespace, host, port = self.args
        self.accounts = await Accounts.create(database_url)
        self.server = FeedServer(redis_url, self.accounts.authenticate, host=host, port=port, namespace=namespace)
        await self.server.start()
        return self.server.port

    async def stats(self) -> dict:
        return self.server.stats() if self.server else {}

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.accounts is not None:
            await self.accounts.close()


FeedActor = ray.remote(FeedHost)
