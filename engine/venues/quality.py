"""Data quality of live market data: which bars were built while trades were missing, and their repair.

A venue gap whose repair did not land in time is a *degraded window* ``[start_ts, end_ts]`` of one
market (event time of the trades either side of the hole). Bars overlapping an open window are
degraded; signals fired on them carry the ``degraded_data`` flag. When the missing trades arrive
late, the bars of the window are rebuilt from the trades kept here and published as repaired
(never rewriting indicator or signal history, which stays flagged).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from engine.candles import CandleAggregator
from engine.venues.sequencer import rows_to_batch
from schemas.batches import CandleBatch, TradeBatch
from schemas.records import Candle, DataQualityAlert, Signal, VenueEvent

DEGRADED_FLAG = "degraded_data"


class DataQuality:
    """Tracks degraded windows from venue events and rebuilds their bars when the repair lands."""

    def __init__(self, timeframes: list[str], keep_trades: int = 200_000) -> None:
        self.timeframes = list(timeframes)
        self.windows: dict[tuple[str, int, int], tuple[int, int]] = {}  # (market, from_id, to_id) -> (start, end)
        self.recent: dict[str, deque] = {}
        self.keep_trades = keep_trades
        self.stats = {"degraded_windows": 0, "repaired_windows": 0, "degraded_bars": 0, "rebuilt_bars": 0}

    def on_trades(self, batch: TradeBatch) -> None:
        """Remember recent trades per market: the material a late repair rebuilds bars from."""
        for m, ts, p, s, sd, tid in zip(batch.market.tolist(), batch.ts.tolist(), batch.price.tolist(),
                                        batch.size.tolist(), batch.side.tolist(), batch.trade_id.tolist()):
            market = batch.markets[m]
            ring = self.recent.get(market)
            if ring is None:
                ring = self.recent[market] = deque(maxlen=self.keep_trades)
            ring.append((market, ts, p, s, sd, tid))

    def on_event(self, event: VenueEvent) -> None:
        key = (event.market, event.from_id, event.to_id)
        if event.kind == "degraded":
            self.windows[key] = (event.start_ts, event.end_ts)
            self.stats["degraded_windows"] += 1
        elif event.kind == "unrepaired" and event.start_ts:
            self.windows.setdefault(key, (event.start_ts, event.end_ts))  # stays degraded for good

    def on_late_repair(self, event: VenueEvent, late: TradeBatch) -> list[Candle]:
        """Close the window of a late ``repair`` event; returns its bars rebuilt with the recovered trades."""
        window = self.windows.pop((event.market, event.from_id, event.to_id), None)
        if window is None:
            return []
        self.stats["repaired_windows"] += 1
        mine = late.take(np.array([late.markets[m] == event.market for m in late.market], bool)) if len(late) else late
        for row in zip([event.market] * len(mine), mine.ts.tolist(), mine.price.tolist(), mine.size.tolist(),
                       mine.side.tolist(), mine.trade_id.tolist()):
            self.recent.setdefault(event.market, deque(maxlen=self.keep_trades)).append(row)
        rows = sorted(self.recent.get(event.market, ()), key=lambda r: (r[1], r[5]))
        bars = self._bars(rows, window)
        self.stats["rebuilt_bars"] += len(bars)
        return bars

    def _bars(self, rows: list[tuple], window: tuple[int, int]) -> list[Candle]:
        start, end = window
        agg = CandleAggregator(self.timeframes)
        batch = rows_to_batch(rows)
        done = CandleBatch.concat([agg.update(batch), agg.flush()])
        # only bars already closed live: a bar still forming gets the late trades through the pipeline
        closed = done.close_ts <= rows[-1][1] if rows else np.zeros(len(done), bool)
        keep = (done.open_ts <= end) & (done.close_ts > start) & closed
        return done.take(keep).to_records()

    def degraded_mask(self, candles: CandleBatch) -> np.ndarray:
        """Per bar: does it overlap an open degraded window of its market?"""
        mask = np.zeros(len(candles), bool)
        if not self.windows or not len(candles):
            return mask
        names = np.array(candles.markets, dtype=object)[candles.market]
        for (market, _, _), (start, end) in self.windows.items():
            mask |= (names == market) & (candles.open_ts <= end) & (candles.close_ts > start)
        self.stats["degraded_bars"] += int(mask.sum())
        return mask

    def flag_signals(self, signals: list[Signal]) -> list[Signal]:
        """Signals whose bar lies in a degraded window, flagged ``degraded_data``."""
        if not self.windows:
            return signals
        out = []
        for s in signals:
            hit = any(market == s.market and start <= s.ts and s.ts - _tf_ns(s.timeframe) <= end
                      for (market, _, _), (start, end) in self.windows.items())
            out.append(s.model_copy(update={"flags": [*s.flags, DEGRADED_FLAG]}) if hit else s)
        return out


def _tf_ns(timeframe: str) -> int:
    from schemas.timeframes import parse_timeframe
    return parse_timeframe(timeframe)


# venue events operators hear about on the alerts channel, and how loudly
ALERTED_VENUE_EVENTS = {"gap": "info", "repair": "info", "resync": "info", "degraded": "high", "unrepaired": "high"}


def venue_event_alerts(events: list[VenueEvent]) -> list[DataQualityAlert]:
    """Data-quality alerts for the live feed from venue events (gaps, repairs, resyncs, degraded data)."""
    return [DataQualityAlert(id=f"{e.venue}:{e.market}:{e.kind}:{e.from_id}:{e.ts}", ts=e.ts, kind=f"data_{e.kind}",
                             severity=ALERTED_VENUE_EVENTS[e.kind], venue=e.venue, market=e.market,
                             message=f"{e.venue} {e.market} {e.kind}: {e.detail}".strip())
            for e in events if e.kind in ALERTED_VENUE_EVENTS]
