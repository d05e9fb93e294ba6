"""Sinks: JSON Lines byte-stable, Parquet in row groups, the in-memory latest-state store."""

from __future__ import annotations

import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from engine.sinks.jsonl import JsonlSink, record_line
from engine.sinks.latest import LatestStateStore
from engine.sinks.parquet import ParquetSink
from schemas.arrow import to_table
from schemas.batches import CandleBatch, FeatureBatch
from schemas.errors import InputError
from schemas.records import (
    Candle,
    IndicatorSnapshot,
    IndicatorValue,
    Side,
    Signal,
    StructureEvent,
)

M = 60_000_000_000
NAN = float("nan")


def candle(market="BTC", tf="1m", open_ts=0, close=1.0, gap=False) -> Candle:
    price = NAN if gap else close
    return Candle(market=market, timeframe=tf, open_ts=open_ts, close_ts=open_ts + M, open=price, high=price,
                  low=price, close=price, volume=0.0 if gap else 2.0, buy_volume=0.0, sell_volume=0.0,
                  vwap=price, trade_count=0 if gap else 3, gap=gap)


def signal(i: int, market="BTC") -> Signal:
    return Signal(id=f"s{i}", market=market, timeframe="1m", ts=i, kind="rule", side=Side.BUY, strength=0.5,
                  price=1.0, reasons=["r"], source_versions={"candles": "1"})


def candle_batch(n: int, markets=("A", "B")) -> CandleBatch:
    k = np.arange(n)
    f = k.astype(float) + 1
    return CandleBatch(list(markets), (k % len(markets)).astype(np.int32), np.full(n, M), (k // len(markets)) * M,
                       f, f + 1, f - 0.5, f, f, f / 2, f / 2, f, k, np.zeros(n, bool))


# ---- JSON Lines --------------------------------------------------------------------------------
def test_jsonl_lines_are_canonical_and_byte_stable(tmp_path):
    records = [candle(open_ts=0), candle(open_ts=M, gap=True), signal(1)]
    for name in ("a.jsonl", "b.jsonl"):
        with JsonlSink(tmp_path / name) as sink:
            sink.write(records)
    a, b = (tmp_path / "a.jsonl").read_bytes(), (tmp_path / "b.jsonl").read_bytes()
    assert a == b and a.count(b"\n") == 3
    first = a.split(b"\n")[0].decode()
    assert first == json.dumps(records[0].model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    gap = json.loads(a.split(b"\n")[1])  # strict JSON: NaN becomes null
    assert gap["open"] is None and gap["gap"] is True
    assert record_line(signal(1)) == a.split(b"\n")[2].decode() + "\n"


def test_jsonl_appends_and_takes_batches(tmp_path):
    path = tmp_path / "out" / "candles.jsonl"
    with JsonlSink(path) as sink:
        assert sink.write(candle_batch(4)) == 4
        sink.flush()
        assert len(path.read_text().splitlines()) == 4
    sink.close()  # twice is harmless
    with JsonlSink(path) as sink:
        sink.write(candle())
        sink.write_many([candle()])
    assert len(path.read_text().splitlines()) == 6
    with JsonlSink(path, append=False) as sink:
        sink.write([candle()])
    assert len(path.read_text().splitlines()) == 1


# ---- Parquet -----------------------------------------------------------------------------------
def test_parquet_writes_row_groups_that_read_back_equal(tmp_path):
    records = [signal(i, market="BTC" if i % 2 else "ETH") for i in range(25)]
    path = tmp_path / "signals.parquet"
    with ParquetSink(path, Signal, row_group_size=10) as sink:
        sink.write(records[:7])
        sink.write(records[7:])
        assert sink.written == 20  # two full groups on disk, five buffered
    meta = pq.ParquetFile(path).metadata
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [10, 10, 5]
    assert pq.read_table(path).equals(to_table(records, Signal))


def test_parquet_takes_candle_batches_and_refuses_other_models(tmp_path):
    batch = candle_batch(6)
    path = tmp_path / "candles.parquet"
    with ParquetSink(path, Candle, row_group_size=4) as sink:
        sink.write(batch)
        sink.write([candle(market="C")])
    table = pq.read_table(path)
    assert table.num_rows == 7 and table.equals(to_table(batch.to_records() + [candle(market="C")], Candle))
    with ParquetSink(tmp_path / "s.parquet", Signal) as sink, pytest.raises(InputError):
        sink.write([candle()])
    with pytest.raises(InputError):
        ParquetSink(tmp_path / "x.parquet", dict)


def test_parquet_empty_file_has_schema(tmp_path):
    ParquetSink(tmp_path / "e.parquet", Candle).close()
    assert pq.read_table(tmp_path / "e.parquet").num_rows == 0


# ---- latest-state store ------------------------------------------------------------------------
def test_latest_candle_per_market_and_timeframe():
    store = LatestStateStore()
    store.update_candles(candle_batch(6))  # A and B, three bars each
    store.update_candles([candle(market="A", tf="1m", open_ts=0, close=99.0)])  # older: ignored
    a = store.candle("A", "1m")
    assert a["open_ts"] == 2 * M and a["close"] == 5.0
    assert [c["market"] for c in store.candles()] == ["A", "B"] and store.markets() == ["A", "B"]
    assert store.candle("Z", "1m") is None
    a["close"] = -1.0  # readers get copies
    assert store.candle("A", "1m")["close"] == 5.0


def test_latest_indicators_merge_by_bar():
    store = LatestStateStore()
    store.update_indicators([IndicatorValue(market="A", timeframe="1m", ts=M, name="rsi_14", value=55.0),
                             IndicatorValue(market="A", timeframe="1m", ts=M, name="sma_5", value=1.5),
                             IndicatorValue(market="A", timeframe="1m", ts=0, name="rsi_14", value=10.0)])
    assert store.indicators("A") == [{"market": "A", "timeframe": "1m", "ts": M,
                                      "values": {"rsi_14": 55.0, "sma_5": 1.5}}]
    store.update_indicators([IndicatorSnapshot(market="A", timeframe="1m", ts=2 * M, close=3.0,
                                               values={"rsi_14": 60.0})])
    assert store.indicators(timeframe="1m")[0]["values"] == {"rsi_14": 60.0}
    batch = candle_batch(4)
    store.update_indicators(FeatureBatch(batch, ["x"], np.arange(4.0)[:, None]))
    got = {v["market"]: (v["ts"], v["values"]) for v in store.indicators()}
    assert got["A"] == (2 * M, {"rsi_14": 60.0})  # the batch's A bars (0, 1m) are older: ignored
    assert got["B"] == (M, {"x": 3.0})  # last B row of the batch


def test_events_are_bounded_recent_first_and_counters_add_up():
    store = LatestStateStore(max_events=3)
    store.add_signals(signal(i) for i in range(5))
    assert [s["id"] for s in store.signals()] == ["s4", "s3", "s2"] and len(store.signals(limit=1)) == 1
    assert store.signals(market="ETH") == []
    store.add_structure_events([StructureEvent(id="e", market="A", timeframe="1m", kind="swing_high", ts=0,
                                               confirmed_ts=M, price=1.0)])
    assert store.structure_events()[0]["kind"] == "swing_high"
    store.incr("candles", 2)
    store.incr("candles")
    snap = store.snapshot()
    assert snap["counters"] == {"candles": 3} and len(snap["signals"]) == 3
    json.dumps(snap)  # plain data only


def test_store_is_safe_under_concurrent_writers_and_readers():
    store = LatestStateStore(max_events=50)

    def write(k: int) -> None:
        for i in range(300):
            store.incr("n")
            store.add_signals([signal(i)])
            store.update_candles([candle(market=f"M{k}", open_ts=i * M)])

    def read() -> None:
        for _ in range(300):
            store.snapshot()

    threads = [threading.Thread(target=write, args=(k,)) for k in range(4)] + [threading.Thread(target=read)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.counters() == {"n": 1200} and len(store.signals()) == 50
    assert all(store.candle(f"M{k}", "1m")["open_ts"] == 299 * M for k in range(4))
