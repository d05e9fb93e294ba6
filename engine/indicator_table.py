"""Candles plus indicator columns for one file: what ``crypto-intel indicators`` writes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from engine.candles import CandleAggregator
from engine.indicators.base import Bars
from engine.indicators.registry import parse_specs
from engine.sources.files import load_any
from schemas.batches import CandleBatch
from schemas.errors import InputError
from schemas.timeframes import parse_timeframe


def candles_for(path: str, timeframe: str, market: str | None = None,
                columns: dict[str, str] | None = None) -> CandleBatch:
    """Candles of ``timeframe`` from a trades file (aggregated) or a candles file (must match)."""
    tf_ns = parse_timeframe(timeframe)
    batch, _rejects = load_any(path, market=market, columns=columns)
    if isinstance(batch, CandleBatch):
        tfs = set(int(t) for t in np.unique(batch.tf))
        if tfs != {tf_ns}:
            from schemas.timeframes import format_timeframe
            have = ", ".join(format_timeframe(t) for t in sorted(tfs))
            raise InputError(f"{path} holds {have} candles; pass --timeframe {have} "
                             f"(resampling candle files is not supported)")
        return batch
    agg = CandleAggregator([timeframe])
    return CandleBatch.concat([agg.update(batch), agg.flush()])


def indicator_table(path: str, timeframe: str, specs: str, market: str | None = None,
                    columns: dict[str, str] | None = None) -> pa.Table:
    """Arrow table: candle columns then one column per indicator output, per market in time order."""
    indicators = parse_specs(specs)  # validate specs before reading data
    candles = candles_for(path, timeframe, market, columns)
    order = np.lexsort((candles.open_ts, candles.market))
    candles = candles.take(order)
    names = [c for ind in indicators for c in ind.column_names()]
    values = np.full((len(candles), len(names)), np.nan)
    for code in np.unique(candles.market):
        rows = np.flatnonzero((candles.market == code) & ~candles.gap)
        bars = Bars(candles.open_ts[rows], candles.open[rows], candles.high[rows], candles.low[rows],
                    candles.close[rows], candles.volume[rows])
        col = 0
        for ind in indicators:
            out = ind.batch(bars)
            values[rows, col:col + out.shape[1]] = out
            col += out.shape[1]
    table = candles.to_arrow()
    for j, name in enumerate(names):
        table = table.append_column(name, pa.array(values[:, j], pa.float64()))
    return table
