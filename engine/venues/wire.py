"""Writing trades in a venue's wire format: longer replay sessions for fake venues and benchmarks."""

from __future__ import annotations

import json

from schemas.batches import SIDE_SELL, TradeBatch


def binance_agg_trade_frames(trades: TradeBatch, symbol: str) -> list[str]:
    """Each trade as a Binance combined-stream ``aggTrade`` frame (``a`` = the trade id)."""
    stream = f"{symbol.lower()}@aggTrade"
    frames = []
    for ts, p, q, side, tid in zip(trades.ts.tolist(), trades.price.tolist(), trades.size.tolist(),
                                   trades.side.tolist(), trades.trade_id.tolist()):
        ms = ts // 1_000_000
        d = {"e": "aggTrade", "E": ms + 3, "s": symbol.upper(), "a": tid, "p": repr(p), "q": repr(q), "f": tid,
             "l": tid, "T": ms, "m": side == SIDE_SELL, "M": True}
        frames.append(json.dumps({"stream": stream, "data": d}, separators=(",", ":")))
    return frames
