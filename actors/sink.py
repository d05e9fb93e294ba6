"""The sink actor at the end of the pipeline: collects signals and events, tracks latency, writes files."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
import ray

from engine.sinks.jsonl import JsonlSink
from engine.sinks.latest import LatestStateStore
from engine.venues.quality import DataQuality
from schemas.batches import EventBatch, FeatureBatch, SignalBatch
from schemas.records import Signal


class Sink:
    """Receives the final stage's output; appends signals to a JSONL file when given one.

    Signals arrive per shard in time order; the full stream in canonical order comes from
    ``result()``. Latency samples are tick-ingest → arrival here, bounded in memory.
    """

    def __init__(self, n_upstream: int, out_path: str | None = None, keep: bool = True,
                 latency_samples: int = 200_000, store=None, store_in_flight: int = 8) -> None:
        self.n_upstream = n_upstream
        self.ended = 0
        self.keep = keep
        self.signals: list[Signal] = []
        self.events: list = []
        self.model_rows: list[FeatureBatch] = []  # model feature rows (PipelineConfig.features), when kept
        self.candles = 0
        self.n_signals = 0
        self.latency_ms: deque = deque(maxlen=latency_samples)
        self.delivery_ms: deque = deque(maxlen=latency_samples)  # ... until it reached this sink
        self.last_event_ts = 0
        self.latest = LatestStateStore()
        self.file = JsonlSink(out_path) if out_path else None
        self.store = store  # a Store actor (Postgres + Redis) or None
        self.store_in_flight = store_in_flight
        self._store_refs: list = []
        self.quality = DataQuality([])  # degraded windows of live venue data, set by the driver

    def set_degraded_windows(self, windows: dict) -> int:
        """Replace the open degraded windows ``{(market, from_id, to_id): (start_ts, end_ts)}``."""
        self.quality.windows = dict(windows)
        return len(windows)

    def publish_repaired(self, candles: list) -> int:
        """Bars rebuilt after a late repair: to the store (upserted, degraded cleared) and the latest state."""
        if self.store is not None and candles:
            self._store_refs.append(self.store.repair_candles.remote(candles))
        return len(candles)

    def push(self, signals: list[Signal], features: FeatureBatch | None, ts_init: int, sent_ns: int) -> None:
        if self.quality.windows:  # bars built while venue trades were missing, and signals fired on them
            signals = self.quality.flag_signals(signals)
            if features is not None and len(features):
                features.candles.degraded = self.quality.degraded_mask(features.candles)
        # tick → signal: from the source handing the batch to Ray until the signal stage decided on it
        if ts_init:
            self.latency_ms.append((sent_ns - ts_init) / 1e6)
            self.delivery_ms.append((time.time_ns() - ts_init) / 1e6)
        if features is not None:
            self.candles += len(features)
            if len(features):
                self.last_event_ts = max(self.last_event_ts, int(features.candles.close_ts.max()))
                self.latest.update_candles(features.candles)
                self.latest.update_indicators(features)
            self.latest.add_structure_events(features.events)
            if self.keep and len(features.events):
                self.events.append(features.events)
            if self.keep and features.model_names is not None and len(features):
                self.model_rows.append(FeatureBatch(features.candles, [], np.empty((len(features), 0)), None,
                                                    features.model_names, features.model_values))
        self.n_signals += len(signals)
        self.latest.add_signals(signals)
        if self.keep and len(signals):
            self.signals.append(signals)
        if self.file is not None and signals:
            self.file.write(signals)
            self.file.flush()
        if self.store is not None and (signals or (features is not None and (len(features) or len(features.events)))):
            self._forward(signals, features)

    def _forward(self, signals: list[Signal], features: FeatureBatch | None) -> None:
        # bounded: a slow store slows this sink (and so the pipeline) instead of growing memory
        while len(self._store_refs) >= self.store_in_flight:
            _, self._store_refs = ray.wait(self._store_refs, num_returns=1)
        self._store_refs.append(self.store.push.remote(signals, features))

    def store_pending(self) -> int:
        """Deliveries to the store actor not yet acknowledged."""
        if self._store_refs:
            _, self._store_refs = ray.wait(self._store_refs, num_returns=len(self._store_refs), timeout=0)
        return len(self._store_refs)

    def end(self) -> None:
        self.ended += 1
        if self.file is not None and self.ended >= self.n_upstream:
            self.file.flush()

    def done(self) -> bool:
        return self.ended >= self.n_upstream

    def result(self) -> dict:
        return {"signals": _concat_signals(self.signals), "events": EventBatch.concat(self.events),
                "candles": self.candles, "model_rows": self.model_rows}

    def status(self) -> dict:
        p50 = p99 = float("nan")
        if self.latency_ms:
            p50, p99 = (float(x) for x in np.percentile(np.array(self.latency_ms), [50, 99]))
        return {"candles": self.candles, "signals": self.n_signals, "last_event_ts": self.last_event_ts,
                "latency_p50_ms": p50, "latency_p99_ms": p99, "latency_n": len(self.latency_ms)}

    def latencies(self) -> dict[str, list[float]]:
        """Samples in ms: tick → signal decision, and tick → arrival at the sink."""
        return {"decision": list(self.latency_ms), "delivery": list(self.delivery_ms)}

    def recent_signals(self, n: int = 20) -> list[Signal]:
        return [Signal.model_validate(d) for d in self.latest.signals(limit=n)][::-1]

    def latest_state(self) -> dict:
        """The latest-state store as plain dicts (what an HTTP layer serves)."""
        return self.latest.snapshot()


def _concat_signals(parts: list) -> SignalBatch | list:
    """One batch when every part is columns; records otherwise (signals flagged from venue data quality)."""
    if all(isinstance(p, SignalBatch) for p in parts):
        return SignalBatch.concat(parts)
    return [s for p in parts for s in p]
