"""``crypto-intel run`` with DATABASE_URL and REDIS_URL: rows reach Postgres while it runs, the feed
and checkpoints reach Redis, and what Postgres holds matches the signals file."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from tests.storage.pg_fixtures import pg_db, pg_url  # noqa: F401 - fixtures
from tests.storage.redis_fixtures import redis_url  # noqa: F401 - fixture


async def _counts(url: str) -> dict[str, int]:
    conn = await asyncpg.connect(url)
    try:
        if not await conn.fetchval("SELECT to_regclass('candles') IS NOT NULL"):
            return {}
        return {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in ("candles", "signals", "structure_events")}
    finally:
        await conn.close()


@pytest.mark.slow
@pytest.mark.ray
def test_run_with_database_and_redis_persists_while_running(pg_db: str, redis_url: str, tmp_path: Path) -> None:
    namespace = f"test-run-{secrets.token_hex(4)}"
    env = {**os.environ, "DATABASE_URL": pg_db, "REDIS_URL": redis_url, "CRYPTO_INTEL_REDIS_NAMESPACE": namespace}
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "run", "--max-seconds", "40", "--no-dashboard",
                             "--out-dir", str(tmp_path), "--checkpoint-s", "5"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    client = redis.Redis.from_url(redis_url)
    try:
        seen_while_running = {}
        deadline = time.monotonic() + 150
        while proc.poll() is None and time.monotonic() < deadline:
            seen_while_running = asyncio.run(_counts(pg_db))
            if seen_while_running.get("candles", 0) > 0:
                break
            time.sleep(1)
        assert proc.poll() is None, "run ended before anything reached Postgres"
        assert seen_while_running.get("candles", 0) > 0
        out, _ = proc.communicate(timeout=240)
        assert proc.returncode == 0, out
        after = asyncio.run(_counts(pg_db))
        assert after["candles"] > 0 and after["signals"] > 0 and after["structure_events"] > 0, (after, out)
        assert "0 refused" in out and "Postgres:" in out
        # Postgres holds exactly the signals the run wrote to its file
        file_ids = {json.loads(line)["id"] for line in (tmp_path / "signals.jsonl").read_text().splitlines()}

        async def ids():
            conn = await asyncpg.connect(pg_db)
            try:
                return {r["id"] for r in await conn.fetch("SELECT id FROM signals")}
            finally:
                await conn.close()
        assert asyncio.run(ids()) == file_ids
        assert client.xlen(f"{namespace}:v1:feed:candles") > 0
        assert client.xlen(f"{namespace}:v1:feed:signals") == min(len(file_ids), 100_000)
        assert client.exists(f"{namespace}:v1:ckpt:run:0")
    finally:
        if proc.poll() is None:
            proc.kill()
        for key in client.scan_iter(f"{namespace}:*"):
            client.delete(key)
