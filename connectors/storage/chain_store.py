"""On-chain results in Postgres and on the live feed: token transfers and alerts of canonical blocks,
removed again (and retracted on the feed) when their block is orphaned."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import asyncpg

from engine.sinks.jsonl import record_dict
from schemas.records import ChainAlert, ChainBlock, ValueTransfer

_TRANSFER = """INSERT INTO token_transfers (chain, block_hash, log_index, block_number, block_ts, tx_hash,
    token_address, from_address, to_address, value) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::numeric)
    ON CONFLICT DO NOTHING"""
_WALLET = """INSERT INTO wallets (chain, address, first_seen, last_seen) VALUES ($1, $2, $3, $3)
    ON CONFLICT (chain, address) DO UPDATE SET first_seen = LEAST(wallets.first_seen, EXCLUDED.first_seen),
    last_seen = GREATEST(wallets.last_seen, EXCLUDED.last_seen)"""
_LABEL = """INSERT INTO wallet_labels (chain, address, label, source) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING"""
_ALERT = """INSERT INTO alerts (id, ts, kind, severity, chain, market, address, message, payload)
    VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING"""


def _ts(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


class ChainStore:
    """Writes a chain follower's blocks' transfers and alerts; deletes and retracts orphaned ones."""

    def __init__(self, database_url: str | None, feed=None) -> None:
        self.database_url = database_url
        self.feed = feed  # connectors.storage.redis_feed.RedisFeed or None
        self.pool: asyncpg.Pool | None = None
        self.stats = {"transfers": 0, "alerts": 0, "retracted": 0, "deleted_transfers": 0}

    async def start(self) -> "ChainStore":
        if self.database_url and self.pool is None:
            self.pool = await asyncpg.create_pool(self.database_url, min_size=1, max_size=2)
        return self

    async def load_labels(self, chain: str, labels) -> int:
        """Copy a label set into ``wallet_labels`` (``category:name``), once; returns rows added."""
        if self.pool is None:
            return 0
        rows = [(chain, lab.address, f"{lab.category}:{lab.name}"[:200], lab.source)
                for lab in labels]
        async with self.pool.acquire() as conn:
            before = await conn.fetchval("SELECT count(*) FROM wallet_labels WHERE chain = $1", chain)
            await conn.executemany(_LABEL, rows)
            return await conn.fetchval("SELECT count(*) FROM wallet_labels WHERE chain = $1", chain) - before

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.close()

    async def block(self, chain: str, header: ChainBlock, transfers: list[ValueTransfer],
                    alerts: list[ChainAlert]) -> None:
        """Persist one canonical block's token transfers (native coin included, token '') and alerts."""
        if self.pool is not None:
            async with self.pool.acquire() as conn, conn.transaction():
                if transfers:
                    await conn.executemany(_TRANSFER, [
                        (chain, header.hash, t.log_index, header.number, _ts(header.timestamp), t.tx_hash, t.token,
                         t.from_address, t.to_address, str(t.value)) for t in transfers])
                if alerts:
                    await conn.executemany(_ALERT, [self._alert_row(a) for a in alerts])
                seen = sorted({a for t in transfers for a in (t.from_address, t.to_address) if a})
                if seen:  # first/last seen summary for the API (not rolled back by reorgs: the next block fixes it)
                    await conn.executemany(_WALLET, [(chain, a, _ts(header.timestamp)) for a in seen])
        self.stats["transfers"] += len(transfers)
        self.stats["alerts"] += len(alerts)
        await self._publish(alerts)

    async def retract(self, chain: str, orphaned: list[ChainBlock], retractions: list[ChainAlert]) -> None:
        """Delete what orphaned blocks stored; tell live subscribers which alerts no longer stand."""
        if self.pool is not None and orphaned:
            async with self.pool.acquire() as conn, conn.transaction():
                res = await conn.execute("DELETE FROM token_transfers WHERE chain = $1 AND block_hash = ANY($2)",
                                         chain, [h.hash for h in orphaned])
                self.stats["deleted_transfers"] += int(res.split()[-1])
                if retractions:
                    await conn.execute("DELETE FROM alerts WHERE id = ANY($1)", [a.id for a in retractions])
        self.stats["retracted"] += len(retractions)
        await self._publish(retractions)

    def _alert_row(self, a: ChainAlert) -> tuple:
        payload = {k: v for k, v in record_dict(a).items() if k not in ("id", "kind", "severity", "message")}
        return (a.id, datetime.fromtimestamp(a.ts / 1e9, tz=timezone.utc), a.kind, a.severity, a.chain, a.address,
                a.message, json.dumps(payload))

    async def _publish(self, alerts: list[ChainAlert]) -> None:
        if self.feed is not None and alerts:
            await self.feed.publish("alerts", [record_dict(a) for a in alerts])
