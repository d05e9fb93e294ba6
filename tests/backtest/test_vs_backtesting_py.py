"""The broker against backtesting.py 0.6.6 (a test-only reference) on an SMA 10/30 crossover over real candles.

Comparable settings (docs/backtesting.md): market orders at the next bar's open (backtesting.py's
``trade_on_close=False``), a relative commission on both legs (``commission=0.001`` against ``fee=0.001``),
reversal on an opposite cross (``exclusive_orders=True`` against ``mode="long-short"``), the same SMA values
and the same first tradable bar (ours waits for the risk operator's first score) so that only the brokers
differ, and enough cash that its whole-unit sizing never skips a trade. backtesting.py leaves the last trade
open (``finalize_trades=False``); ours closes it at the end, so that one is left out. Both ways of reversing
in backtesting.py (exclusive orders, or ``position.close()`` before the new order) give the same trades.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from app.inputs import load_inputs
from engine.backtest.broker import REASONS
from engine.backtest.runner import run_backtest
from engine.backtest.settings import BacktestSettings, Size
from engine.indicators.base import Bars
from engine.indicators.registry import parse_spec
from engine.risk.operator import RiskOperator
from tests.data_paths import SHARED_DATA

FILES = ["ADA_BTC-5m.feather", "XMR_BTC-5m.feather", "LTC_BTC-5m.feather"]


def _reference(bars, fee: float, reversal: str = "exclusive") -> pd.DataFrame:
    """backtesting.py's closed trades; ``reversal``: ``"exclusive"`` (``exclusive_orders=True``) or
    ``"close_then_open"`` (``self.position.close()`` then the new order, in the same ``next``)."""
    from backtesting import Backtest, Strategy

    b = Bars(bars.open_ts, bars.open, bars.high, bars.low, bars.close, bars.volume)
    fast, slow = parse_spec("sma:10").batch(b)[:, 0], parse_spec("sma:30").batch(b)[:, 0]
    ready = (np.arange(len(b)) >= RiskOperator().ready_after).astype(float)
    df = pd.DataFrame({"Open": bars.open, "High": bars.high, "Low": bars.low, "Close": bars.close,
                       "Volume": bars.volume}, index=pd.to_datetime(bars.open_ts, utc=True))

    class Cross(Strategy):
        def init(self):
            self.fast = self.I(lambda: fast, name="sma10")
            self.slow = self.I(lambda: slow, name="sma30")
            self.ready = self.I(lambda: ready, name="ready")

        def next(self):
            if len(self.fast) < 2 or not self.ready[-1]:
                return
            f0, f1, s0, s1 = self.fast[-2], self.fast[-1], self.slow[-2], self.slow[-1]
            if f0 <= s0 and f1 > s1:  # the signal operator's crosses_above
                if reversal == "close_then_open":
                    self.position.close()
                self.buy()
            elif f0 >= s0 and f1 < s1:
                if reversal == "close_then_open":
                    self.position.close()
                self.sell()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bt = Backtest(df, Cross, cash=1e15, commission=fee, trade_on_close=False,
                      exclusive_orders=reversal == "exclusive", finalize_trades=False)
        stats = bt.run()
    return stats._trades


@pytest.mark.parametrize("reversal", ["exclusive", "close_then_open"])
@pytest.mark.parametrize("name", FILES)
def test_sma_crossover_trades_equal_backtesting_py(name, reversal) -> None:
    fee = 0.001
    result = run_backtest(load_inputs([str(SHARED_DATA / "candles" / name)], None, None), "sma_cross",
                          settings=BacktestSettings(mode="long-short", fill="next_open", fee=fee))
    t = result.ledger.trades
    closed = np.flatnonzero(np.array([REASONS[r] for r in t["exit_reason"]]) != "end")
    ref = _reference(result.bars, fee, reversal)
    assert len(closed) > 50
    assert len(ref) == len(closed)
    entry = ref["EntryTime"].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
    exit_ = ref["ExitTime"].astype("datetime64[ns, UTC]").astype("int64").to_numpy()
    assert np.array_equal(t["entry_ts"][closed], entry)
    assert np.array_equal(t["exit_ts"][closed], exit_)
    assert np.array_equal(t["entry_price"][closed], ref["EntryPrice"].to_numpy())
    assert np.array_equal(t["exit_price"][closed], ref["ExitPrice"].to_numpy())
    assert np.array_equal(t["side"][closed], np.sign(ref["Size"].to_numpy()).astype(np.int8))
    assert np.max(np.abs(t["return"][closed] - ref["ReturnPct"].to_numpy())) < 1e-9


def test_vector_engine_makes_the_same_trades_as_the_event_engine() -> None:
    inputs = load_inputs([str(SHARED_DATA / "candles" / f) for f in FILES], None, None)
    settings = BacktestSettings(mode="long-short", size=Size("equity", 0.3))
    event = run_backtest(inputs, "sma_cross", settings=settings, engine="event")
    vector = run_backtest(inputs, "sma_cross", settings=settings, engine="vector")
    assert len(event.ledger.trades["pnl"]) > 100
    for part in ("trades", "fills", "equity"):
        a, b = getattr(event.ledger, part), getattr(vector.ledger, part)
        for k in a:
            assert np.array_equal(a[k], b[k], equal_nan=True), (part, k)
