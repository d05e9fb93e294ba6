"""`backtest check`: a strategy that reads the next bar is caught and the leaking column named; every
built-in strategy passes; recursive indicators are reported with their warm-up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.inputs import load_inputs
from engine.backtest.check import lookahead, warmup
from engine.indicators.base import Bars
from engine.signals.rules import BUILTIN_DOCS
from tests.data_paths import REPO, SHARED_DATA
from tests.indicators.series import load_bars

CANDLES = SHARED_DATA / "candles" / "ETC_BTC-5m.feather"
PEEK = Path(__file__).with_name("peek_strategy.py")


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "backtest", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


def test_a_strategy_reading_the_next_bar_is_caught_with_its_column(tmp_path) -> None:
    out = tmp_path / "check.json"
    proc = _cli("check", "--input", str(CANDLES), "--strategy", str(PEEK), "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    assert "LOOK-AHEAD" in proc.stdout and "next_close" in proc.stdout
    report = json.loads(out.read_text())
    assert report["ok"] is False and report["leaked_columns"] == ["next_close"]
    assert {leak["test"] for leak in report["leaks"]} == {"truncated", "future perturbed"}
    assert any(leak["kind"] == "signal" for leak in report["leaks"])


@pytest.mark.parametrize("name", sorted(BUILTIN_DOCS))
def test_builtin_strategies_have_no_lookahead(name) -> None:
    inputs = load_inputs([str(CANDLES)], None, None)
    report = lookahead(inputs, name, cuts=3)
    assert report["ok"], report["leaks"][:3]
    assert len(report["cuts"]) == 3 and report["columns_checked"]


def test_builtin_check_passes_on_trades_too() -> None:
    inputs = load_inputs([str(SHARED_DATA / "trades" / "XRP_ETH-trades.parquet")], None, None)
    assert lookahead(inputs, "default", timeframe="1m", cuts=2)["ok"]


def test_cli_check_of_a_builtin_exits_0_and_reports_recursive_warmups() -> None:
    proc = _cli("check", "--input", str(CANDLES), "--strategy", "default")
    assert proc.returncode == 0, proc.stderr
    assert "look-ahead: none found" in proc.stdout
    assert "recursive: ema:200" in proc.stdout and "recursive: rsi:14" in proc.stdout


def test_warmup_of_windowed_and_recursive_indicators() -> None:
    bars: Bars = load_bars(CANDLES)
    sma = warmup(bars, "sma:30")
    assert sma["warmup_bars"] <= 30 and not sma["recursive"]  # a plain window forgets the past
    ema = warmup(bars, "ema:50")
    assert ema["recursive"] and ema["warmup_bars"] > 200  # exponential memory: far longer than its lookback
