"""The store actor: persists what the sink sees to Postgres and publishes it to the Redis live feed.

An async Ray actor so that writes, retries and reconnects overlap with new data arriving; the
Postgres writer never blocks it (rows beyond its memory bound are parked on disk), and the
feed keeps a bounded backlog while Redis is away. Counters and lag go to ``ray.util.metrics``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import ray

import engine.structure.events  # noqa: F401  (it makes the ids of event columns when records are read)
from actors.metrics import StoreMetrics
from connectors.storage import rows
from engine.sinks.jsonl import record_dict
from engine.venues.quality import venue_event_alerts
from schemas.arrow import to_table
from schemas.batches import FeatureBatch
from schemas.records import Candle, Signal, VenueEvent
from schemas.timeframes import format_timeframe


def latest_indicators(features: FeatureBatch) -> dict[str, dict]:
    """The last bar's indicator values per ``market|timeframe`` of a batch (NaN as null)."""
    out = {}
    for rec in rows.indicator_records(features, last_only=True):
        out[f"{rec['market']}|{rec['timeframe']}"] = rec
    return out


def latest_model_rows(features: FeatureBatch) -> dict[str, dict]:
    """The last closed bar's model feature row per ``market|timeframe`` (NaN as null), for Serve's scoring."""
    c = features.candles
    out: dict[str, dict] = {}
    live = np.flatnonzero(~c.gap)
    if not len(live):
        return out
    close_ts = c.close_ts
    names = list(features.model_names)
    # the last bar of each (market, timeframe): sort by key then time, keep each key's final row
    order = live[np.lexsort((close_ts[live], c.tf[live], c.market[live]))]
    m, tf = c.market[order], c.tf[order]
    last = np.ones(len(order), bool)
    last[:-1] = (m[1:] != m[:-1]) | (tf[1:] != tf[:-1])
    for i in order[last]:
        market, tf = c.markets[c.market[i]], format_timeframe(int(c.tf[i]))
        row = features.model_values[i]
        out[f"{market}|{tf}"] = {"market": market, "timeframe": tf, "ts": int(close_ts[i]), "names": names,
                                 "values": [None if v != v else float(v) for v in row.tolist()]}
    return out


class Store:
    """Hosts a ``PgWriter`` (when ``database_url``) and a ``RedisFeed`` + ``LatestCache`` (when ``redis_url``)."""

    def __init__(self, database_url: str | None, redis_url: str | None, spill_dir: str,
                 namespace: str = "ci", feed_maxlen: int = 100_000, indicators: bool = False) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.spill_dir = Path(spill_dir)
        self.namespace = namespace
        self.feed_maxlen = feed_maxlen
        self.indicators = indicators
        self.writer = None
        self.feed = None
        self.cache = None
        self.started = False
        self.received = {"candles": 0, "events": 0, "signals": 0}
        self.metrics = StoreMetrics()
        self._last_report = 0.0

    async def _start(self) -> None:
        if self.started:
            return
        self.started = True
        if self.database_url:
            from connectors.storage.pg_writer import PgWriter
            self.writer = await PgWriter(self.database_url, self.spill_dir).start()
        if self.redis_url:
            from connectors.storage.latest_cache import LatestCache
            from connectors.storage.redis_feed import RedisFeed
            from connectors.storage.redis_keys import RedisKeys
            keys = RedisKeys(namespace=self.namespace)
            self.feed = RedisFeed.from_url(self.redis_url, keys=keys, maxlen=self.feed_maxlen)
            self.cache = LatestCache.from_url(self.redis_url, keys=keys)

    async def push(self, signals: list[Signal], features: FeatureBatch | None) -> None:
        """Persist and publish one sink delivery: closed candles, their events and the signals."""
        await self._start()
        events = features.events if features is not None else []
        candles = features.candles if features is not None and len(features) else None
        self.received["candles"] += len(candles) if candles is not None else 0
        self.received["events"] += len(events)
        self.received["signals"] += len(signals)
        if self.writer is not None:
            if candles is not None:
                self.writer.write("candles", rows.candles(candles))
                risk = rows.risk_scores(features)
                if risk is not None and risk.num_rows:
                    self.writer.write("risk_scores", risk)
                if self.indicators and features.names:
                    self.writer.write("indicator_snapshots", rows.indicator_snapshots(features))
            if events:
                self.writer.write("structure_events", rows.structure_events(events))
            if signals:
                self.writer.write("signals", rows.signals(signals))
        if self.feed is not None:
            if candles is not None:
                recs = [record_dict(c) for c in candles.to_records()]
                await self.feed.publish("candles", recs)
                await self.cache.put_many("candle", {f"{r['market']}|{r['timeframe']}": r for r in recs})
                if features.names:
                    await self.cache.put_many("indicators", latest_indicators(features))
                if features.model_names is not None:
                    await self.cache.put_many("features", latest_model_rows(features))
            if events:
                await self.feed.publish("structure", [record_dict(e) for e in events])
            if signals:
                recs = [record_dict(s) for s in signals]
                await self.feed.publish("signals", recs)
                await self.cache.put_many("signal", {r["market"]: r for r in recs})
        self._report()

    async def venue_events(self, events: list[VenueEvent]) -> None:
        """Gaps, repairs, resyncs and state changes of venues: kept in ``venue_events``; data-quality
        events also go out on the ``alerts`` channel for operators."""
        await self._start()
        if self.writer is not None and events:
            self.writer.write("venue_events", to_table(events, VenueEvent))
        alerts = venue_event_alerts(events)
        if self.feed is not None and alerts:
            await self.feed.publish("alerts", [record_dict(a) for a in alerts])

    async def repair_candles(self, candles: list[Candle]) -> int:
        """Bars rebuilt after a late gap repair replace their degraded versions, in Postgres and live."""
        await self._start()
        if self.database_url and candles:
            from connectors.storage.repairs import upsert_candles
            await upsert_candles(self.database_url, candles)
        if self.feed is not None and candles:
            recs = [record_dict(c) for c in candles]
            await self.feed.publish("candles", recs)
        return len(candles)

    def _report(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_report < 1.0:
            return
        self._last_report = now
        st = self.stats()
        self.metrics.report(st)

    def stats(self) -> dict:
        """What arrived, what the writer and the feed did, buffer depth and write lag."""
        out = {"received": dict(self.received)}
        if self.writer is not None:
            out["postgres"] = self.writer.stats()
        if self.feed is not None:
            out["redis"] = self.feed.stats()
        return out

    async def flush(self, timeout_s: float = 60.0) -> dict:
        """Wait until everything received so far is in Postgres and the feed backlog is sent."""
        await self._start()
        if self.writer is not None:
            await self.writer.flush(timeout_s)
        if self.feed is not None:
            await self.feed.flush(timeout_s)
        self._report(force=True)
        return self.stats()

    async def close(self, timeout_s: float = 30.0) -> dict:
        """Flush what can be flushed, park the rest on disk, close connections."""
        if self.writer is not None:
            await self.writer.close(timeout_s)
        if self.feed is not None:
            await self.feed.close()
        if self.cache is not None:
            await self.cache.close()
        self._report(force=True)
        return self.stats()


StoreActor = ray.remote(Store)

