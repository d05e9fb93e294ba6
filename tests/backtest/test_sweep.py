"""Sweeps: the grid, walk-forward windows, and 100 combinations x 10 markets on Ray equal to a serial run."""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from engine.backtest.sweep import combinations, parse_grid, walk_forward
from schemas.errors import ConfigError
from tests.data_paths import REPO, SHARED_DATA

MARKETS = sorted(str(p) for p in (SHARED_DATA / "candles").glob("*_BTC-5m.feather")) + [
    str(SHARED_DATA / "candles" / "futures" / "XRP_USDT_USDT-5m-futures.feather")]


def test_grid_syntax() -> None:
    assert parse_grid("rsi_len=7..21:7,atr_mult=1.5,2,3") == {"rsi_len": [7, 14, 21], "atr_mult": [1.5, 2, 3]}
    assert parse_grid("x=0.5..1.5:0.5") == {"x": [0.5, 1.0, 1.5]}
    assert len(combinations(parse_grid("a=1..4,b=1,2,3"))) == 12
    for bad in ("=1", "1,2", "a=1..0", "a=1,1", "a=x", "a=1,,2", "a=1,a=2", "a=1..5:0"):
        with pytest.raises(ConfigError):
            parse_grid(bad)


def test_walk_forward_windows_roll_by_the_test_span() -> None:
    d = 86_400 * 10**9
    w = walk_forward(0, 20 * d, 10 * d, 3 * d)
    assert w == [(0, 10 * d, 10 * d, 13 * d), (3 * d, 13 * d, 13 * d, 16 * d), (6 * d, 16 * d, 16 * d, 19 * d)]
    assert walk_forward(0, 5 * d, 10 * d, 3 * d) == []


def _sweep(out, *extra: str, markets: list[str] = MARKETS) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "app.cli", "backtest", "sweep", "--input", *markets, "--out",
                           str(out), *extra], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_100_combinations_by_10_markets_on_ray_equal_a_serial_run(tmp_path) -> None:
    args = ("--strategy", "sma_cross", "--engine", "vector", "--mode", "long-short",
            "--grid", "fast=5..24,slow=30..70:10")
    ray_run = _sweep(tmp_path / "ray", *args)
    assert "100 combinations x 10 markets = 1,000 backtests" in ray_run.stderr
    assert "sweep [" in ray_run.stderr and "100.0% 1,000/1,000" in ray_run.stderr  # the progress bar
    _sweep(tmp_path / "serial", *args, "--serial")
    on_ray = pq.read_table(tmp_path / "ray" / "results.parquet")
    serial = pq.read_table(tmp_path / "serial" / "results.parquet")
    assert on_ray.num_rows == 1000 and set(on_ray.column("market").to_pylist()).__len__() == 10
    assert on_ray.equals(serial)
    ranking = pq.read_table(tmp_path / "ray" / "ranking.parquet")
    assert ranking.num_rows == 100
    assert (tmp_path / "ray" / "ranking.html").read_text().count("<tr>") == 101


def test_walk_forward_sweep_of_the_default_strategy_reports_out_of_sample(tmp_path) -> None:
    same_period = MARKETS[:3]  # 20 days of 2018 each: (20 - 8) // 3 windows
    proc = _sweep(tmp_path / "wf", "--strategy", "default", "--grid", "rsi_len=7..21:7,atr_mult=1.5,2,3",
                  "--train", "8d", "--test", "3d", markets=same_period)
    assert "9 combinations x 3 markets x 4 walk-forward windows" in proc.stderr
    assert "walk-forward over 4 windows" in proc.stderr
    wf = pq.read_table(tmp_path / "wf" / "walk_forward.parquet").to_pylist()
    assert len(wf) == 4
    for row in wf:
        assert row["test_start"] >= row["train_start"] + 8 * 86_400 * 10**9
        assert "out_of_sample_return" in row and "in_sample_return" in row
    page = (tmp_path / "wf" / "ranking.html").read_text()
    assert "id='walk-forward'" in page and "out_of_sample_sharpe" in page
