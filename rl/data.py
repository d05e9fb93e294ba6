"""One market's bars and point-in-time feature rows, loaded once and shared by every environment copy."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.config import PipelineConfig
from engine.features import Features, feature_frame
from engine.sources.files import load_any
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import ConfigError, InputError


@dataclass
class MarketData:
    """Rows of one market in time order: the bars the broker trades and the feature row known at each close."""

    market: str
    timeframe_ns: int
    names: list[str]  # feature names
    features: np.ndarray  # float32 (rows, names), NaN and infinities replaced by 0
    open_ts: np.ndarray  # int64 ns
    close_ts: np.ndarray
    open: np.ndarray  # float64
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    warmup: int  # first row whose features are past their warm-up
    data_hash: str
    source: str = ""
    candles: CandleBatch | None = None  # the same rows as engine candles (for rule-strategy backtests)

    def __len__(self) -> int:
        return len(self.close_ts)

    def split(self, fraction: float) -> int:
        """The first row of the final ``fraction`` of the rows after warm-up (the held-out window)."""
        if not 0 < fraction < 1:
            raise ConfigError(f"--eval-fraction must be between 0 and 1, got {fraction}")
        usable = len(self) - self.warmup
        return self.warmup + int(round(usable * (1 - fraction)))


def load_batches(paths: list[str | Path], market: str | None = None) -> list:
    """Candle or trade files (any format the ``indicators`` command reads) as engine batches."""
    out = []
    for p in paths:
        if not Path(p).is_file():
            raise InputError(f"{p}: no such file")
        batch, _ = load_any(p, market=market)
        out.append(batch)
    return out


def market_data(inputs: list, market: str | None = None, config: PipelineConfig | None = None,
                source: str = "") -> MarketData:
    """Feature rows (``engine.features.feature_frame``) of one market of ``inputs`` (CandleBatch/TradeBatch),
    the first market by name unless ``market`` is given."""
    feats: Features = feature_frame(inputs, config)
    if not len(feats):
        raise InputError(f"{source or 'the input'}: no closed bars to build features from")
    names = sorted(set(np.asarray(feats.markets, dtype=object)[feats.market]))
    name = market or names[0]
    if name not in names:
        raise ConfigError(f"market {name!r} is not in {source or 'the input'}; it holds {', '.join(names)}")
    tfs = np.unique(feats.candles.tf[np.asarray(feats.markets, dtype=object)[feats.market] == name])
    f = feats.for_market(name, int(tfs.min()))  # the base timeframe; higher ones are context columns
    c = f.candles
    raw = f.values
    # warm-up: the last first-finite row among the columns that become finite in the first quarter (columns
    # finite later, or never, are sparse by nature: an open order block, a buy share the file lacks)
    finite = np.isfinite(raw)
    seen = finite.any(axis=0)
    firsts = np.where(seen, finite.argmax(axis=0), len(raw))
    early = firsts[firsts < max(1, len(raw) // 4)]
    warm = int(early.max()) if len(early) else 0
    values = np.nan_to_num(raw, nan=0.0, posinf=0.0, neginf=0.0).astype(np.float32)
    return MarketData(name, int(tfs.min()), list(f.names), np.ascontiguousarray(values),
                      c.open_ts.astype(np.int64), c.close_ts.astype(np.int64), c.open.astype(np.float64),
                      c.high.astype(np.float64), c.low.astype(np.float64), c.close.astype(np.float64),
                      c.volume.astype(np.float64), warm, f.data_hash(), source, c)


_CACHE: dict[tuple, MarketData] = {}


def load_market(candles, market: str | None = None, config: PipelineConfig | None = None) -> MarketData:
    """MarketData of a path (or list of paths), a batch, or MarketData itself; files are read once per
    process (keyed by path, size and modification time), so vectorised copies share one feature matrix."""
    if isinstance(candles, MarketData):
        return candles
    if isinstance(candles, (CandleBatch, TradeBatch)):
        return market_data([candles], market, config)
    paths = [candles] if isinstance(candles, (str, Path)) else list(candles)
    if not paths:
        raise ConfigError("candles: give a candles file (or a list of them)")
    key = []
    for p in paths:
        p = Path(p)
        if not p.is_file():
            raise InputError(f"{p}: no such file")
        st = os.stat(p)
        key.append((str(p.resolve()), st.st_size, st.st_mtime_ns))
    k = (tuple(key), market, None if config is None else config.model_dump_json())
    hit = _CACHE.get(k)
    if hit is None:
        hit = market_data(load_batches(paths, market), market, config, source=", ".join(map(str, paths)))
        _CACHE[k] = hit
    return hit
