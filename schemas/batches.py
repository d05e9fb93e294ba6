"""Columnar micro-batches exchanged between pipeline stages.

Rows of many markets share one batch; ``markets`` is the batch's dictionary of market keys and
``market`` holds an int32 index into it per row (dictionary encoding, as Arrow does). Numpy arrays
keep hot paths vectorised and travel through Ray's object store without copies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from schemas.records import Candle, Side, TradeTick
from schemas.timeframes import format_timeframe

SIDE_BUY, SIDE_SELL, SIDE_UNKNOWN = 1, -1, 0
_SIDE_NAMES = {SIDE_BUY: Side.BUY.value, SIDE_SELL: Side.SELL.value, SIDE_UNKNOWN: Side.UNKNOWN.value}


def _concat_markets(batches: list) -> tuple[list[str], list[np.ndarray]]:
    """Merge the market dictionaries of several batches; return the merged list and remapped indices."""
    merged: dict[str, int] = {}
    remapped = []
    for b in batches:
        lut = np.array([merged.setdefault(m, len(merged)) for m in b.markets], dtype=np.int32)
        remapped.append(lut[b.market] if len(b.markets) else b.market.astype(np.int32))
    return list(merged), remapped


@dataclass
class TradeBatch:
    """Trades of one or more markets, in arrival order."""

    markets: list[str]
    market: np.ndarray  # int32 index into markets
    ts: np.ndarray  # int64 ns
    price: np.ndarray  # float64
    size: np.ndarray  # float64
    side: np.ndarray  # int8: 1 buy, -1 sell, 0 unknown
    trade_id: np.ndarray  # int64, -1 unknown
    ts_init: int = 0  # wall-clock ns when the batch entered the engine (for latency)

    def __len__(self) -> int:
        return len(self.ts)

    @classmethod
    def empty(cls) -> "TradeBatch":
        return cls([], np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0), np.empty(0),
                   np.empty(0, np.int8), np.empty(0, np.int64))

    @classmethod
    def for_market(cls, market: str, ts, price, size, side=None, trade_id=None) -> "TradeBatch":
        """Batch of one market from plain arrays."""
        n = len(ts)
        return cls([market], np.zeros(n, np.int32), np.asarray(ts, np.int64), np.asarray(price, np.float64),
                    np.asarray(size, np.float64),
                    np.zeros(n, np.int8) if side is None else np.asarray(side, np.int8),
                    np.full(n, -1, np.int64) if trade_id is None else np.asarray(trade_id, np.int64))

    def take(self, idx: np.ndarray) -> "TradeBatch":
        """Rows at ``idx`` (indices or boolean mask), same market dictionary."""
        return TradeBatch(self.markets, self.market[idx], self.ts[idx], self.price[idx], self.size[idx],
                          self.side[idx], self.trade_id[idx], self.ts_init)

    def slice(self, start: int, stop: int) -> "TradeBatch":
        return self.take(slice(start, stop))

    @classmethod
    def concat(cls, batches: list["TradeBatch"]) -> "TradeBatch":
        if not batches:
            return cls.empty()
        markets, idx = _concat_markets(batches)
        return cls(markets, np.concatenate(idx), *(np.concatenate([getattr(b, c) for b in batches])
                                                   for c in ("ts", "price", "size", "side", "trade_id")),
                   ts_init=max(b.ts_init for b in batches))

    def to_records(self) -> list[TradeTick]:
        return [TradeTick(market=self.markets[m], ts=int(t), price=float(p), size=float(s),
                          side=_SIDE_NAMES[int(sd)], trade_id=int(i))
                for m, t, p, s, sd, i in zip(self.market, self.ts, self.price, self.size, self.side,
                                             self.trade_id)]


CANDLE_COLUMNS = ("open_ts", "open", "high", "low", "close", "volume", "buy_volume", "sell_volume",
                  "vwap", "trade_count", "gap")


@dataclass
class CandleBatch:
    """Closed candles of one or more markets and timeframes; per key in time order."""

    markets: list[str]
    market: np.ndarray  # int32
    tf: np.ndarray  # int64 timeframe length in ns
    open_ts: np.ndarray  # int64
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    buy_volume: np.ndarray
    sell_volume: np.ndarray
    vwap: np.ndarray
    trade_count: np.ndarray  # int64
    gap: np.ndarray  # bool
    ts_init: int = 0
    degraded: np.ndarray | None = None  # bool per bar, set by the sink from venue data quality; None: all False

    def __len__(self) -> int:
        return len(self.open_ts)

    def degraded_or_false(self) -> np.ndarray:
        return self.degraded if self.degraded is not None else np.zeros(len(self.open_ts), bool)

    @property
    def close_ts(self) -> np.ndarray:
        return self.open_ts + self.tf

    @classmethod
    def empty(cls) -> "CandleBatch":
        f = np.empty(0)
        return cls([], np.empty(0, np.int32), np.empty(0, np.int64), np.empty(0, np.int64), f, f, f, f, f, f,
                   f, f, np.empty(0, np.int64), np.empty(0, bool))

    def take(self, idx) -> "CandleBatch":
        return CandleBatch(self.markets, self.market[idx], self.tf[idx],
                           *(getattr(self, c)[idx] for c in CANDLE_COLUMNS), ts_init=self.ts_init,
                           degraded=None if self.degraded is None else self.degraded[idx])

    @classmethod
    def concat(cls, batches: list["CandleBatch"]) -> "CandleBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        markets, idx = _concat_markets(batches)
        cols = [np.concatenate([getattr(b, c) for b in batches]) for c in ("tf",) + CANDLE_COLUMNS]
        degraded = (None if all(b.degraded is None for b in batches)
                    else np.concatenate([b.degraded_or_false() for b in batches]))
        return cls(markets, np.concatenate(idx), *cols, ts_init=max(b.ts_init for b in batches), degraded=degraded)

    def key_strings(self) -> list[str]:
        """``market|timeframe`` per row."""
        labels = {int(t): format_timeframe(int(t)) for t in np.unique(self.tf)}
        return [f"{self.markets[m]}|{labels[int(t)]}" for m, t in zip(self.market, self.tf)]

    def to_records(self) -> list[Candle]:
        labels = {int(t): format_timeframe(int(t)) for t in np.unique(self.tf)}
        return [Candle(market=self.markets[int(m)], timeframe=labels[int(tf)], open_ts=int(o),
                       close_ts=int(o + tf), open=float(op), high=float(h), low=float(lo), close=float(c),
                       volume=float(v), buy_volume=float(bv), sell_volume=float(sv), vwap=float(vw),
                       trade_count=int(n), gap=bool(g), degraded=bool(d))
                for m, tf, o, op, h, lo, c, v, bv, sv, vw, n, g, d in zip(
                    self.market, self.tf, self.open_ts, self.open, self.high, self.low, self.close, self.volume,
                    self.buy_volume, self.sell_volume, self.vwap, self.trade_count, self.gap,
                    self.degraded_or_false())]

    def to_arrow(self) -> pa.Table:
        """Candles as an Arrow table in the ``schemas.arrow.CANDLE`` schema."""
        from schemas.arrow import CANDLE
        labels = {int(t): format_timeframe(int(t)) for t in np.unique(self.tf)}
        markets = np.array(self.markets, dtype=object)
        return pa.table({
            "market": pa.array(markets[self.market] if len(self) else [], pa.string()),
            "timeframe": pa.array([labels[int(t)] for t in self.tf], pa.string()),
            "open_ts": self.open_ts, "close_ts": self.close_ts, "open": self.open, "high": self.high,
            "low": self.low, "close": self.close, "volume": self.volume, "buy_volume": self.buy_volume,
            "sell_volume": self.sell_volume, "vwap": self.vwap, "trade_count": self.trade_count,
            "gap": self.gap, "degraded": self.degraded_or_false(),
        }, schema=CANDLE)


@dataclass
class FeatureBatch:
    """Closed candles with the indicator values computed on them (one column per output name)."""

    candles: CandleBatch
    names: list[str]
    values: np.ndarray  # float64, shape (rows, len(names)); NaN during warm-up and on gap bars
    events: list = field(default_factory=list)  # StructureEvent records confirmed at these bars

    def __len__(self) -> int:
        return len(self.candles)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]


def concat_features(batches: list[FeatureBatch]) -> FeatureBatch:
    """Concatenate feature batches that carry the same columns."""
    kept = [b for b in batches if len(b) or b.events]
    if len(kept) <= 1:
        return kept[0] if kept else batches[0]
    batches = kept
    names = batches[0].names
    for b in batches:
        if b.names != names:
            raise ValueError(f"cannot concatenate feature batches with columns {b.names} and {names}")
    return FeatureBatch(CandleBatch.concat([b.candles for b in batches]), list(names),
                        np.vstack([b.values for b in batches]), [e for b in batches for e in b.events])


def take_features(batch: FeatureBatch, idx: np.ndarray, markets: set[str]) -> FeatureBatch:
    """Rows at ``idx`` and the events of ``markets``."""
    return FeatureBatch(batch.candles.take(idx), batch.names, batch.values[idx],
                        [e for e in batch.events if e.market in markets])
