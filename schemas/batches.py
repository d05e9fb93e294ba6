"""Columnar micro-batches exchanged between pipeline stages.

Rows of many markets share one batch; ``markets`` is the batch's dictionary of market keys and
``market`` holds an int32 index into it per row (dictionary encoding, as Arrow does). Numpy arrays
keep hot paths vectorised and travel through Ray's object store without copies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import pyarrow as pa

from schemas.records import Candle, Side, Signal, StructureEvent, TradeTick
from schemas.timeframes import format_timeframe, parse_timeframe

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
    events: "EventBatch" = None  # structure events confirmed at these bars (a list of records is converted)
    # model features of these rows (engine.features), when the pipeline computes them: names and float32 values
    model_names: list[str] | None = None
    model_values: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.events, EventBatch):
            self.events = EventBatch.from_records(self.events or [])

    def __len__(self) -> int:
        return len(self.candles)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]


def concat_features(batches: list[FeatureBatch]) -> FeatureBatch:
    """Concatenate feature batches that carry the same columns."""
    kept = [b for b in batches if len(b) or len(b.events)]
    if len(kept) <= 1:
        return kept[0] if kept else batches[0]
    batches = kept
    names = batches[0].names
    for b in batches:
        if b.names != names:
            raise ValueError(f"cannot concatenate feature batches with columns {b.names} and {names}")
    model = None
    if all(b.model_names is not None for b in batches):
        model = np.vstack([b.model_values for b in batches])
    return FeatureBatch(CandleBatch.concat([b.candles for b in batches]), list(names),
                        np.vstack([b.values for b in batches]), EventBatch.concat([b.events for b in batches]),
                        batches[0].model_names if model is not None else None, model)


def take_features(batch: FeatureBatch, idx: np.ndarray, markets: set[str]) -> FeatureBatch:
    """Rows at ``idx`` and the events of ``markets``."""
    model = batch.model_values[idx] if batch.model_names is not None else None
    return FeatureBatch(batch.candles.take(idx), batch.names, batch.values[idx], batch.events.of_markets(markets),
                        batch.model_names, model)


# Every structure event kind, with the names of its meta values in the order its records list them. A kind's
# code is its index here: kernels emit codes, and records are built from names only at the edges.
def _kinds() -> tuple[tuple[str, tuple[str, ...]], ...]:
    swings = [(k, ("left", "right")) for k in ("swing_high", "swing_low")]
    breaks = [(k, ("close",)) for k in ("bos_bull", "choch_bull", "bos_bear", "choch_bear")]
    gaps = [(f"fvg_{d}_{s}", ("top", "bottom", "joined")) for d in ("bull", "bear")
            for s in ("touched", "mitigated", "invalidated", "merged", "evicted", "created")]
    blocks = [(f"ob_{d}_{s}", ("top", "bottom", "volume", "balance", "level", "choch", "break_ts"))
              for d in ("bull", "bear")
              for s in ("breaker_invalidated", "touched", "mitigated", "breaker_created", "evicted", "created")]
    pools = [(f"liquidity_{d}_{s}", ("members", "anchor", "tolerance", "top", "bottom")) for d in ("high", "low")
             for s in ("created", "grown", "swept", "evicted")]
    return tuple(swings + breaks + gaps + blocks + pools)


EVENT_KINDS = _kinds()
KIND_NAMES = [name for name, _ in EVENT_KINDS]
KIND_CODE = {name: code for code, name in enumerate(KIND_NAMES)}
META_WIDTH = max(len(meta) for _, meta in EVENT_KINDS)
_KIND_TEXT_RANK = np.argsort(np.argsort(np.array(KIND_NAMES)))  # each code's rank among the names as text


@dataclass(eq=False)
class EventBatch:
    """Structure events as columns: kind codes (``EVENT_KINDS``), times, price, meta values and ids.

    Behaves as a sequence of StructureEvent records (``len``, iteration, indexing), built on demand, so code
    that reads records keeps working while the pipeline moves columns.
    """

    markets: list[str]
    market: np.ndarray  # int32 index into markets
    tf: np.ndarray  # int64 timeframe length in ns
    kind: np.ndarray  # int16 code into EVENT_KINDS
    ts: np.ndarray  # int64, open time of the bar the event refers to
    confirmed_ts: np.ndarray  # int64, close time of the bar that confirmed it
    price: np.ndarray  # float64
    meta: np.ndarray  # float64 (rows, META_WIDTH): the kind's meta values in order, NaN after them
    id: np.ndarray | None  # 'S16' ids (any string dtype for events read back from records); None: not made yet
    _records: list | None = field(default=None, repr=False, compare=False)
    # how ids are made from the other columns, set by engine.structure.events (ids are hashes of the columns,
    # made only where someone reads them: records, the sinks, ties in the canonical order)
    derive_ids: ClassVar[Callable[["EventBatch"], np.ndarray] | None] = None

    def ids_array(self) -> np.ndarray:
        """The ids, made from the columns on first use."""
        if self.id is None:
            if EventBatch.derive_ids is None:
                raise RuntimeError("event ids are made by engine.structure.events; import it first")
            self.id = EventBatch.derive_ids(self) if len(self) else np.empty(0, "S16")
        return self.id

    def __len__(self) -> int:
        return len(self.ts)

    def __bool__(self) -> bool:
        return len(self.ts) > 0

    def __iter__(self):
        return iter(self.to_records())

    def __getitem__(self, i):
        return self.to_records()[i]

    def __add__(self, other) -> list:
        return self.to_records() + list(other)

    def __radd__(self, other) -> list:
        return list(other) + self.to_records()

    def __eq__(self, other) -> bool:
        """Equal to another batch or a list holding the same records in the same order."""
        if isinstance(other, (EventBatch, list, tuple)):
            return self.to_records() == list(other)
        return NotImplemented

    @classmethod
    def empty(cls, markets: list[str] | None = None) -> "EventBatch":
        i64 = np.empty(0, np.int64)
        return cls([] if markets is None else markets, np.empty(0, np.int32), i64, np.empty(0, np.int16), i64,
                   i64, np.empty(0), np.empty((0, META_WIDTH)), np.empty(0, "S16"))

    def take(self, idx) -> "EventBatch":
        return EventBatch(self.markets, self.market[idx], self.tf[idx], self.kind[idx], self.ts[idx],
                          self.confirmed_ts[idx], self.price[idx], self.meta[idx],
                          None if self.id is None else self.id[idx])

    @classmethod
    def concat(cls, batches: list["EventBatch"]) -> "EventBatch":
        batches = [b for b in batches if len(b)]
        if not batches:
            return cls.empty()
        if len(batches) == 1:
            return batches[0]
        first = batches[0].markets
        if all(b.markets is first or b.markets == first for b in batches):
            markets, idx = first, [b.market for b in batches]
        else:
            markets, idx = _concat_markets(batches)
        if all(b.id is None for b in batches):
            ids = None
        else:
            parts = [b.ids_array() for b in batches]
            if len({i.dtype for i in parts}) > 1:
                parts = [i.astype(str) for i in parts]
            ids = np.concatenate(parts)
        return cls(markets, np.concatenate(idx).astype(np.int32, copy=False),
                   *(np.concatenate([getattr(b, c) for b in batches])
                     for c in ("tf", "kind", "ts", "confirmed_ts", "price", "meta")), ids)

    def of_kinds(self, codes) -> "EventBatch":
        """The events whose kind code is in ``codes``."""
        return self.take(np.isin(self.kind, np.asarray(list(codes), np.int16)))

    def of_markets(self, names: set[str]) -> "EventBatch":
        """The events of the markets named in ``names``."""
        keep = np.array([m in names for m in self.markets], bool)
        return self.take(keep[self.market] if len(self.markets) else np.zeros(len(self), bool))

    def order(self) -> np.ndarray:
        """Permutation into the canonical order of an event stream: confirmed time, market, kind, timeframe, id
        (market, kind and timeframe compared as text)."""
        m_rank = np.argsort(np.argsort(np.array(self.markets, dtype=object)))[self.market] if len(self.markets) \
            else self.market
        tfs, tf_idx = np.unique(self.tf, return_inverse=True)
        labels = [format_timeframe(int(t)) for t in tfs]
        tf_rank = np.argsort(np.argsort(np.array(labels, dtype=object)))[tf_idx.reshape(-1)] if len(tfs) else tf_idx
        keys = (tf_rank, _KIND_TEXT_RANK[self.kind], m_rank, self.confirmed_ts)
        order = np.lexsort(keys)
        # only events equal on every other key need their ids (the last key): make ids for those alone
        tied = np.zeros(len(order), bool)
        if len(order) > 1:
            same = np.ones(len(order) - 1, bool)
            for k in keys:
                ks = k[order]
                same &= ks[1:] == ks[:-1]
            tied[1:] |= same
            tied[:-1] |= same
        if not tied.any():
            return order
        rows = order[tied]
        sub = self.take(rows)
        ids = sub.ids_array() if self.id is None else self.id[rows]
        group = np.cumsum(np.r_[True, ~same])[tied]  # one number per run of tied events, in sorted order
        order[tied] = rows[np.lexsort((ids, group))]
        return order

    def ids(self) -> list[str]:
        ids = self.ids_array()
        return ids.astype(str).tolist() if ids.dtype.kind == "S" else [str(i) for i in ids.tolist()]

    def to_records(self) -> list:
        """StructureEvent records, made once and kept (the batch is not changed after it is built)."""
        if self._records is None:
            labels = {t: format_timeframe(t) for t in np.unique(self.tf).tolist()}
            metas = [name_meta for _, name_meta in EVENT_KINDS]
            out = []
            for i, m, tf, k, ts, cts, p, meta in zip(self.ids(), self.market.tolist(), self.tf.tolist(),
                                                     self.kind.tolist(), self.ts.tolist(),
                                                     self.confirmed_ts.tolist(), self.price.tolist(),
                                                     self.meta.tolist()):
                names = metas[k]
                out.append(_event_record(i, self.markets[m], labels[tf], KIND_NAMES[k], ts, cts, p,
                                         dict(zip(names, meta[:len(names)]))))
            self._records = out
        return self._records

    @classmethod
    def from_records(cls, events: list) -> "EventBatch":
        """Columns of StructureEvent records (whose kinds must be known kinds)."""
        if isinstance(events, EventBatch):
            return events
        if not events:
            return cls.empty()
        markets: dict[str, int] = {}
        meta = np.full((len(events), META_WIDTH), np.nan)
        kind = np.empty(len(events), np.int16)
        for r, e in enumerate(events):
            code = KIND_CODE.get(e.kind)
            if code is None:
                raise ValueError(f"unknown structure event kind {e.kind!r}; known: {', '.join(KIND_NAMES)}")
            kind[r] = code
            markets.setdefault(e.market, len(markets))
            for j, name in enumerate(EVENT_KINDS[code][1]):
                meta[r, j] = e.meta.get(name, np.nan)
        return cls(list(markets), np.array([markets[e.market] for e in events], np.int32),
                   np.array([parse_timeframe(e.timeframe) for e in events], np.int64), kind,
                   np.array([e.ts for e in events], np.int64), np.array([e.confirmed_ts for e in events], np.int64),
                   np.array([e.price for e in events], np.float64), meta, np.array([e.id for e in events]))


_FIELDS = frozenset({"id", "market", "timeframe", "kind", "ts", "confirmed_ts", "price", "meta"})


def _event_record(id: str, market: str, timeframe: str, kind: str, ts: int, confirmed_ts: int, price: float,
                  meta: dict) -> StructureEvent:
    """A StructureEvent from values of the right types, without re-validating them: it equals, dumps and
    pickles exactly as ``StructureEvent(...)`` of the same values would."""
    from schemas.records import StructureEvent
    ev = object.__new__(StructureEvent)
    object.__setattr__(ev, "__dict__", {"id": id, "market": market, "timeframe": timeframe, "kind": kind, "ts": ts,
                                        "confirmed_ts": confirmed_ts, "price": price, "meta": meta})
    object.__setattr__(ev, "__pydantic_fields_set__", set(_FIELDS))
    object.__setattr__(ev, "__pydantic_extra__", None)
    object.__setattr__(ev, "__pydantic_private__", None)
    return ev


def format_reason(left: str, op: str, right: str | float, a: float, b: float) -> str:
    """A fired condition as text, e.g. ``rsi_14 (28.1) crossed below 30``."""
    verb = {"crosses_above": "crossed above", "crosses_below": "crossed below"}.get(op, op)
    right_text = f"{right} ({b:.6g})" if isinstance(right, str) else f"{b:g}"
    return f"{left} ({a:.6g}) {verb} {right_text}"


@dataclass(frozen=True)
class RuleText:
    """What a signal's record says about the rule that fired it."""

    name: str
    side: str
    strength: float
    conditions: tuple[tuple[str, str, str | float], ...]  # (left, op, right column or constant)


@dataclass(eq=False)
class SignalBatch:
    """Signals as columns; records (``schemas.records.Signal``) are built on demand, at the edges that need them.

    Behaves as a sequence of Signal records (``len``, iteration, indexing, ``==`` with a list).
    """

    markets: list[str]
    market: np.ndarray  # int32
    tf: np.ndarray  # int64 timeframe ns
    ts: np.ndarray  # int64 close time of the firing bar
    rule: np.ndarray  # int16 index into rules
    price: np.ndarray
    stop: np.ndarray  # NaN: none
    targets: np.ndarray  # (rows, k) nearest first, NaN padded
    operands: np.ndarray  # (rows, 2 * conditions): each condition's left and right value
    risk_score: np.ndarray  # NaN: none
    risk: np.ndarray  # (rows, len(risk_names)), NaN: not known
    risk_limit: np.ndarray  # bool
    id: np.ndarray  # 'S16'
    rules: tuple[RuleText, ...] = ()
    risk_names: tuple[str, ...] = ()
    versions: dict | None = None
    _records: list | None = field(default=None, repr=False, compare=False)

    def __len__(self) -> int:
        return len(self.ts)

    def __bool__(self) -> bool:
        return len(self.ts) > 0

    def __iter__(self):
        return iter(self.to_records())

    def __getitem__(self, i):
        return self.to_records()[i]

    def __add__(self, other) -> list:
        return self.to_records() + list(other)

    def __radd__(self, other) -> list:
        return list(other) + self.to_records()

    def __eq__(self, other) -> bool:
        if isinstance(other, (SignalBatch, list, tuple)):
            return self.to_records() == list(other)
        return NotImplemented

    @classmethod
    def empty(cls, markets: list[str] | None = None) -> "SignalBatch":
        f, i64 = np.empty(0), np.empty(0, np.int64)
        return cls([] if markets is None else markets, np.empty(0, np.int32), i64, i64, np.empty(0, np.int16), f, f,
                   np.empty((0, 1)), np.empty((0, 2)), f, np.empty((0, 0)), np.empty(0, bool), np.empty(0, "S16"))

    @classmethod
    def concat(cls, batches: list["SignalBatch"]) -> "SignalBatch":
        """Batches of one operator (same rules, risk names and versions)."""
        batches = [b for b in batches if len(b)]
        if len(batches) <= 1:
            return batches[0] if batches else cls.empty()
        first = batches[0]
        if all(b.markets is first.markets or b.markets == first.markets for b in batches):
            markets, idx = first.markets, [b.market for b in batches]
        else:
            markets, idx = _concat_markets(batches)
        return cls(markets, np.concatenate(idx).astype(np.int32, copy=False),
                   *(np.concatenate([getattr(b, c) for b in batches])
                     for c in ("tf", "ts", "rule", "price", "stop", "targets", "operands", "risk_score", "risk",
                               "risk_limit", "id")), first.rules, first.risk_names, first.versions)

    def take(self, idx) -> "SignalBatch":
        return SignalBatch(self.markets, self.market[idx], self.tf[idx], self.ts[idx], self.rule[idx],
                           self.price[idx], self.stop[idx], self.targets[idx], self.operands[idx],
                           self.risk_score[idx], self.risk[idx], self.risk_limit[idx], self.id[idx], self.rules,
                           self.risk_names, self.versions)

    def order(self) -> np.ndarray:
        """Permutation into the canonical order of a signal stream: time, market, kind, timeframe, id."""
        m_rank = np.argsort(np.argsort(np.array(self.markets, dtype=object)))[self.market] if len(self.markets) \
            else self.market
        names = np.array([r.name for r in self.rules] or [""], dtype=object)
        k_rank = np.argsort(np.argsort(names))[self.rule]
        tfs, tf_idx = np.unique(self.tf, return_inverse=True)
        labels = np.array([format_timeframe(int(t)) for t in tfs] or [""], dtype=object)
        tf_rank = np.argsort(np.argsort(labels))[tf_idx.reshape(-1)]
        return np.lexsort((self.id, tf_rank, k_rank, m_rank, self.ts))

    def to_records(self) -> list:
        if self._records is None:
            labels = {t: format_timeframe(t) for t in np.unique(self.tf).tolist()}
            ids = self.id.astype(str).tolist()
            out = []
            for r in range(len(self)):
                rule = self.rules[int(self.rule[r])]
                ops = self.operands[r]
                stop = float(self.stop[r])
                targets = [t for t in self.targets[r].tolist() if t == t]
                score = float(self.risk_score[r])
                risk = {name: v for name, v in zip(self.risk_names, self.risk[r].tolist()) if math.isfinite(v)}
                out.append(Signal.model_construct(
                    id=ids[r], market=self.markets[int(self.market[r])], timeframe=labels[int(self.tf[r])],
                    ts=int(self.ts[r]), kind=rule.name, side=Side(rule.side).value, strength=rule.strength,
                    price=float(self.price[r]), stop=None if stop != stop else stop,
                    target=targets[0] if targets else None, targets=targets,
                    reasons=[format_reason(left, op, right, float(ops[2 * i]), float(ops[2 * i + 1]))
                             for i, (left, op, right) in enumerate(rule.conditions)],
                    source_versions=dict(self.versions or {}), risk_score=None if score != score else score, risk=risk,
                    flags=["risk_limit"] if self.risk_limit[r] else []))
            self._records = out
        return self._records
