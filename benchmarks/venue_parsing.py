"""Venue frames parsed per second on one core, per venue, on the recorded real frames.

Binance is also measured on a longer session: the real trades of ``btcusdt-trades.parquet`` in
Binance's combined-stream ``aggTrade`` wire format. Reference in the same run: the naive way
(``json.loads`` + dict access into a list of tuples). Target: >= 200,000 Binance trade frames/s.
JSON parser: orjson (a C/Rust decoder, 2-4x the standard library on these small frames).
"""

from __future__ import annotations

import importlib
import json
import time

from engine.venues.capture import RECEIVED, read_capture
from engine.venues.frames import FrameOutput, parse_frame
from tests.data_paths import SHARED_DATA

DATA = SHARED_DATA  # tests/data: the recorded sessions and trades bundled with the tests
TARGET = 200_000
# venue module, class, capture: the recorded real sessions each parser is timed on
VENUES = [("binance", "BinanceSpot", "BINANCE.ws.1.0"), ("binance", "BinanceFutures", "BINANCE_FUTURES.ws.1.0"),
          ("coinbase", "Coinbase", "COINBASE.ws.28.0"), ("kraken", "Kraken", "KRAKEN.ws.50.0"),
          ("bybit", "Bybit", "BYBIT.ws.26.0"), ("okx", "Okx", "OKX.ws.1.0")]


def binance_trade_frames() -> list[str]:
    """Real BTCUSDT trades (Binance, 2021-01-08) written as Binance combined-stream aggTrade frames."""
    from engine.sources.files import load_any
    from engine.venues.wire import binance_agg_trade_frames
    batch, _ = load_any(str(DATA / "trades" / "btcusdt-trades.parquet"), market="BINANCE:BTCUSDT")
    return binance_agg_trade_frames(batch, "BTCUSDT")


def naive(frames: list) -> int:
    rows = []
    for f in frames:
        d = json.loads(f)["data"]
        if d["e"] == "aggTrade":
            rows.append((d["s"], d["T"] * 1_000_000, float(d["p"]), float(d["q"]), -1 if d["m"] else 1, d["a"]))
    return len(rows)


def ours(venue, frames: list) -> int:
    parser, out = venue.parser(), FrameOutput()
    n = 0
    for i, f in enumerate(frames):
        parse_frame(parser, f, out)
        if i % 4096 == 4095:
            n += len(out.drain()[0])
    return n + len(out.drain()[0])


def rate(fn, frames: list, repeat: int = 3) -> tuple[float, int]:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        n = fn(frames)
        best = min(best, time.perf_counter() - t0)
    return len(frames) / best, n


def main() -> None:
    from engine.venues.binance import BinanceSpot
    frames = binance_trade_frames() * 100
    ours_rate, n1 = rate(lambda f: ours(BinanceSpot(), f), frames)
    naive_rate, n2 = rate(naive, frames)
    assert n1 == n2 == len(frames), (n1, n2)
    print(f"Binance aggTrade, {len(frames):,} frames of real BTCUSDT trades, one core:")
    print(f"  ours (orjson, columnar output)   {ours_rate:12,.0f} frames/s  "
          f"{'meets' if ours_rate >= TARGET else 'BELOW'} target {TARGET:,}")
    print(f"  naive json.loads + dict access   {naive_rate:12,.0f} frames/s  ratio ours/naive {ours_rate / naive_rate:.2f}x")
    print("recorded real sessions (all frame kinds: trades, books, tickers, control), one core:")
    for module, cls, capture in VENUES:
        try:
            venue = getattr(importlib.import_module(f"engine.venues.{module}"), cls)()
        except (ImportError, AttributeError) as e:
            print(f"  {cls:16s} not available: {e}")
            continue
        raw = [c.payload for c in read_capture(DATA / "wire" / capture) if c.kind == RECEIVED]
        reps = max(1, 50_000 // len(raw))
        r, _ = rate(lambda f: ours(venue, f), raw * reps)
        print(f"  {cls:16s} {len(raw):6,} frames x{reps:<4d} {r:12,.0f} frames/s")


if __name__ == "__main__":
    main()
