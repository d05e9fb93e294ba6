"""Higher-timeframe values for lower-timeframe rules: ``trend@4h`` on a 15m bar is the ``trend`` of the
same market's latest 4h bar that closed strictly before the 15m bar closed.

Strictly before, so the answer never depends on which of two bars closing at the same instant
arrived first: the output is the same whatever the batching.
"""

from __future__ import annotations

import numpy as np

from schemas.batches import FeatureBatch
from schemas.errors import ConfigError
from schemas.timeframes import parse_timeframe


def split_ref(name: str) -> tuple[str, int] | None:
    """``"trend@4h"`` -> ("trend", 4h in ns); None for a plain column."""
    if "@" not in name:
        return None
    column, _, tf = name.partition("@")
    if not column:
        raise ConfigError(f"bad column {name!r}: write <column>@<timeframe>, e.g. trend@4h")
    return column, parse_timeframe(tf)


class HigherTimeframeView:
    """Remembers, per (market, timeframe), the last two bars' values of the columns rules read."""

    def __init__(self, refs: list[str]) -> None:
        self.refs = {name: split_ref(name) for name in refs}
        self.by_tf: dict[int, list[str]] = {}
        for column, tf in self.refs.values():
            cols = self.by_tf.setdefault(tf, [])
            if column not in cols:
                cols.append(column)
        self.history: dict[tuple[str, int], list[tuple[int, dict[str, float]]]] = {}

    def lookup(self, batch: FeatureBatch) -> dict[str, np.ndarray]:
        """Values of every ref for every row of the batch (NaN when no such bar closed before)."""
        c = batch.candles
        out = {name: np.full(len(c), np.nan) for name in self.refs}
        if not self.refs or not len(c):
            return out
        for tf, cols in self.by_tf.items():
            missing = [col for col in cols if col not in batch.names and col not in ("open", "high", "low", "close")]
            if missing:
                raise ConfigError(f"rules read {missing} of the {tf // 60_000_000_000}m bars, which the pipeline "
                                  "does not compute")
        close_ts = c.close_ts
        for i in range(len(c)):
            market, t = c.markets[int(c.market[i])], int(close_ts[i])
            for name, (column, tf) in self.refs.items():
                for ts, values in reversed(self.history.get((market, tf), ())):
                    if ts < t:
                        out[name][i] = values[column]
                        break
            tf_i = int(c.tf[i])
            if tf_i in self.by_tf and not c.gap[i]:
                values = {col: float(batch.column(col)[i]) if col in batch.names else float(getattr(c, col)[i])
                          for col in self.by_tf[tf_i]}
                hist = self.history.setdefault((market, tf_i), [])
                hist.append((int(close_ts[i]), values))
                del hist[:-2]  # two suffice: at most one bar of a timeframe closes at any instant
        return out

    def state(self) -> dict:
        return {k: list(v) for k, v in self.history.items()}

    def load(self, state: dict) -> None:
        self.history = {k: list(v) for k, v in state.items()}
