"""Refactors change no output: the commands below give byte-identical files to those recorded before.

The digests were taken from the same commands run on the code before the packages were rearranged
(one-way layering) and must only change on purpose, with the reason in the commit. To record new ones
after a deliberate output change: ``CRYPTO_INTEL_RECORD_DIGESTS=1 pytest tests/test_outputs_unchanged.py -s``.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "engine" / "sample"
WIRE = REPO / "tests" / "data" / "wire"
INDICATORS = "rsi:14,ema:20,macd:12:26:9,bbands:20:2,sar:0.02:0.2,atr:14,adx:14,stoch:14:3:3,obv,supertrend:10:3," \
             "donchian:20,kama:10"

# name -> (command line with {out} for the output file, sha256 of that file)
CASES = {
    "replay-signals": (["replay", "--in-process", "--timeframes", "1m,5m", "--input", f"{SAMPLE}/XRP_ETH-trades.parquet",
                        f"{SAMPLE}/ETH_USDT-trades.csv", f"{SAMPLE}/btcusdt-trades.parquet",
                        f"{SAMPLE}/ADA_BTC-5m.feather", f"{SAMPLE}/LTC_BTC-5m.feather", "--out", "{out}",
                        "--events-out", "{out}.events"],
                       "3b63e5829adbd75bf527ae1ef5351d25e89ee65c5e020815f16ed0643ca66bc3",
                       "a360a172179f4c4bc3790cff3363e78c0d8f40ba7414abbcfbc80aa5f299d1c7"),
    "ray-replay-signals": (["replay", "--shards", "2", "--timeframes", "1m,5m", "--input",
                            f"{SAMPLE}/XRP_ETH-trades.parquet", "--out", "{out}"],
                           "61314cfe78aa91447ebffcfc45a9ba4560e59b4bf2c020287af273f25ecba5f5"),
    "signals-smc": (["signals", "--strategy", "smc_continuation", "--input", f"{SAMPLE}/ETC_BTC-5m.feather",
                     f"{SAMPLE}/XMR_BTC-5m.feather", "--out", "{out}"],
                    "984a03d60ba9882bf816783587c6d4e5997a350a84b487a62125266837936e05"),
    "structure": (["structure", "--input", f"{SAMPLE}/ADA_BTC-5m.feather", "--timeframe", "5m", "--out", "{out}"],
                  "c3c9bf5bae8dab8f06b62fedf9f073fa9865155b31ada45060541331171c7eab"),
    "indicators": (["indicators", "--input", f"{SAMPLE}/XRP_ETH-trades.parquet", "--timeframe", "1m",
                    "--indicators", INDICATORS, "--out", "{out}.parquet"],
                   "18cb275df6c7064d0b2234c77b676bb60f5b095627721bdb8a1e08f78aad2911"),
    "kraken-frames": (["venues", "parse", "--venue", "kraken", "--input", f"{WIRE}/KRAKEN.ws.50.0", "--out", "{out}"],
                      "9a96e5bbb0e037f1e84df98ce1db8bdb80b76b210f524005ee5ad4606a21939b"),
    "binance-futures-frames": (["venues", "parse", "--venue", "binance_futures", "--input",
                                f"{WIRE}/BINANCE_FUTURES.ws.1.0", "--out", "{out}"],
                               "94100a3b1c91c5fc1a0c09df9c32279a3c22607478e9ded78ecb70230cea788e"),
}


def _sha256(path: Path) -> str:
    """Of the file's bytes; of a Parquet file, of its schema and values (the file embeds the writer's version)."""
    if path.suffix == ".parquet":
        import json

        import pyarrow.parquet as pq
        table = pq.read_table(path)
        data = json.dumps({"schema": [f"{f.name}:{f.type}" for f in table.schema], "rows": table.to_pydict()})
        return hashlib.sha256(data.encode()).hexdigest()
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_output_is_byte_identical(tmp_path, name) -> None:
    argv, *digests = CASES[name]
    out = tmp_path / name
    argv = [a.replace("{out}", str(out)) for a in argv]
    if "--shards" in argv:  # on Ray: its own process, so this session's Ray (if any) is left alone
        proc = subprocess.run([sys.executable, "-m", "app.cli", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=600, env={**os.environ, "PYTHONPATH": str(REPO)})
        assert proc.returncode == 0, proc.stderr[-3000:]
    else:
        assert main(argv) == 0
    produced = [p for p in (out, Path(f"{out}.parquet"), Path(f"{out}.events")) if p.exists()]
    got = [_sha256(p) for p in produced]
    if os.environ.get("CRYPTO_INTEL_RECORD_DIGESTS"):
        print(name, got)
        return
    assert got == digests, f"{name}: output changed ({[p.name for p in produced]})"
