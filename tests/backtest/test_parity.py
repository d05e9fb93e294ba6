"""Backtest/live parity: the live pipeline's signals (a `replay` on Ray, read back from its output file) fed to
the broker give exactly the runner's signals and trades, on real candles and real trades."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.cli import main
from app.inputs import load_inputs
from engine.backtest.broker import simulate
from engine.backtest.runner import orders_for, run_backtest
from engine.backtest.settings import BacktestSettings, Size
from schemas.records import Signal
from tests.data_paths import SHARED_DATA

CANDLES = [SHARED_DATA / "candles" / "ADA_BTC-5m.feather", SHARED_DATA / "candles" / "LTC_BTC-5m.feather"]
TRADES = [SHARED_DATA / "trades" / "XRP_ETH-trades.parquet"]


def _signals(path: Path) -> list[Signal]:
    return [Signal.model_validate(json.loads(line)) for line in path.read_text().splitlines() if line]


def _same_ledger(a, b) -> None:
    for part in ("trades", "fills", "equity"):
        x, y = getattr(a, part), getattr(b, part)
        assert x.keys() == y.keys()
        for k in x:
            assert np.array_equal(x[k], y[k], equal_nan=True), (part, k)


@pytest.mark.parametrize("files,timeframes,strategy,mode", [
    (CANDLES, "5m", "default", "long-only"),
    (CANDLES, "5m", "smc_reversal", "long-short"),
    (TRADES, "1m", "default", "long-short"),
])
def test_live_signals_through_the_broker_equal_the_backtest(tmp_path, files, timeframes, strategy, mode) -> None:
    out = tmp_path / "signals.jsonl"
    assert main(["replay", "--input", *map(str, files), "--timeframes", timeframes, "--strategy", strategy,
                 "--shards", "2", "--out", str(out)]) == 0
    live = _signals(out)
    settings = BacktestSettings(mode=mode, size=Size("equity", 0.5))
    result = run_backtest(load_inputs([str(f) for f in files], None, None), strategy, settings=settings,
                          timeframe=timeframes)
    ours = list(result.signals)
    assert len(ours) > 10 and len(result.ledger.trades["pnl"]) > 5
    assert [s.model_dump() for s in ours] == [s.model_dump() for s in live]
    ledger = simulate(result.bars, orders_for(result.bars, live), settings)
    _same_ledger(ledger, result.ledger)
