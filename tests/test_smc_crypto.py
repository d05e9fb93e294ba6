"""Our structure against smartmoneyconcepts (a test-only reference) run here on real crypto bars.

Fair value gaps must agree exactly; swings and breaks agree where the definitions coincide (see
docs/structure.md for why they differ: smc's centred window and look-ahead). Figures are printed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from smartmoneyconcepts import smc

from engine.structure.gaps import FVGOperator
from engine.structure.swings import SwingOperator
from schemas.batches import CandleBatch, FeatureBatch
from tests.indicators.series import DATA, load_bars

FILES = sorted((DATA / "candles").glob("*_BTC-5m.feather"))[:4]


def _ours(bars):
    n = len(bars)
    c = CandleBatch(["M"], np.zeros(n, np.int32), np.full(n, 300_000_000_000), bars.ts, bars.open, bars.high, bars.low,
                    bars.close, bars.volume, np.zeros(n), np.zeros(n), bars.close, np.ones(n, np.int64),
                    np.zeros(n, bool))
    f = FVGOperator(max_open=4096).update(SwingOperator(5, 5).update(FeatureBatch(c, [], np.empty((n, 0)))))
    index = {int(t): i for i, t in enumerate(bars.ts)}
    return f.events, index


def _frame(bars) -> pd.DataFrame:
    return pd.DataFrame({"open": bars.open, "high": bars.high, "low": bars.low, "close": bars.close,
                         "volume": bars.volume})


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_fair_value_gaps_agree_exactly(path) -> None:
    bars = load_bars(path)
    events, index = _ours(bars)
    ours = {(index[e.ts], 1 if "bull" in e.kind else -1, round(e.meta["top"], 12), round(e.meta["bottom"], 12))
            for e in events if e.kind.startswith("fvg") and e.kind.endswith("created")}
    ref = smc.fvg(_frame(bars))
    theirs = {(i, int(d), round(t, 12), round(b, 12))
              for i, (d, t, b) in enumerate(zip(ref.FVG, ref.Top, ref.Bottom)) if not np.isnan(d)}
    print(f"\n{path.stem}: FVG smc {len(theirs)}, ours {len(ours)}, identical {len(ours & theirs)}")
    assert theirs and ours == theirs


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_swings_and_breaks_agree_where_definitions_coincide(path) -> None:
    bars = load_bars(path)
    events, index = _ours(bars)
    df = _frame(bars)
    sw = smc.swing_highs_lows(df, swing_length=5)
    theirs = {(i, int(h)) for i, h in enumerate(sw.HighLow) if not np.isnan(h)}
    ours = {(index[e.ts], 1 if e.kind == "swing_high" else -1) for e in events if e.kind.startswith("swing")}
    found = len(ours & theirs) / len(theirs)
    bc = smc.bos_choch(df, sw).dropna(subset=["Level"])
    t_breaks = {(int(b if not np.isnan(b) else c), int(k)) for b, c, k in zip(bc.BOS, bc.CHOCH, bc.BrokenIndex)}
    o_breaks = {(1 if e.kind.endswith("bull") else -1, index[e.ts]) for e in events
                if e.kind.startswith(("bos", "choch"))}
    matched = len(t_breaks & o_breaks) / len(t_breaks)
    print(f"\n{path.stem}: swings {found:.1%} of smc's found; breaks {matched:.1%} of smc's at the same bar and side")
    # crypto bars priced in BTC repeat highs and lows often; ties are where the two swing rules part
    assert found >= 0.80 and matched >= 0.60
