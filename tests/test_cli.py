"""The command line: exact column names, clear errors with exit code 2, replay output, and the main job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import talib

from app.cli import main
from tests.data_paths import SHARED_DATA

TRADES = SHARED_DATA / "trades" / "XRP_ETH-trades.parquet"
SPEC = ("rsi:14,ema:20,macd:12:26:9,bbands:20:2,atr:14,adx:14,stoch:14:3:3,obv,mfi:14,cci:20,willr:14,"
        "sar:0.02:0.2")


def test_indicators_command_names_columns_as_documented(tmp_path: Path) -> None:
    out = tmp_path / "ind.parquet"
    assert main(["indicators", "--input", str(TRADES), "--timeframe", "1m", "--indicators", SPEC,
                 "--out", str(out)]) == 0
    table = pq.read_table(out)
    expected = ["rsi_14", "ema_20", "macd_12_26_9", "macd_12_26_9_signal", "macd_12_26_9_hist",
                "bbands_20_2_upper", "bbands_20_2_middle", "bbands_20_2_lower", "atr_14", "adx_14",
                "stoch_14_3_3_k", "stoch_14_3_3_d", "obv", "mfi_14", "cci_20", "willr_14", "sar_0.02_0.2"]
    for name in ["market", "timeframe", "open_ts", "open", "high", "low", "close", "volume"] + expected:
        assert name in table.column_names, name
    close = table.column("close").to_numpy()
    rsi = table.column("rsi_14").to_numpy()
    ref = talib.RSI(close, 14)
    ok = ~np.isnan(ref)
    np.testing.assert_allclose(rsi[ok], ref[ok], rtol=1e-9)


@pytest.mark.parametrize("argv, needle", [
    (["indicators", "--input", "/no/such/file.parquet", "--indicators", "rsi:14", "--out", "x.parquet"],
     "/no/such/file.parquet"),
    (["indicators", "--input", str(TRADES), "--indicators", "rsi:abc", "--out", "x.parquet"], "rsi:abc"),
    (["indicators", "--input", str(TRADES), "--indicators", "nosuch:3", "--out", "x.parquet"], "nosuch"),
    (["indicators", "--input", str(TRADES), "--timeframe", "7x", "--indicators", "rsi", "--out", "x.parquet"], "7x"),
    (["replay", "--input", str(TRADES), "--out", "x.jsonl", "--strategy", "no-such-strategy", "--in-process"],
     "no-such-strategy"),
])
def test_bad_input_exits_2_with_one_line(argv, needle, capsys, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "error" in err[0] and needle in err[0], err


def test_bad_columns_exit_2(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("foo,bar\n1,2\n")
    assert main(["indicators", "--input", str(bad), "--indicators", "rsi", "--out", str(tmp_path / "o.parquet")]) == 2
    assert "column" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["run", "replay", "indicators"])
def test_help(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        main([command, "--help"])
    assert e.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_replay_in_process_writes_canonical_signals(tmp_path: Path) -> None:
    out = tmp_path / "signals.jsonl"
    inputs = [str(TRADES), str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather")]
    assert main(["replay", "--input", *inputs, "--out", str(out), "--in-process", "--timeframes", "1m,5m"]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows
    keys = [(r["ts"], r["market"], r["kind"]) for r in rows]
    assert keys == sorted(keys)


def test_run_main_job_on_bundled_sample(tmp_path: Path) -> None:
    """Acceptance: `crypto-intel run --max-seconds 30` produces signals from the bundled sample and exits 0."""
    exe = Path(sys.executable).with_name("crypto-intel")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    proc = subprocess.run([str(exe), "run", "--max-seconds", "30", "--out-dir", str(tmp_path / "out"),
                           "--dashboard-port", "8299"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "dashboard" in proc.stderr.lower()
    signals = (tmp_path / "out" / "signals.jsonl").read_text().splitlines()
    assert len(signals) > 0, proc.stderr[-3000:]
    assert json.loads(signals[0])["reasons"]


def test_columns_option_maps_unusual_names(tmp_path: Path, capsys) -> None:
    odd = tmp_path / "odd.csv"
    rows = "\n".join(f"{1_600_000_000_000 + i * 1000},{1.0 + (i % 7) * 0.01},{1 + i % 3}" for i in range(300))
    odd.write_text("when,px_last,lots\n" + rows + "\n")
    out = tmp_path / "o.parquet"
    argv = ["indicators", "--input", str(odd), "--indicators", "sma:5", "--timeframe", "1m", "--out", str(out),
            "--market", "ODD"]
    assert main(argv) == 2
    assert "--columns" in capsys.readouterr().err
    assert main(argv + ["--columns", "timestamp=when,price=px_last,size=lots"]) == 0
    table = pq.read_table(out)
    buckets = len({(1_600_000_000_000 + i * 1000) // 60_000 for i in range(300)})
    assert table.num_rows == buckets and table.column("market").to_pylist() == ["ODD"] * buckets
    assert main(argv + ["--columns", "timestamp"]) == 2


def test_replay_of_synthetic_trades(tmp_path: Path, capsys) -> None:
    out = tmp_path / "s.jsonl"
    assert main(["replay", "--input", "synthetic:20:200000:3", "--out", str(out), "--in-process"]) == 0
    err = capsys.readouterr().err
    assert "200,000 synthetic trades of 20 markets" in err and "rows/s" in err
    assert main(["replay", "--input", "synthetic:x", "--out", str(out), "--in-process"]) == 2


def test_structure_command_writes_confirmed_events(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    src = SHARED_DATA / "candles" / "ADA_BTC-5m.feather"
    assert main(["structure", "--input", str(src), "--timeframe", "5m", "--swing-length", "3", "--out", str(out)]) == 0
    events = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {e["kind"] for e in events}
    assert {"swing_high", "swing_low", "bos_bull", "choch_bear", "fvg_bull_created"} <= kinds
    assert all(e["ts"] < e["confirmed_ts"] and e["id"] for e in events)
    assert [e["confirmed_ts"] for e in events] == sorted(e["confirmed_ts"] for e in events)
    from engine.sources.files import load_any
    bar = {int(t): i for i, t in enumerate(load_any(src)[0].open_ts)}
    swings = [e for e in events if e["kind"].startswith("swing")]
    # known at the close of the 3rd bar after the swing bar (bars, not minutes: the file has holes)
    assert all(bar[e["confirmed_ts"] - 300_000_000_000] - bar[e["ts"]] == 3 for e in swings)
    assert main(["structure", "--input", str(src), "--timeframe", "5m", "--swing-length", "0",
                 "--out", str(out)]) == 2


def test_signals_command_with_a_strategy_file(tmp_path: Path) -> None:
    strategy = tmp_path / "s.toml"
    strategy.write_text('name = "dip"\nindicators = ["rsi:14"]\n[[rule]]\nname = "dip"\nside = "buy"\n'
                        'when = ["rsi_14 crosses_below 35"]\n')
    out = tmp_path / "signals.jsonl"
    src = SHARED_DATA / "candles" / "ADA_BTC-5m.feather"
    assert main(["signals", "--input", str(src), "--strategy", str(strategy), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and {r["kind"] for r in rows} == {"dip"} and all(r["risk_score"] is not None for r in rows)
