"""Synthetic trades for load tests only: seeded, vectorised, with fat tails and bursts.

Not market data. Log returns are Student-t; arrivals are a Poisson process whose rate is redrawn
every few dozen trades from a log-normal (calm and busy spells); markets get Zipf-like shares of
the flow; sizes are log-normal around a fixed notional; buys lean towards up-ticks.
"""

from __future__ import annotations

import math

import numpy as np

from engine import libm
from schemas.batches import SIDE_BUY, SIDE_SELL, TradeBatch
from schemas.errors import ConfigError

DEFAULT_START_NS = 1_704_067_200_000_000_000  # 2024-01-01T00:00:00Z
_BLOCK = 64  # trades per rate regime
_CHUNK = 1 << 17
_RATE_SIGMA = 1.0  # log-normal spread of the regime rate: bursts of several times the mean
_TAIL_DF = 3.0  # Student-t degrees of freedom of log returns
_RETURN_SCALE = 2e-4  # typical per-trade log return


def market_names(n_markets: int) -> list[str]:
    """``SYN:M000``, ``SYN:M001``, ... (wider numbers past 1000 markets)."""
    width = max(3, len(str(n_markets - 1)))
    return [f"SYN:M{i:0{width}d}" for i in range(n_markets)]


def synthetic_trades(n_markets: int, n_trades: int, seed: int, start_ns: int = DEFAULT_START_NS,
                     mean_rate_per_s: float = 2000.0) -> TradeBatch:
    """``n_trades`` trades over ``n_markets`` markets in time order; the same seed gives the same batch.

    ``mean_rate_per_s`` is the long-run rate of all markets together.
    """
    if n_markets < 1 or n_trades < 0 or not mean_rate_per_s > 0:
        raise ConfigError("synthetic_trades: need n_markets >= 1, n_trades >= 0 and mean_rate_per_s > 0")
    rng = np.random.default_rng(seed)
    n = int(n_trades)
    names = market_names(n_markets)
    out = TradeBatch(names, np.empty(n, np.int32), np.empty(n, np.int64), np.empty(n), np.empty(n),
                     np.empty(n, np.int8), np.empty(n, np.int64))
    share = np.cumsum(1.0 / libm.power(np.arange(1, n_markets + 1), 0.8))
    cdf = share / share[-1]
    p0 = libm.power(10.0, rng.uniform(-4, 4, n_markets))
    state = {"t": 0.0, "logp": libm.log(p0), "count": np.zeros(n_markets, np.int64),
             "gap_scale": math.exp(-_RATE_SIGMA ** 2 / 2) * 1e9 / mean_rate_per_s, "notional": 100.0 / p0}
    # Chunks small enough for the allocator to reuse their memory: much faster than 10M-row temporaries.
    for lo in range(0, n, _CHUNK):
        _fill(out, slice(lo, min(n, lo + _CHUNK)), rng, cdf, state)
    out.ts += start_ns
    return out


def _fill(out: TradeBatch, rows: slice, rng: np.random.Generator, cdf: np.ndarray, state: dict) -> None:
    """Generate the trades of ``rows``, continuing the clock, prices and trade ids in ``state``."""
    k = rows.stop - rows.start
    blocks = -(-k // _BLOCK)
    # Arrivals: exponential gaps scaled by a per-block rate; E[1/w] of log-normal w is exp(s^2/2).
    gaps = rng.standard_exponential(blocks * _BLOCK).reshape(blocks, _BLOCK)
    gaps *= (state["gap_scale"] / rng.lognormal(0.0, _RATE_SIGMA, blocks))[:, None]
    t = np.cumsum(gaps.ravel()[:k])
    t += state["t"]
    state["t"] = float(t[-1])
    out.ts[rows] = t
    # Market of each trade: Zipf-like shares, the first markets busiest.
    market = np.minimum(np.searchsorted(cdf, rng.random(k), side="right"), len(cdf) - 1).astype(np.int32)
    out.market[rows] = market
    returns = rng.standard_t(_TAIL_DF, k)
    returns *= _RETURN_SCALE / np.sqrt(_TAIL_DF / (_TAIL_DF - 2))
    # Per-market random walks: group rows by market (radix sort), cumsum, restart at each market.
    order = np.argsort(market.astype(np.int16) if len(cdf) < 2 ** 15 else market, kind="stable")
    m_sorted = market[order]
    run_start = np.searchsorted(m_sorted, np.arange(len(cdf)))
    r_sorted = returns[order]
    path = np.cumsum(r_sorted)
    first = np.minimum(run_start, k - 1)
    path += (state["logp"] - (path[first] - r_sorted[first]))[m_sorted]
    present = np.flatnonzero(np.bincount(market, minlength=len(cdf)))
    ends = np.append(run_start[1:], k) - 1
    state["logp"][present] = path[ends[present]]
    libm.exp(path, out=path)
    out.price[rows][order] = path
    ids = np.arange(k) - run_start[m_sorted] + state["count"][m_sorted]
    out.trade_id[rows][order] = ids
    state["count"] += np.bincount(market, minlength=len(cdf))
    size = rng.lognormal(0.0, 1.5, k)
    size *= state["notional"][market]
    out.size[rows] = size
    out.side[rows] = np.where(rng.random(k) < 0.5 + 0.2 * np.sign(returns), SIDE_BUY, SIDE_SELL)
