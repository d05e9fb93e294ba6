"""Which services a live job uses: ``DATABASE_URL`` and ``REDIS_URL`` name external Postgres and Redis;
without them the job starts embedded ones of its own under ``--data-dir``; ``--no-services`` keeps
it to files and in-memory state.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from connectors.embedded import EmbeddedServices
from connectors.storage.urls import redact

PIPELINE_NAME = "run"


@dataclass(frozen=True)
class StoreSettings:
    """Service URLs, the Redis key namespace and where the Postgres writer parks batches."""

    database_url: str | None
    redis_url: str | None
    spill_dir: Path
    namespace: str = "ci"

    @classmethod
    def from_env(cls, out_dir: Path) -> "StoreSettings":
        return cls(os.environ.get("DATABASE_URL") or None, os.environ.get("REDIS_URL") or None,
                   Path(os.environ.get("CRYPTO_INTEL_SPILL_DIR", out_dir / "spill")),
                   os.environ.get("CRYPTO_INTEL_REDIS_NAMESPACE", "ci"))

    @property
    def enabled(self) -> bool:
        return bool(self.database_url or self.redis_url)

    def describe(self) -> str:
        parts = []
        if self.database_url:
            parts.append(f"Postgres {redact(self.database_url)}")
        if self.redis_url:
            parts.append(f"Redis {redact(self.redis_url)} (namespace {self.namespace})")
        return f"; persisting to {' and '.join(parts)}" if parts else ""

    def migrate(self) -> None:
        """Bring the database to the latest schema (a no-op when it already is)."""
        from connectors.storage.migrate import migrate
        done = asyncio.run(migrate(self.database_url))
        if done:
            print(f"applied {len(done)} migration(s) to {redact(self.database_url)}", file=sys.stderr)

    def start_actor(self, num_cpus: float):
        """The store actor, or None when no service is configured."""
        if not self.enabled:
            return None
        from actors.store import StoreActor
        return StoreActor.options(num_cpus=num_cpus).remote(self.database_url, self.redis_url, str(self.spill_dir),
                                                             namespace=self.namespace)

    def checkpoint_store(self):
        """Redis checkpoint store for shard snapshots, or None without Redis."""
        if not self.redis_url:
            return None
        import redis

        from connectors.storage.checkpoints import SyncCheckpointStore
        from connectors.storage.redis_keys import RedisKeys
        return SyncCheckpointStore(redis.Redis.from_url(self.redis_url, socket_timeout=5),
                                   RedisKeys(namespace=self.namespace))

    @staticmethod
    def summary(stats: dict) -> str:
        """One line on what reached the services."""
        out = []
        if "postgres" in stats:
            pg = stats["postgres"]
            out.append(f"Postgres: {pg['rows_written']:,} rows written, {pg['spill_files']} batches parked, "
                       f"{pg['rows_rejected']:,} refused")
        if "redis" in stats:
            r = stats["redis"]
            out.append(f"Redis feed: {r['published']:,} published, {r['backlog']:,} waiting, {r['dropped']:,} dropped")
        return "; ".join(out)


def _say(message: str) -> None:
    print(message, file=sys.stderr)


def job_out_dir(args: argparse.Namespace) -> Path:
    """``--out-dir``, by default ``<data-dir>/out``; created."""
    out = Path(args.out_dir) if args.out_dir else Path(args.data_dir) / "out"
    out.mkdir(parents=True, exist_ok=True)
    return out


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a job the way Ctrl-C does: cleanly, services stopped


def stop_on_sigterm() -> None:
    """SIGTERM ends the job like Ctrl-C; call again after ``ray.init``, which installs a handler of its own."""
    signal.signal(signal.SIGTERM, _terminate)


@contextmanager
def job_services(args: argparse.Namespace, out_dir: Path) -> Iterator[StoreSettings]:
    """The job's Postgres and Redis, migrated; embedded ones are stopped on exit, Ctrl-C and SIGTERM included."""
    settings = StoreSettings.from_env(out_dir)
    embedded = None
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        if args.no_services:
            settings = dataclasses.replace(settings, database_url=None, redis_url=None)
        elif not (settings.database_url and settings.redis_url):
            embedded = EmbeddedServices(Path(args.data_dir), log=_say,
                                        postgres=not settings.database_url, redis=not settings.redis_url)
            urls = embedded.start()
            settings = dataclasses.replace(settings, database_url=settings.database_url or urls.database_url,
                                           redis_url=settings.redis_url or urls.redis_url)
        if settings.database_url:
            settings.migrate()
        yield settings
    finally:
        if embedded is not None:
            embedded.stop()
        signal.signal(signal.SIGTERM, previous)


def run_job(args: argparse.Namespace, config, out_dir: Path, job: Callable[[StoreSettings, str | None], int]) -> int:
    """The frame of a live job: kernels warm, services up, then Ray; ``job(services, dashboard_url)`` runs
    inside, and everything comes down in reverse order (Ray before the servers its actors use)."""
    from actors.runtime import start_ray, stop_ray
    from app.warmup import warm_if_cold

    warm_if_cold(config, log=_say)
    with job_services(args, out_dir) as services:
        url = start_ray(dashboard=not args.no_dashboard, dashboard_port=args.dashboard_port)
        try:
            stop_on_sigterm()
            _say(f"Ray dashboard: {url or 'disabled'}")
            return job(services, url)
        finally:
            stop_ray()


@dataclass
class JobOutputs:
    """Where a live job's results go: the store actor, the served API and feed, checkpoints, the pipeline."""

    store: object | None
    feed: object | None
    checkpoints: object | None
    pipe: object

    def close(self, services: StoreSettings) -> None:
        close_services(services, self.checkpoints, self.pipe, self.store, self.feed)


def start_outputs(args: argparse.Namespace, config, services: StoreSettings, out_dir: Path) -> JobOutputs:
    """The store actor, the HTTP API and feed (their URLs printed), checkpoints, and the pipeline feeding them."""
    from actors.pipeline import RayPipeline

    store = services.start_actor(config.actor_cpus)
    lines, feed = start_serving(services, args.host, args.http_port, out_dir, args.ws_port,
                                replicas=getattr(args, "api_replicas", 1), cpus=getattr(args, "api_cpus", 0.0))
    for line in lines:
        _say(line)
    if feed is not None and config.models_dir:
        from app.models_bootstrap import ensure_models, serve_models
        ensure_models(Path(config.models_dir), _say, services.database_url)
        for line in serve_models(Path(config.models_dir), _say):
            _say(line)
    pipe = RayPipeline(config, out_path=str(out_dir / "signals.jsonl"), keep=False, store=store)
    return JobOutputs(store, feed, services.checkpoint_store(), pipe)


def close_services(services: StoreSettings, checkpoints, pipe, store, feed) -> None:
    """End of a live run: a last checkpoint, the store's summary, the feed server stopped."""
    import ray

    if checkpoints is not None:
        save_checkpoint(checkpoints, pipe)
    if store is not None:
        print(services.summary(ray.get(store.close.remote())), file=sys.stderr)
    if feed is not None:
        ray.get(feed.stop.remote())


def save_checkpoint(store, pipe) -> None:
    """A coordinated snapshot of every shard with the source offsets, one Redis key per shard."""
    import redis

    layers = pipe.snapshot()
    try:
        shard = 0
        for layer in layers:
            for state in layer:
                store.save(PIPELINE_NAME, shard, state, pipe.offsets)
                shard += 1
    except (redis.ConnectionError, redis.TimeoutError) as e:
        # the engine goes on without this checkpoint; the next one will try again
        print(f"\ncheckpoint skipped: Redis unavailable ({e})", file=sys.stderr)


def start_serving(settings: StoreSettings, host: str, http_port: int, out_dir: Path,
                  ws_port: int = 8001, replicas: int = 1, cpus: float = 0.0) -> tuple[list[str], object | None]:
    """With Postgres and Redis configured: first-run admin key, the HTTP API on Serve and the
    WebSocket feed actor. Returns lines to print (URLs, a generated admin key exactly once) and
    the feed actor, which lives as long as the caller holds it."""
    if not (settings.database_url and settings.redis_url):
        return ["HTTP API, WebSocket feed and dashboard: off (--no-services)"], None
    from serve.accounts import Accounts
    from serve.api import ApiSettings
    from serve.app import start_api
    from serve.bootstrap import ENV_VAR, PASSWORD_ENV_VAR, ensure_admin_key, ensure_admin_password

    key_file = out_dir / "admin-api-key"
    password_file = out_dir / "admin-password"

    async def bootstrap() -> tuple[str | None, str | None]:
        accounts = await Accounts.create(settings.database_url)
        try:
            return (await ensure_admin_key(accounts, key_file, os.environ.get(ENV_VAR)),
                    await ensure_admin_password(accounts, password_file, os.environ.get(PASSWORD_ENV_VAR)))
        finally:
            await accounts.close()
    key, password = asyncio.run(bootstrap())
    url = start_api(ApiSettings(settings.database_url, settings.redis_url, settings.namespace), host=host,
                    port=http_port, replicas=replicas, cpus=cpus)
    import ray

    from serve.feed_actor import FeedActor
    feed = FeedActor.options(num_cpus=0).remote(
        settings.database_url, settings.redis_url, settings.namespace, host, ws_port)
    bound = ray.get(feed.start.remote())
    lines = [f"HTTP API: {url}/api/v1 (OpenAPI: {url}/openapi.json, docs: {url}/docs)",
             f"WebSocket feed: ws://{host}:{bound}/ws/v1/feed (key as ?key=, Authorization: Bearer or X-API-Key)",
             f"Dashboard: {url}/dashboard?ws=ws://{host}:{bound}/ws/v1/feed (log in, or give an API key)"]
    if key:
        lines.append(f"first start: admin API key {key} (shown once; also saved to {key_file}, mode 0600)")
    elif key_file.exists():
        lines.append(f"admin API key: in {key_file}")
    if password:
        lines.append(f"first start: dashboard login admin / {password} (shown once; also saved to {password_file}, "
                     "mode 0600)")
    elif password_file.exists():
        lines.append(f"dashboard login: user admin, password in {password_file}")
    return lines, feed
