"""In-memory latest state for an HTTP layer: last candle and indicators per key, recent events, counters.

Thread-safe: writers (the pipeline) and readers (request handlers) may run on different threads.
Readers get plain dicts (JSON-ready, NaN kept as float) and never references into the store.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

import numpy as np

import engine.structure.events  # noqa: F401  (it makes the ids of event columns when records are read)
from schemas.batches import CandleBatch, EventBatch, FeatureBatch, SignalBatch
from schemas.records import (
    Candle,
    IndicatorSnapshot,
    IndicatorValue,
    Signal,
    StructureEvent,
)


class LatestStateStore:
    """Latest candle and indicator values per (market, timeframe); last ``max_events`` signals/events."""

    def __init__(self, max_events: int = 1000) -> None:
        self._lock = threading.Lock()
        self._candles: dict[tuple[str, str], dict] = {}
        self._indicators: dict[tuple[str, str], dict] = {}
        self._signals = _RecentRecords(max_events)
        self._structure = _RecentRecords(max_events)
        self._counters: dict[str, int] = {}

    # ---- writers --------------------------------------------------------------------------
    def update_candles(self, candles: CandleBatch | Iterable[Candle]) -> None:
        """Keep the candle with the latest open time per (market, timeframe)."""
        if isinstance(candles, CandleBatch):
            candles = _last_per_key(candles).to_records()
        with self._lock:
            for c in candles:
                key = (c.market, c.timeframe)
                old = self._candles.get(key)
                if old is None or c.open_ts >= old["open_ts"]:
                    self._candles[key] = c.model_dump(mode="json")

    def update_indicators(self, values: FeatureBatch | Iterable[IndicatorValue | IndicatorSnapshot]) -> None:
        """Merge indicator values into the latest per (market, timeframe); older bars are ignored."""
        if isinstance(values, FeatureBatch):
            values = _feature_snapshots(values)
        with self._lock:
            for v in values:
                key = (v.market, v.timeframe)
                cur = self._indicators.get(key)
                if cur is None or v.ts > cur["ts"]:
                    cur = self._indicators[key] = {"market": v.market, "timeframe": v.timeframe, "ts": v.ts,
                                                   "values": {}}
                elif v.ts < cur["ts"]:
                    continue
                if isinstance(v, IndicatorSnapshot):
                    cur["close"] = v.close
                    cur["values"].update(v.values)
                else:
                    cur["values"][v.name] = v.value

    def add_signals(self, signals: Iterable[Signal]) -> None:
        with self._lock:
            self._signals.add(signals)

    def add_structure_events(self, events: Iterable[StructureEvent]) -> None:
        with self._lock:
            self._structure.add(events)

    def incr(self, counter: str, n: int = 1) -> None:
        with self._lock:
            self._counters[counter] = self._counters.get(counter, 0) + n

    # ---- readers --------------------------------------------------------------------------
    def markets(self) -> list[str]:
        with self._lock:
            return sorted({m for m, _ in self._candles} | {m for m, _ in self._indicators})

    def candle(self, market: str, timeframe: str) -> dict | None:
        with self._lock:
            c = self._candles.get((market, timeframe))
            return dict(c) if c else None

    def candles(self, market: str | None = None) -> list[dict]:
        with self._lock:
            return [dict(c) for (m, _), c in sorted(self._candles.items()) if market in (None, m)]

    def indicators(self, market: str | None = None, timeframe: str | None = None) -> list[dict]:
        with self._lock:
            return [{**v, "values": dict(v["values"])} for (m, tf), v in sorted(self._indicators.items())
                    if market in (None, m) and timeframe in (None, tf)]

    def signals(self, limit: int | None = None, market: str | None = None) -> list[dict]:
        """Most recent first."""
        return self._recent(self._signals, limit, market)

    def structure_events(self, limit: int | None = None, market: str | None = None) -> list[dict]:
        """Most recent first."""
        return self._recent(self._structure, limit, market)

    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def snapshot(self) -> dict:
        """Everything, as one JSON-ready dict."""
        return {"candles": self.candles(), "indicators": self.indicators(), "signals": self.signals(),
                "structure_events": self.structure_events(), "counters": self.counters()}

    def _recent(self, records: "_RecentRecords", limit: int | None, market: str | None) -> list[dict]:
        with self._lock:
            out = [dict(e) for e in reversed(records.read()) if market in (None, e["market"])]
        return out if limit is None else out[:limit]


class _RecentRecords:
    """The last ``maxlen`` records as JSON dicts; columnar batches become dicts only when someone reads them."""

    def __init__(self, maxlen: int) -> None:
        self.dicts: deque[dict] = deque(maxlen=maxlen)
        self.pending: list = []  # batches or lists of records not yet in ``dicts``, newest last

    def add(self, items) -> None:
        if not isinstance(items, (EventBatch, SignalBatch)):
            items = list(items)
        if not len(items):
            return
        self.pending.append(items)
        kept, total = [], 0
        for part in reversed(self.pending):  # parts wholly older than the last maxlen rows are never read
            kept.append(part)
            total += len(part)
            if total >= self.dicts.maxlen:
                break
        self.pending = kept[::-1]

    def read(self) -> deque:
        for part in self.pending:
            tail = max(0, len(part) - self.dicts.maxlen)
            part = part.take(slice(tail, None)) if hasattr(part, "take") else part[tail:]
            self.dicts.extend(r.model_dump(mode="json") for r in part)
        self.pending = []
        return self.dicts


def _last_per_key(b: CandleBatch) -> CandleBatch:
    """Rows with the latest open time of each (market, timeframe) of a batch."""
    if not len(b):
        return b
    order = np.lexsort((b.open_ts, b.tf, b.market))
    m, tf = b.market[order], b.tf[order]
    last = np.append((m[1:] != m[:-1]) | (tf[1:] != tf[:-1]), True)
    return b.take(order[last])


def _feature_snapshots(f: FeatureBatch) -> list[IndicatorSnapshot]:
    """The last row of each key of a FeatureBatch as IndicatorSnapshot records."""
    c = f.candles
    if not len(c):
        return []
    order = np.lexsort((c.open_ts, c.tf, c.market))
    m, tf = c.market[order], c.tf[order]
    rows = order[np.append((m[1:] != m[:-1]) | (tf[1:] != tf[:-1]), True)]
    labels = c.take(rows).to_records()
    return [IndicatorSnapshot(market=k.market, timeframe=k.timeframe, ts=k.open_ts, close=k.close,
                              values={n: float(v) for n, v in zip(f.names, f.values[r])})
            for k, r in zip(labels, rows)]
