"""The WebSocket live feed as Ray actors beside Serve: each one process with its own event loop,
the feed server reading Redis Streams and API keys or session access tokens checked against Postgres
(through ``serve.auth_cache``: revocations pushed over Redis reach it as they reach the API).

With ``processes`` > 1 (or ``CRYPTO_INTEL_FEED_PROCESSES``) the first actor starts that many
minus one siblings listening on the same port (``SO_REUSEPORT``): the kernel spreads connections
over them, and each reads the streams itself, so seqs stay the stream ids, exact per channel.
"""

from __future__ import annotations

import os

import ray

from schemas.errors import ConfigError

PROCESSES_ENV = "CRYPTO_INTEL_FEED_PROCESSES"


def feed_processes(value: int | None = None) -> int:
    """The number of feed processes: ``value``, else ``CRYPTO_INTEL_FEED_PROCESSES``, else 1."""
    raw = value if value is not None else os.environ.get(PROCESSES_ENV, "1")
    try:
        n = int(raw)
    except ValueError:
        raise ConfigError(f"{PROCESSES_ENV} must be a whole number of processes >= 1, got {raw!r}") from None
    if n < 1:
        raise ConfigError(f"feed processes must be >= 1, got {n}")
    return n


class FeedHost:
    """Starts ``serve.feed.FeedServer`` inside the actor (and its sibling actors) and keeps it running."""

    def __init__(self, database_url: str, redis_url: str, namespace: str, host: str, port: int,
                 processes: int | None = None, reuse_port: bool = False) -> None:
        self.args = (database_url, redis_url, namespace, host, port)
        self.processes = feed_processes(processes)
        self.reuse_port = reuse_port or self.processes > 1
        self.server = None
        self.accounts = None
        self.auth = None
        self.siblings: list = []

    async def start(self) -> int:
        """Listen (with the siblings on the same port); returns the bound port."""
        from connectors.storage.redis_keys import RedisKeys
        from serve.accounts import Accounts
        from serve.auth_cache import AuthCache
        from serve.feed import FeedServer
        database_url, redis_url, namespace, host, port = self.args
        self.accounts = await Accounts.create(database_url)
        self.auth = AuthCache(self.accounts, redis_url, RedisKeys(namespace=namespace))
        self.server = FeedServer(redis_url, self.auth.authenticate, host=host, port=port, namespace=namespace,
                                 reuse_port=self.reuse_port)
        await self.server.start()
        bound = self.server.port
        # the siblings bind the port this one got (port 0 picks one), each fate-sharing with this actor
        self.siblings = [FeedActor.options(num_cpus=0).remote(database_url, redis_url, namespace, host, bound,
                                                              processes=1, reuse_port=True)
                         for _ in range(self.processes - 1)]
        for port_of_sibling in [await s.start.remote() for s in self.siblings]:
            if port_of_sibling != bound:
                raise ConfigError(f"feed sibling bound port {port_of_sibling}, not {bound}")
        return bound

    async def stats(self) -> dict:
        """This process's feed counters, with each sibling's under ``processes``."""
        own = self.server.stats() if self.server else {}
        if self.siblings:
            own["processes"] = [await s.stats.remote() for s in self.siblings]
        return own

    async def stop(self) -> None:
        """Stop the siblings, then this server and its accounts pool."""
        for sibling in self.siblings:
            await sibling.stop.remote()
        self.siblings = []
        if self.server is not None:
            await self.server.stop()
        if self.auth is not None:
            await self.auth.close()
        if self.accounts is not None:
            await self.accounts.close()


FeedActor = ray.remote(FeedHost)
