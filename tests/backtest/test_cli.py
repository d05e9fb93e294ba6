"""`crypto-intel backtest`: the files and columns it writes, the run saved to Postgres, and clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests.data_paths import REPO, SHARED_DATA
from tests.storage.pg_fixtures import fetch, pg_db, pg_url  # noqa: F401 - fixtures

CANDLES = [str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather"), str(SHARED_DATA / "candles" / "ZEC_BTC-5m.feather")]
FUTURES = SHARED_DATA / "candles" / "futures"


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "app.cli", "backtest", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**os.environ, **(env or {})})


def test_run_writes_trades_fills_equity_metrics_and_report(tmp_path) -> None:
    out = tmp_path / "run"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "--input", *CANDLES, "--strategy", "default",
                           "--mode", "long-short", "--size", "risk:0.01", "--fee", "0.001", "--slippage-bps", "2",
                           "--out", str(out)], cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "backtest [" in proc.stderr and "bars/s" in proc.stderr
    trades = pq.read_table(out / "trades.parquet")
    assert trades.column_names[:10] == ["market", "side", "entry_ts", "entry_price", "exit_ts", "exit_price", "size",
                                        "fees", "pnl", "return"]
    assert str(trades.schema.field("entry_ts").type) == "int64" and trades.num_rows > 20
    t = trades.to_pydict()
    assert set(t["side"]) == {"long", "short"}
    for i in range(trades.num_rows):
        d = 1 if t["side"][i] == "long" else -1
        pnl = d * t["size"][i] * (t["exit_price"][i] - t["entry_price"][i]) - t["fees"][i]
        assert t["pnl"][i] == pytest.approx(pnl, rel=1e-12, abs=1e-12)
        assert t["return"][i] == pytest.approx(t["pnl"][i] / (t["size"][i] * t["entry_price"][i]), rel=1e-12)
    fills = pq.read_table(out / "fills.parquet").to_pydict()
    assert len(fills["ts"]) == 2 * trades.num_rows
    assert sum(fills["fee"]) == pytest.approx(sum(t["fees"]), rel=1e-12)
    equity = pq.read_table(out / "equity.parquet")
    assert equity.column_names[:4] == ["ts", "equity", "cash", "exposure"]
    eq = equity.to_pydict()
    assert np.all(np.diff(eq["ts"]) > 0)
    assert eq["equity"][-1] == pytest.approx(10_000 + sum(t["pnl"]), rel=1e-9)  # exact accounting
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("total_return", "annual_return", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
                "max_drawdown_days", "win_rate", "profit_factor", "expectancy", "average_trade_return", "exposure",
                "turnover", "fees"):
        assert key in metrics["portfolio"], key
    assert set(metrics["markets"]) == {"ADA_BTC", "ZEC_BTC"} and "total_return" in metrics["benchmark"]
    assert (out / "report.html").stat().st_size > 10_000


def test_funding_payments_are_ledger_rows(tmp_path) -> None:
    out = tmp_path / "fut"
    proc = _cli("--input", str(FUTURES / "XRP_USDT_USDT-5m-futures.feather"), "--strategy", "sma_cross",
                "--mode", "long-short", "--funding", str(FUTURES / "XRP_USDT_USDT-8h-funding_rate.feather"),
                "--out", str(out), env={"DATABASE_URL": ""})
    assert proc.returncode == 0, proc.stderr
    fills = pq.read_table(out / "fills.parquet").to_pydict()
    funding = [i for i, k in enumerate(fills["kind"]) if k == "funding"]
    assert len(funding) >= 5
    trades = pq.read_table(out / "trades.parquet").to_pydict()
    assert sum(trades["funding"]) == pytest.approx(-sum(fills["cash_flow"][i] for i in funding), rel=1e-9)


def test_a_run_is_saved_to_the_backtests_table(tmp_path, pg_db) -> None:  # noqa: F811
    out = tmp_path / "saved"
    proc = _cli("--input", CANDLES[0], "--strategy", "sma_cross", "--params", "fast=8,slow=21", "--out", str(out),
                env={"DATABASE_URL": pg_db})
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads((out / "metrics.json").read_text())["id"]
    import asyncio
    rows = asyncio.run(fetch(pg_db, "select id, strategy, params, trades, metrics from backtests"))
    assert len(rows) == 1 and rows[0]["id"] == run_id and rows[0]["strategy"] == "sma_cross"
    assert json.loads(rows[0]["params"]) == {"fast": 8, "slow": 21}
    assert json.loads(rows[0]["metrics"])["portfolio"]["trades"] == rows[0]["trades"]


@pytest.mark.parametrize("args,needle", [
    (["--size", "half"], "--size half"),
    (["--size", "risk:2"], "risk fraction"),
    (["--params", "nope=3"], "unknown parameter 'nope'"),
    (["--params", "fast"], "--params"),
    (["--strategy", "nope"], "unknown strategy"),
    (["--timeframe", "1m"], "the input candles are 5m"),
    (["--engine", "vector", "--strategy", "default"], "--engine vector"),
    (["--start", "yesterday"], "--start yesterday"),
    (["--fee", "-1"], "--fee"),
])
def test_bad_flags_exit_2_with_one_line(tmp_path, args, needle) -> None:
    proc = _cli("--input", CANDLES[0], "--out", str(tmp_path / "x"), *args)
    assert proc.returncode == 2, proc.stderr
    err = [line for line in proc.stderr.splitlines() if not line.startswith("loaded ")]
    assert len(err) == 1 and needle in err[0], proc.stderr


def test_sweep_without_grid_exits_2(tmp_path) -> None:
    proc = _cli("sweep", "--input", CANDLES[0], "--out", str(tmp_path / "s"))
    assert proc.returncode == 2 and "--grid" in proc.stderr
