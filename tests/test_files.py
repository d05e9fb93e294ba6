"""File sources: every real file loads, bad rows are counted with reasons, columns and units detected."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from engine.sources.columns import market_from_path
from engine.sources.files import load_any, load_candles, load_trades
from engine.sources.sample import sample_paths
from engine.sources.timestamps import epoch_unit, to_ns
from engine.validation import NO_TS
from schemas.batches import CandleBatch, TradeBatch
from schemas.errors import InputError

S = 1_000_000_000
M = 60 * S
T = 1_700_000_000 * S  # 2023-11-14T22:13:20Z

# file (under shared data) -> kind, market, rows loaded, timeframe
REAL_FILES = {
    "trades/XRP_ETH-trades.parquet": ("trades", "XRP_ETH", 12477, None),
    "trades/XRP_ETH-trades.json.gz": ("trades", "XRP_ETH", 12477, None),
    "trades/btcusdt-trades.parquet": ("trades", "BTCUSDT", 2001, None),
    "trades/orderflow/public_trades_list.csv": ("trades", "PUBLIC_TRADES_LIST", 1000, None),
    "trades/orderflow/public_trades_list_simple_example.csv": ("trades", "PUBLIC_TRADES_LIST_SIMPLE_EXAMPLE", 7, None),
    "trades/XRP_ETH-1m.feather": ("candles", "XRP_ETH", 2469, "1m"),
    "trades/XRP_ETH-5m.feather": ("candles", "XRP_ETH", 706, "5m"),
    "trades/orderflow/populate_dataframe_with_trades_DF.feather": ("candles", "POPULATE_DATAFRAME_WITH_TRADES_DF",
                                                                   999, "5m"),
    "trades/orderflow/candles.json": ("candles", "CANDLES", 10999, "5m"),
    "candles/ADABTC-1m-2021-11-27.csv": ("candles", "ADABTC", 10, "1m"),
    "candles/ADABTC-1m-2021-11-28.csv": ("candles", "ADABTC", 11, "1m"),
    "candles/UNITTEST_BTC-30m.feather": ("candles", "UNITTEST_BTC", 1920, "30m"),
    "candles/futures/UNITTEST_USDT_USDT-1h-mark.feather": ("candles", "UNITTEST_USDT_USDT", 100, "1h"),
    "candles/futures/XRP_USDT_USDT-1h-futures.feather": ("candles", "XRP_USDT_USDT", 100, "1h"),
    "candles/futures/XRP_USDT_USDT-1h-futures.json.gz": ("candles", "XRP_USDT_USDT", 100, "1h"),
    "candles/futures/XRP_USDT_USDT-1h-mark.feather": ("candles", "XRP_USDT_USDT", 100, "1h"),
    "candles/futures/XRP_USDT_USDT-5m-futures.feather": ("candles", "XRP_USDT_USDT", 1999, "5m"),
    "candles/futures/XRP_USDT_USDT-8h-mark.feather": ("candles", "XRP_USDT_USDT", 91, "8h"),
    # funding rates stored as candles (rate in "open", zeros elsewhere): loads, every row refused as a price
    "candles/futures/XRP_USDT_USDT-8h-funding_rate.feather": ("candles", "XRP_USDT_USDT", 0, None),
}
ALTCOINS = ["ADA", "DASH", "ETC", "LTC", "NXT", "TRX", "XLM", "XMR", "ZEC"]
REAL_FILES.update({f"candles/{c}_BTC-5m.feather": ("candles", f"{c}_BTC", None, "5m") for c in ALTCOINS})
NOT_MARKET_DATA = ["trades/btcusdt-quotes.parquet", "trades/orderflow/EXPECTED_volume_profile.json"]


def test_the_table_lists_every_real_file(shared_data):
    found = {str(p.relative_to(shared_data)) for d in ("trades", "candles") for p in (shared_data / d).rglob("*")
             if p.is_file()}
    assert found == set(REAL_FILES) | set(NOT_MARKET_DATA)


@pytest.mark.parametrize("name", sorted(REAL_FILES))
def test_every_real_file_loads(shared_data, name):
    kind, market, n, tf = REAL_FILES[name]
    batch, rejects = load_any(shared_data / name)
    assert isinstance(batch, TradeBatch if kind == "trades" else CandleBatch)
    assert batch.markets == [market]
    if n is not None:
        assert len(batch) == n, rejects.summary()
    if kind == "candles" and tf:
        assert set(batch.tf.tolist()) == {{"1m": M, "5m": 5 * M, "30m": 30 * M, "1h": 60 * M, "8h": 480 * M}[tf]}
    if len(batch):
        assert (batch.ts if kind == "trades" else batch.open_ts).min() > 1_400_000_000 * S  # 2014+: units right
    if "funding_rate" in name:
        assert rejects.counts == {"price_not_positive": 91}
    elif "1h-mark" in name:
        assert set(rejects.counts) == {"volume_missing"}  # mark prices have no volume: kept, flagged
    else:
        assert rejects.rejected == 0, rejects.summary()


@pytest.mark.parametrize("name", NOT_MARKET_DATA)
def test_files_that_are_not_trades_or_candles_say_so(shared_data, name):
    with pytest.raises(InputError, match="neither trades nor candles|JSON layout not recognised"):
        load_any(shared_data / name)


def test_formats_agree_and_sides_map(shared_data):
    pq_batch, _ = load_trades(shared_data / "trades" / "XRP_ETH-trades.parquet")
    js_batch, _ = load_trades(shared_data / "trades" / "XRP_ETH-trades.json.gz")
    for col in ("ts", "price", "size", "side", "trade_id"):
        np.testing.assert_array_equal(getattr(pq_batch, col), getattr(js_batch, col))
    raw = pq.read_table(shared_data / "trades" / "XRP_ETH-trades.parquet").to_pydict()
    assert pq_batch.ts[0] == raw["timestamp"][0] * 1_000_000 and pq_batch.trade_id[0] == int(raw["id"][0])
    assert (pq_batch.side == np.where(np.array(raw["side"]) == "buy", 1, -1)).all()
    btc, _ = load_trades(shared_data / "trades" / "btcusdt-trades.parquet")
    maker = np.array(pq.read_table(shared_data / "trades" / "btcusdt-trades.parquet")["buyer_maker"].to_pylist())
    assert (btc.side == np.where(maker == "True", -1, 1)).all()  # buyer is maker: the seller was the aggressor


def test_binance_kline_csv_without_header(shared_data):
    c, _ = load_candles(shared_data / "candles" / "ADABTC-1m-2021-11-27.csv")
    assert c.open_ts[0] == 1637971200000 * 1_000_000 and c.tf[0] == M
    assert (c.open[0], c.close[0], c.volume[0], c.trade_count[0]) == (0.00002853, 0.00002854, 36304.2, 79)
    assert c.buy_volume[0] == 19523.0 and c.sell_volume[0] == pytest.approx(36304.2 - 19523.0)
    assert c.vwap[0] == pytest.approx(1.03547608 / 36304.2)


def test_candle_fields_a_file_lacks_are_unknown_not_invented(shared_data):
    c, _ = load_candles(shared_data / "candles" / "ADA_BTC-5m.feather")
    assert np.isnan(c.buy_volume).all() and np.isnan(c.vwap).all() and (c.trade_count == -1).all()
    assert not c.gap.any()


def test_timeframe_argument_overrides_inference(shared_data):
    c, _ = load_candles(shared_data / "candles" / "ADA_BTC-5m.feather", timeframe="15m", market="ADA/BTC")
    assert set(c.tf.tolist()) == {15 * M} and c.markets == ["ADA/BTC"]


@pytest.mark.parametrize("file,market", [("XRP_ETH-trades.parquet", "XRP_ETH"), ("ADA_BTC-5m.feather", "ADA_BTC"),
                                         ("ADABTC-1m-2021-11-27.csv", "ADABTC"), ("btcusdt-trades.parquet", "BTCUSDT"),
                                         ("XRP_USDT_USDT-1h-futures.json.gz", "XRP_USDT_USDT")])
def test_market_name_from_file_name(file, market):
    assert market_from_path(Path(file)) == market


# ---- messy CSV ---------------------------------------------------------------------------------
MESSY = """Time,Symbol,Price,Qty,Side,Venue_Note
2024-01-01T00:00:00Z,BTC/USDT,100.0,1.0,buy,a
2024-01-01T00:00:01Z,BTC/USDT,nan,1.0,sell,b
2024-01-01T00:00:02Z,ETH/USDT,10.0,-3,sell,c
2024-01-01T00:00:03Z,ETH/USDT,11.0,2.0,BUY,d
not a time,BTC/USDT,101.0,1.0,buy,e
2024-01-01T00:00:04Z,BTC/USDT,abc,1.0,buy,f
2024-01-01T00:00:05Z,BTC/USDT,102.0,1.0,buy
2024-01-01T00:00:06Z,BTC/USDT,103.0,1.0,buy,g,extra
2024-01-01T00:00:02.5Z,ETH/USDT,104.0,0.5,sell,h
2024-01-01T00:00:07Z,,105.0,1.0,buy,i
2024-01-01T00:00:08Z,ETH/USDT,12.0,0,buy,j
2024-01-01T00:00:09Z,ETH/USDT,13.0,1.5,hold,k
"""


def test_messy_csv_rows_are_counted_with_reasons_and_valid_rows_kept(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text(MESSY)
    batch, r = load_trades(path)
    assert r.counts == {"malformed_row": 2, "side_unknown": 1, "price_not_finite": 2, "size_not_positive": 2,
                        "timestamp_invalid": 1, "market_missing": 1, "out_of_order": 1}
    assert r.examples["malformed_row"] == [6, 7] and r.examples["price_not_finite"] == [1, 5]
    assert r.examples["out_of_order"] == [8] and r.rejected == 8
    got = sorted(zip([batch.markets[m] for m in batch.market], batch.price.tolist(), batch.side.tolist()))
    assert got == [("BTC/USDT", 100.0, 1), ("ETH/USDT", 11.0, 1), ("ETH/USDT", 13.0, 0), ("ETH/USDT", 104.0, -1)]
    assert batch.price.tolist() == [100.0, 11.0, 104.0, 13.0]  # file order kept, the late row included


def test_text_deep_inside_a_number_column_does_not_break_the_read(tmp_path):
    path = tmp_path / "X_Y-trades.csv"
    lines = ["timestamp,price,amount"] + [f"{1_700_000_000_000 + i},1.5,2" for i in range(150_000)]
    lines += ["1700000200000,oops,2", "1700000200001,1.5,2"]
    path.write_text("\n".join(lines) + "\n")
    batch, r = load_trades(path)
    assert len(batch) == 150_001 and r.counts == {"price_not_finite": 1}
    assert r.examples["price_not_finite"] == [150_000]


def test_explicit_column_mapping_and_clear_errors(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text("when,px_last,lots\n1700000000,1.0,2.0\n1700000001,1.5,1.0\n")
    with pytest.raises(InputError) as e:
        load_trades(path)
    msg = str(e.value)
    assert "['when', 'px_last', 'lots']" in msg and "--columns" in msg and "timestamp" in msg
    batch, _ = load_trades(path, market="ODD", columns={"timestamp": "when", "price": "px_last", "size": "lots"})
    assert batch.ts.tolist() == [T, T + S] and batch.markets == ["ODD"]
    with pytest.raises(InputError, match="does not have"):
        load_trades(path, columns={"timestamp": "nope"})
    with pytest.raises(InputError, match="unknown field"):
        load_trades(path, columns={"stamp": "when"})


def test_missing_unknown_and_empty_files(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_trades(tmp_path / "absent.parquet")
    (tmp_path / "x.xlsx").write_text("x")
    with pytest.raises(InputError, match="unknown file format"):
        load_any(tmp_path / "x.xlsx")
    (tmp_path / "e.csv").write_text("")
    with pytest.raises(InputError, match="empty"):
        load_any(tmp_path / "e.csv")
    (tmp_path / "h.csv").write_text("1,2,3\n4,5,6\n")
    with pytest.raises(InputError, match="no header"):
        load_any(tmp_path / "h.csv")
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(InputError, match="cannot read"):
        load_any(tmp_path / "bad.parquet")


def test_several_markets_in_one_parquet_with_arrow_timestamps(tmp_path):
    table = pa.table({"ts": pa.array([T, T + S, T + 2 * S], pa.timestamp("ns", tz="UTC")),
                      "pair": ["A/B", "C/D", "A/B"], "price": [1.0, 2.0, 3.0], "qty": [1.0, 1.0, 1.0],
                      "is_buyer_maker": [True, False, None]})
    pq.write_table(table, tmp_path / "many.parquet")
    batch, r = load_trades(tmp_path / "many.parquet")
    assert batch.markets == ["A/B", "C/D"] and batch.market.tolist() == [0, 1, 0]
    assert batch.side.tolist() == [-1, 1, 0] and batch.ts.tolist() == [T, T + S, T + 2 * S] and not r


def test_json_layouts(tmp_path):
    rows = [{"date": "2023-11-14 22:13:20", "open": 1, "high": 2, "low": 1, "close": 2, "volume": 5},
            {"date": "2023-11-14 22:14:20", "open": 2, "high": 2, "low": 1, "close": 1, "volume": 4}]
    (tmp_path / "a.json").write_text(json.dumps(rows))
    c, _ = load_any(tmp_path / "a.json")
    assert isinstance(c, CandleBatch) and c.open_ts.tolist() == [T, T + M] and c.tf[0] == M
    with gzip.open(tmp_path / "b.json.gz", "wt") as f:
        json.dump([[1700000000000, "1", None, "buy", 1.0, 2.0, 2.0], [1700000000001, "2", None, "sell", 1.0],
                   [1700000000002, "3", None, "sell", 1.5, 1.0, 1.5]], f)
    t, r = load_any(tmp_path / "b.json.gz")
    assert isinstance(t, TradeBatch) and t.trade_id.tolist() == [1, 3] and r.counts == {"malformed_row": 1}


def test_feather_with_naive_timestamps_is_utc(tmp_path):
    table = pa.table({"date": pa.array([T, T + 5 * M], pa.timestamp("ns")), "open": [1.0, 1.0], "high": [1.0, 1.0],
                      "low": [1.0, 1.0], "close": [1.0, 1.0], "volume": [1.0, 1.0]})
    feather.write_feather(table, tmp_path / "N_A-5m.feather")
    c, _ = load_candles(tmp_path / "N_A-5m.feather")
    assert c.open_ts.tolist() == [T, T + 5 * M] and c.markets == ["N_A"]


# ---- timestamps --------------------------------------------------------------------------------
@pytest.mark.parametrize("values", [
    [1_700_000_000], [1_700_000_000_000], [1_700_000_000_000_000], [1_700_000_000_000_000_000],
    [1_700_000_000.0], ["1700000000000"], ["2023-11-14T22:13:20Z"], ["2023-11-14 22:13:20"],
    ["2023-11-14T22:13:20.000+00:00"], ["2023-11-15 00:13:20+02:00"], ["2023-11-14T17:13:20-0500"]])
def test_timestamp_units_and_formats(values):
    assert to_ns(pa.array(values)).tolist() == [T]


def test_timestamp_details():
    assert to_ns(pa.array([1_700_000_000.25])).tolist() == [T + S // 4]
    assert to_ns(pa.array(["2023-11-14 22:13:20.123456789"])).tolist() == [T + 123_456_789]
    assert to_ns(pa.array(["2024-02-29", "2023-02-29", "junk", None, "2023-13-01"])).tolist() == [
        1_709_164_800 * S, NO_TS, NO_TS, NO_TS, NO_TS]
    assert to_ns(pa.array([1_700_000_000_000, None])).tolist() == [T, NO_TS]
    assert to_ns(pa.array([float("nan"), 1_700_000_000_000.0])).tolist() == [NO_TS, T]
    assert to_ns(pa.array([T // 1000], pa.timestamp("us", tz="UTC"))).tolist() == [T]
    assert epoch_unit(np.array([1.6e9, 1.7e9])) == "s" and epoch_unit(np.array([1.7e15])) == "us"


# ---- bundled sample ----------------------------------------------------------------------------
def test_sample_data_is_bundled_and_loads():
    paths = sample_paths()
    names = {p.name for p in paths}
    assert {"XRP_ETH-trades.parquet", "btcusdt-trades.parquet", "ETH_USDT-trades.csv"} <= names
    assert sum(n.endswith("-5m.feather") for n in names) == 4
    folder = paths[0].parent
    assert sum(p.stat().st_size for p in folder.iterdir()) < 3_000_000
    readme = (folder / "README.md").read_text()
    for p in paths:
        assert p.name in readme or p.name.split("-")[0] in readme
        batch, r = load_any(p)
        assert len(batch) > 0 and r.rejected == 0
    assert (folder / "LICENSE-freqtrade.txt").exists() and (folder / "LICENSE-nautilus_trader.txt").exists()
    eth, _ = load_any(folder / "ETH_USDT-trades.csv")
    assert eth.markets == ["ETH_USDT"] and len(eth) == 1000


def test_gzipped_csv_with_byte_order_mark(tmp_path):
    with gzip.open(tmp_path / "A_B-trades.csv.gz", "wb") as f:
        f.write(b"\xef\xbb\xbftimestamp,price,amount,side\n1700000000000,1.5,2,sell\n")
    batch, r = load_any(tmp_path / "A_B-trades.csv.gz")
    assert batch.ts.tolist() == [T] and batch.side.tolist() == [-1] and batch.markets == ["A_B"] and not r
