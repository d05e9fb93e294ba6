"""Engine batches and records as Arrow row batches of the Postgres tables (see ``tables``).

Columnar batches stay columnar: markets and timeframes become dictionary columns, numbers are
passed through without a Python loop. Records with nested fields (signals, events) are few per
bar and go through one dict per row.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable

import numpy as np
import pyarrow as pa

from connectors.storage.tables import table
from schemas.batches import CandleBatch, FeatureBatch, TradeBatch
from schemas.records import Signal, StructureEvent
from schemas.timeframes import format_timeframe

_SIDES = np.array(["sell", "unknown", "buy"], dtype=object)  # indexed by side + 1


def _dict_column(words: list[str], index: np.ndarray) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(index, pa.int32()), pa.array(words, pa.string()))


def _timeframes(tf: np.ndarray) -> pa.DictionaryArray:
    uniq, inverse = np.unique(tf, return_inverse=True)
    return _dict_column([format_timeframe(int(t)) for t in uniq], inverse.reshape(-1))


def _json(value: dict) -> str:
    # jsonb has no NaN or infinity: such values are stored as null
    return json.dumps({k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in value.items()},
                      sort_keys=True, separators=(",", ":"))


def candles(batch: CandleBatch) -> pa.Table:
    """Closed candles as ``candles`` rows."""
    return pa.table({
        "market": _dict_column(batch.markets, batch.market), "timeframe": _timeframes(batch.tf),
        "open_ts": batch.open_ts, "close_ts": batch.open_ts + batch.tf, "open": batch.open, "high": batch.high,
        "low": batch.low, "close": batch.close, "volume": batch.volume, "buy_volume": batch.buy_volume,
        "sell_volume": batch.sell_volume, "vwap": batch.vwap, "trade_count": batch.trade_count,
        "gap": batch.gap, "degraded": batch.degraded_or_false()})


def trades(batch: TradeBatch) -> pa.Table:
    """Trades as ``trades`` rows."""
    return pa.table({"market": _dict_column(batch.markets, batch.market), "ts": batch.ts,
                     "trade_id": batch.trade_id, "price": batch.price, "size": batch.size,
                     "side": pa.array(_SIDES[batch.side.astype(np.int64) + 1], pa.string())})


def indicator_snapshots(features: FeatureBatch) -> pa.Table:
    """Each bar's indicator values as one jsonb object (warm-up NaNs stored as null)."""
    c = features.candles
    names = features.names
    values = [_json(dict(zip(names, row))) for row in features.values.tolist()]
    return pa.table({"market": _dict_column(c.markets, c.market), "timeframe": _timeframes(c.tf),
                     "ts": c.open_ts, "close": c.close, "values": pa.array(values, pa.string())})


def indicator_records(features: FeatureBatch, last_only: bool = False) -> list[dict]:
    """Each bar's indicator values as a dict (``market, timeframe, ts, close, values``); with
    ``last_only``, only the last bar of each market and timeframe in the batch."""
    c = features.candles
    idx = np.arange(len(c))
    if last_only and len(c):
        key = c.market.astype(np.int64) * (1 << 40) + c.tf // 10**9
        _, first_from_end = np.unique(key[::-1], return_index=True)
        idx = np.sort(len(c) - 1 - first_from_end)
    names = features.names
    out = []
    for i in idx.tolist():
        vals = {n: (v if math.isfinite(v) else None) for n, v in zip(names, features.values[i].tolist())}
        out.append({"market": c.markets[int(c.market[i])], "timeframe": format_timeframe(int(c.tf[i])),
                    "ts": int(c.open_ts[i]), "close": float(c.close[i]), "values": vals})
    return out


def risk_scores(features: FeatureBatch) -> pa.Table | None:
    """The risk operator's score and components per bar, when the batch carries them."""
    if "risk_score" not in features.names:
        return None
    c = features.candles
    score = features.column("risk_score")
    keep = np.flatnonzero(np.isfinite(score))
    parts = [n for n in features.names if n.startswith("risk_") and n != "risk_score"]
    comp = np.column_stack([features.column(n)[keep] for n in parts]) if parts else np.zeros((len(keep), 0))
    return pa.table({"market": _dict_column(c.markets, c.market[keep]), "timeframe": _timeframes(c.tf[keep]),
                     "ts": c.open_ts[keep], "score": score[keep],
                     "components": pa.array([_json(dict(zip(parts, row))) for row in comp.tolist()], pa.string())})


def structure_events(events: Iterable[StructureEvent]) -> pa.Table:
    """Structure, order-block and gap events as ``structure_events`` rows."""
    events = list(events)
    return pa.table({
        "id": [e.id for e in events], "market": [e.market for e in events],
        "timeframe": [e.timeframe for e in events], "kind": [e.kind for e in events],
        "ts": pa.array([e.ts for e in events], pa.int64()),
        "confirmed_ts": pa.array([e.confirmed_ts for e in events], pa.int64()),
        "price": pa.array([e.price for e in events], pa.float64()),
        "meta": [_json(e.meta) for e in events]}, schema=_schema("structure_events"))


def signals(records: Iterable[Signal]) -> pa.Table:
    """Signals as ``signals`` rows, reasons and versions included."""
    rows = [s.model_dump() for s in records]
    for r in rows:
        r["source_versions"] = json.dumps(r["source_versions"], sort_keys=True)
        r["risk"] = _json(r["risk"])
        r["side"] = str(r["side"])
    return pa.Table.from_pylist(rows, schema=_schema("signals")) if rows else _schema("signals").empty_table()


def _schema(name: str) -> pa.Schema:
    return table(name).arrow_schema
