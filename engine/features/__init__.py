"""Point-in-time model features from the engine's own operator outputs (indicators, structure, risk).

``feature_frame`` computes them over a history in one pass of the live operators; the live pipeline computes
the same rows in its signals stage (``PipelineConfig(features=True)``), so a model sees the same inputs in
training, in a backtest and live.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

from engine.config import STAGES, PipelineConfig
from engine.features.operator import FeatureOperator, column_features
from engine.features.scoring import COLUMNS as SCORE_COLUMNS, ScoreOperator
from engine.features.spec import CONTEXT, FEATURE_NAMES, FEATURES, INDICATORS, context_name
from engine.signals.operator import SignalOperator
from engine.sources.replay import Replay
from schemas.batches import CandleBatch, FeatureBatch, concat_features

if TYPE_CHECKING:
    from engine.pipeline import Chain

__all__ = ["SCORE_COLUMNS", "ScoreOperator", "CONTEXT", "FEATURES", "FEATURE_NAMES", "INDICATORS", "FeatureOperator", "Features", "column_features",
           "context_name", "feature_chain", "feature_frame"]


@dataclass
class Features:
    """Feature rows of closed bars (gap bars left out), in canonical order (close time, market, timeframe)."""

    candles: CandleBatch
    names: list[str]
    values: np.ndarray  # float32 (rows, names); NaN during warm-up

    def __len__(self) -> int:
        return len(self.candles)

    @property
    def close_ts(self) -> np.ndarray:
        return self.candles.close_ts

    @property
    def market(self) -> np.ndarray:
        return self.candles.market

    @property
    def markets(self) -> list[str]:
        return self.candles.markets

    def column(self, name: str) -> np.ndarray:
        return self.values[:, self.names.index(name)]

    def take(self, idx: np.ndarray) -> "Features":
        return Features(self.candles.take(idx), list(self.names), self.values[idx])

    def for_market(self, name: str, timeframe_ns: int | None = None) -> "Features":
        """The rows of one market (and timeframe), in time order."""
        if name not in self.candles.markets:
            raise KeyError(f"no rows of market {name!r}; markets are {', '.join(sorted(set(self.markets)))}")
        mine = np.asarray(self.candles.markets, dtype=object)[self.market] == name
        if timeframe_ns is not None:
            mine &= self.candles.tf == timeframe_ns
        return self.take(np.flatnonzero(mine))

    def data_hash(self) -> str:
        """sha256 of the rows' keys and values: which data a model was trained on."""
        h = hashlib.sha256()
        h.update(",".join(self.names).encode())
        h.update(np.asarray(self.candles.markets, dtype=object)[self.market].astype(str).tobytes())
        h.update(np.ascontiguousarray(self.close_ts).tobytes())
        h.update(np.ascontiguousarray(self.values).tobytes())
        return h.hexdigest()


def feature_chain(config: PipelineConfig) -> "Chain":
    """The live operators up to and including the features (no signal rules)."""
    from engine.pipeline import Chain, build_operators  # engine.pipeline imports this package's operator
    cfg = config.model_copy(update={"features": True})
    ops = [op for stage in STAGES for op in build_operators(stage, cfg)]
    return Chain([op for op in ops if not isinstance(op, (SignalOperator, ScoreOperator))])


def of_batches(batches: list[FeatureBatch]) -> Features:
    """Collect feature batches (as the chain or a live sink emitted them) into canonical-order rows."""
    kept = [b for b in batches if len(b)]
    if not kept:
        names = batches[0].model_names if batches else None
        return Features(CandleBatch.empty(), list(names or FEATURE_NAMES), np.empty((0, len(names or FEATURE_NAMES)),
                                                                                    np.float32))
    fb = concat_features(kept)
    c = fb.candles
    live = np.flatnonzero(~c.gap)
    names_of = np.asarray(c.markets, dtype=object)[c.market[live]]
    order = live[np.lexsort((c.tf[live], names_of, c.close_ts[live]))]
    return Features(c.take(order), list(fb.model_names), fb.model_values[order])


def feature_frame(inputs: list, config: PipelineConfig | None = None,
                  progress: Callable[[int], None] | None = None) -> Features:
    """The feature rows of every closed bar of ``inputs`` (TradeBatch/CandleBatch, e.g. ``load_inputs``), as
    the live pipeline computes them. Candle inputs set the timeframe unless ``config`` names others."""
    if config is None:
        tfs = sorted({int(t) for b in inputs if isinstance(b, CandleBatch) and len(b) for t in np.unique(b.tf)})
        from schemas.timeframes import format_timeframe
        config = PipelineConfig(timeframes=tuple(format_timeframe(t) for t in tfs) or ("1m",))
    chain = feature_chain(config)
    out: list[FeatureBatch] = []
    for batch in Replay(inputs, batch_size=config.batch_size):
        e = chain.update(batch)
        if e.features is not None and len(e.features):
            out.append(e.features)
        if progress:
            progress(len(batch))
    e = chain.flush()
    if e.features is not None and len(e.features):
        out.append(e.features)
    return of_batches(out)
