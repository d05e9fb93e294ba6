"""Load trade and candle files (Parquet, Feather, CSV, JSON) into batches, with their rejects.

Columns are found by common names (see ``engine.sources.columns``) or an explicit ``columns``
mapping such as ``{"timestamp": "T", "size": "q"}``. Rows keep file order: out-of-order rows are
kept and counted, because deciding whether they are late is the aggregator's job.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.sources.columns import (
    CANDLE_FIELDS,
    CANDLE_REQUIRED,
    TRADE_FIELDS,
    TRADE_REQUIRED,
    looks_like,
    market_from_path,
    resolve,
)
from engine.sources.convert import buyer_maker_side, to_float, to_int, to_side
from engine.sources.readers import read_table
from engine.sources.timestamps import to_ns
from engine.validation import NO_TS, Rejects, clean_candles, clean_trades
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import InputError
from schemas.timeframes import NS_PER_SECOND, parse_timeframe

Columns = dict[str, str] | None


def load_trades(path: str | Path, market: str | None = None, columns: Columns = None) -> tuple[TradeBatch, Rejects]:
    """Trades of a file, cleaned, in file order; the rows rejected or flagged on the way."""
    path = Path(path)
    table, rejects, rows = read_table(path)
    return trades_from_table(table, market or market_from_path(path), columns, rejects, rows, str(path))


def load_candles(path: str | Path, market: str | None = None, columns: Columns = None,
                 timeframe: str | None = None) -> tuple[CandleBatch, Rejects]:
    """Candles of a file, cleaned, in file order; timeframe from the argument or the row spacing."""
    path = Path(path)
    table, rejects, rows = read_table(path)
    return candles_from_table(table, market or market_from_path(path), columns, timeframe, rejects, rows,
                              str(path))


def load_any(path: str | Path, market: str | None = None, columns: Columns = None,
             timeframe: str | None = None) -> tuple[TradeBatch | CandleBatch, Rejects]:
    """Trades or candles, whichever the file's columns hold (open/high/low/close means candles)."""
    path = Path(path)
    table, rejects, rows = read_table(path)
    kind = looks_like(table.column_names, columns)
    name = market or market_from_path(path)
    if kind == "candles":
        return candles_from_table(table, name, columns, timeframe, rejects, rows, str(path))
    if kind == "trades":
        return trades_from_table(table, name, columns, rejects, rows, str(path))
    raise InputError(f"{path}: holds neither trades nor candles; found columns {table.column_names}. Trades "
                     "need timestamp, price and amount/size columns; candles need timestamp, open, high, low "
                     "and close. Name them with --columns price=<column>,... if they go by other names.")


def trades_from_table(table: pa.Table, market: str, columns: Columns = None, rejects: Rejects | None = None,
                      rows: np.ndarray | None = None, source: str = "table") -> tuple[TradeBatch, Rejects]:
    """A TradeBatch from an Arrow table whose columns are found as ``load_trades`` finds them."""
    rejects = Rejects() if rejects is None else rejects
    rows = np.arange(table.num_rows) if rows is None else rows
    m = resolve(table.column_names, TRADE_FIELDS, TRADE_REQUIRED, columns, "trades", source)
    n = table.num_rows
    if "side" in m:
        side, unknown = to_side(table[m["side"]])
    elif "buyer_maker" in m:
        side, unknown = buyer_maker_side(table[m["buyer_maker"]])
    else:
        side, unknown = np.zeros(n, np.int8), np.zeros(n, bool)
    rejects.add_rows("side_unknown", rows[unknown])
    names, idx = _markets(table, m, market)
    trade_id = to_int(table[m["trade_id"]]) if "trade_id" in m else np.full(n, -1, np.int64)
    batch = TradeBatch(names, idx, to_ns(table[m["timestamp"]]), to_float(table[m["price"]]),
                       to_float(table[m["size"]]), side, trade_id)
    batch, rows = _drop_missing_market(batch, rows, rejects)
    return clean_trades(batch, rejects, rows)


def candles_from_table(table: pa.Table, market: str, columns: Columns = None, timeframe: str | None = None,
                       rejects: Rejects | None = None, rows: np.ndarray | None = None,
                       source: str = "table") -> tuple[CandleBatch, Rejects]:
    """A CandleBatch from an Arrow table; unknown buy/sell volume and vwap are NaN, trade count -1."""
    rejects = Rejects() if rejects is None else rejects
    rows = np.arange(table.num_rows) if rows is None else rows
    m = resolve(table.column_names, CANDLE_FIELDS, CANDLE_REQUIRED, columns, "candles", source)
    n = table.num_rows

    def col(field: str) -> np.ndarray:
        return to_float(table[m[field]]) if field in m else np.full(n, np.nan)

    volume, buy = col("volume"), col("buy_volume")
    sell = col("sell_volume") if "sell_volume" in m else volume - buy
    with np.errstate(invalid="ignore", divide="ignore"):
        vwap = col("vwap") if "vwap" in m else np.where(volume > 0, col("quote_volume") / volume, np.nan)
    count = to_int(table[m["trade_count"]]) if "trade_count" in m else np.full(n, -1, np.int64)
    names, idx = _markets(table, m, market)
    ts = to_ns(table[m["timestamp"]])
    tf = _timeframes(idx, ts, names, timeframe, source)
    batch = CandleBatch(names, idx, tf, ts, col("open"), col("high"), col("low"), col("close"), volume, buy,
                        sell, vwap, count, np.zeros(n, bool))
    batch, rows = _drop_missing_market(batch, rows, rejects)
    return clean_candles(batch, rejects, rows)


def _markets(table: pa.Table, m: dict[str, str], default: str) -> tuple[list[str], np.ndarray]:
    """Market dictionary and per-row index; index -1 where a symbol column has no value."""
    if "market" not in m:
        return [default], np.zeros(table.num_rows, np.int32)
    col = table[m["market"]]
    col = pc.utf8_trim_whitespace(col.cast(pa.string()))
    col = pc.if_else(pc.equal(col, ""), pa.scalar(None, pa.string()), col)
    enc = pc.dictionary_encode(col).combine_chunks()
    idx = enc.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32)
    return enc.dictionary.to_pylist(), idx


def _drop_missing_market(batch, rows: np.ndarray, rejects: Rejects):
    missing = batch.market < 0
    if not missing.any():
        return batch, rows
    rejects.add_rows("market_missing", rows[missing])
    return batch.take(~missing), rows[~missing]


def _timeframes(idx: np.ndarray, ts: np.ndarray, names: list[str], timeframe: str | None,
                source: str) -> np.ndarray:
    """Timeframe per row: the argument, or each market's median spacing rounded to whole seconds."""
    if timeframe is not None:
        return np.full(len(ts), parse_timeframe(timeframe), np.int64)
    out = np.zeros(len(ts), np.int64)
    for k, name in enumerate(names):
        mine = idx == k
        t = np.unique(ts[mine & (ts != NO_TS)])
        if len(t) < 2:
            raise InputError(f"{source}: cannot infer the timeframe of {name} from {len(t)} valid candle(s); "
                             "pass timeframe='1m' (or 5m, 1h, ...)")
        step = int(round(float(np.median(np.diff(t))) / NS_PER_SECOND)) * NS_PER_SECOND
        if step <= 0:
            raise InputError(f"{source}: candles of {name} are less than a second apart; pass timeframe=")
        out[mine] = step
    return out
