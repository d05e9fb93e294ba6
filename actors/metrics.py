"""Stage metrics through ray.util.metrics (Ray dashboard / Prometheus); labels stay low-cardinality."""

from __future__ import annotations

import time

from ray.util import metrics

LATENCY_BOUNDARIES_MS = [0.1, 0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000]


class StageMetrics:
    """Events in/out, batch processing latency and queue depth of one shard of one stage.

    Counts and the queue gauge go to Ray's metrics agent at most every ``PUSH_EVERY_S`` (each call is tens
    of microseconds, a noticeable share of a small batch's cost); every batch's latency is observed.
    """

    PUSH_EVERY_S = 0.5

    def __init__(self, stage: str, shard: int) -> None:
        tags = {"stage": stage, "shard": str(shard)}
        keys = ("stage", "shard")
        self.events_in = metrics.Counter("crypto_intel_events_in", "rows received by a stage", keys)
        self.events_out = metrics.Counter("crypto_intel_events_out", "rows emitted by a stage", keys)
        self.batch_ms = metrics.Histogram("crypto_intel_batch_latency_ms", "time to process one batch",
                                          LATENCY_BOUNDARIES_MS, keys)
        self.queue_depth = metrics.Gauge("crypto_intel_queue_depth", "batches in flight downstream", keys)
        for m in (self.events_in, self.events_out, self.batch_ms, self.queue_depth):
            m.set_default_tags(tags)
        self.totals = {"in": 0, "out": 0, "batches": 0, "busy_s": 0.0}
        self._unpushed = [0, 0]  # rows in, rows out since the last push
        self._pushed_at = 0.0

    def record(self, n_in: int, n_out: int, seconds: float, depth: int) -> None:
        self.batch_ms.observe(seconds * 1e3)
        t = self.totals
        t["in"] += n_in
        t["out"] += n_out
        t["batches"] += 1
        t["busy_s"] += seconds
        self._unpushed[0] += n_in
        self._unpushed[1] += n_out
        now = time.monotonic()
        if now - self._pushed_at >= self.PUSH_EVERY_S:
            self.push(depth, now)

    def push(self, depth: int, now: float | None = None) -> None:
        """Hand the counts gathered since the last push to Ray's metrics."""
        n_in, n_out = self._unpushed
        if n_in:
            self.events_in.inc(n_in)
        if n_out:
            self.events_out.inc(n_out)
        self.queue_depth.set(depth)
        self._unpushed = [0, 0]
        self._pushed_at = time.monotonic() if now is None else now


class StoreMetrics:
    """Postgres writer and Redis feed health: rows written, buffer depth, parked files, write lag."""

    def __init__(self) -> None:
        self.gauges = {
            "rows_in_memory": metrics.Gauge("crypto_intel_store_buffer_rows", "rows buffered for Postgres"),
            "spill_files": metrics.Gauge("crypto_intel_store_spill_files", "batches parked on disk"),
            "write_lag_s": metrics.Gauge("crypto_intel_store_write_lag_s", "age of the oldest unwritten row"),
            "backlog": metrics.Gauge("crypto_intel_feed_backlog", "feed items waiting for Redis"),
        }
        self.counters = {
            "rows_written": metrics.Counter("crypto_intel_store_rows_written", "rows committed to Postgres"),
            "retries": metrics.Counter("crypto_intel_store_retries", "Postgres writes retried"),
            "rows_rejected": metrics.Counter("crypto_intel_store_rows_rejected", "rows Postgres refused"),
            "published": metrics.Counter("crypto_intel_feed_published", "items published to the Redis feed"),
            "dropped": metrics.Counter("crypto_intel_feed_dropped", "feed items dropped beyond the backlog bound"),
        }
        self._seen: dict[str, int] = {}

    def report(self, stats: dict) -> None:
        flat = {**stats.get("postgres", {}), **stats.get("redis", {})}
        for name, gauge in self.gauges.items():
            if isinstance(flat.get(name), (int, float)):
                gauge.set(flat[name])
        for name, counter in self.counters.items():
            value = flat.get(name)
            if isinstance(value, int) and value > self._seen.get(name, 0):
                counter.inc(value - self._seen.get(name, 0))
                self._seen[name] = value



class VenueMetrics:
    """Per-venue feed health: messages, trades, reconnects, gaps, repairs, rejects, lag and clock skew."""

    def __init__(self, venue: str) -> None:
        keys = ("venue",)
        self.gauges = {
            "messages_per_s": metrics.Gauge("crypto_intel_venue_messages_per_s", "frames/s over 10 s", keys),
            "lag_ms": metrics.Gauge("crypto_intel_venue_lag_ms", "local receive time minus venue event time", keys),
            "clock_skew_ms": metrics.Gauge("crypto_intel_venue_clock_skew_ms",
                                           "min(receive - event time): skew plus fastest network delay", keys),
            "open_gaps": metrics.Gauge("crypto_intel_venue_open_gaps", "trade gaps not yet repaired", keys),
            "live": metrics.Gauge("crypto_intel_venue_live", "1 when every connection of the venue is live", keys),
        }
        self.counters = {
            "messages": metrics.Counter("crypto_intel_venue_messages", "frames received", keys),
            "trades": metrics.Counter("crypto_intel_venue_trades", "trades parsed", keys),
            "reconnects": metrics.Counter("crypto_intel_venue_reconnects", "reconnections", keys),
            "gaps": metrics.Counter("crypto_intel_venue_gaps", "trade id gaps found", keys),
            "recovered": metrics.Counter("crypto_intel_venue_recovered", "missing trades recovered over REST", keys),
            "degraded": metrics.Counter("crypto_intel_venue_degraded", "gaps released before repair", keys),
            "rejected": metrics.Counter("crypto_intel_venue_rejected", "frames refused by the parser", keys),
        }
        for m in (*self.gauges.values(), *self.counters.values()):
            m.set_default_tags({"venue": venue})
        self._seen: dict[str, int] = {}

    def report(self, m: dict) -> None:
        for name, gauge in self.gauges.items():
            value = (1.0 if m.get("state") == "live" else 0.0) if name == "live" else m.get(name)
            if value is not None and value == value:
                gauge.set(float(value))
        totals = {**m, "rejected": sum(m.get("rejects", {}).values())}
        for name, counter in self.counters.items():
            now = int(totals.get(name, 0))
            delta = now - self._seen.get(name, 0)
            if delta > 0:
                counter.inc(delta)
            self._seen[name] = now
