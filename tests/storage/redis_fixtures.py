"""Redis fixtures: the shared server's URL, a private namespace per test, a private server to kill and restart.

Import the fixtures a test module uses from here. Without a reachable Redis the tests skip,
or fail when the environment variable ``CI`` is set (a CI run must not pass by skipping).
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import pytest_asyncio
import redis
import redis.asyncio
from redis.backoff import NoBackoff
from redis.retry import Retry

from connectors.storage.redis_keys import RedisKeys
from tests.services import unavailable

DEFAULT_URL = "redis://127.0.0.1:6379/0"


def _safe(url: str) -> str:
    # never print a password from REDIS_URL
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}:{parts.port or 6379}{parts.path}"


@pytest.fixture(scope="session")
def redis_url() -> str:
    """``REDIS_URL`` or the local default, checked with a PING."""
    url = os.environ.get("REDIS_URL", DEFAULT_URL)
    client = redis.Redis.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0, retry=Retry(NoBackoff(), 0))
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError, OSError) as e:
        unavailable(f"Redis not reachable at {_safe(url)} ({e}); start it or set REDIS_URL")
    finally:
        client.close()
    return url


def delete_namespace(url: str, keys: RedisKeys) -> int:
    """Delete every key of a namespace (SCAN + UNLINK); return how many there were."""
    client = redis.Redis.from_url(url)
    try:
        found = list(client.scan_iter(match=keys.pattern(), count=1000))
        for i in range(0, len(found), 500):
            client.unlink(*found[i:i + 500])
        return len(found)
    finally:
        client.close()


@pytest.fixture
def redis_keys(redis_url: str) -> Iterator[RedisKeys]:
    """A fresh random namespace; its keys are deleted after the test."""
    keys = RedisKeys(namespace=f"test-{secrets.token_hex(6)}")
    yield keys
    delete_namespace(redis_url, keys)


@pytest_asyncio.fixture(loop_scope="session")
async def aredis(redis_url: str) -> AsyncIterator[redis.asyncio.Redis]:
    """An async client (binary responses) on the shared server."""
    client = redis.asyncio.Redis.from_url(redis_url)
    yield client
    await client.aclose()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server process without persistence, to stop and start again on the same port."""

    def __init__(self, binary: str, port: int, workdir: Path) -> None:
        self.binary, self.port, self.workdir = binary, port, workdir
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> None:
        """Start the server and wait until it answers PING."""
        assert self.proc is None, "server already running"
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=0.5)
        deadline = time.monotonic() + timeout_s
        try:
            while True:
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):
                    if self.proc.poll() is not None or time.monotonic() > deadline:
                        self.stop()
                        raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                    time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Terminate the server (SIGTERM, then SIGKILL) and wait for it to exit."""
        if self.proc is None:
            return
        proc, self.proc = self.proc, None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A private server on a free port, not started yet; always stopped after the test."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        unavailable("redis-server not found; install Redis to run the restart tests")
    server = RedisServer(binary, free_port(), tmp_path)
    try:
        yield server
    finally:
        server.stop()
