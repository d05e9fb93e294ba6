"""Feed channel names: parsing, wildcards, market and timeframe matching, stream ids."""

from __future__ import annotations

import pytest

from serve.channels import ChannelError, parse_channel, parse_seq, subject

CANDLE = {"market": "BINANCE:BTCUSDT", "timeframe": "1m", "open_ts": 0, "close": 1.0}


def matches(name: str, record: dict) -> bool:
    return parse_channel(name).matches(subject(record))


def test_parse_parts() -> None:
    c = parse_channel("candles:BINANCE:BTCUSDT:1m")
    assert (c.kind, c.market, c.timeframe, c.stream) == ("candles", ("binance", "btcusdt"), "1m", "candles")
    assert parse_channel("signals:*").market is None and not parse_channel("signals:*").filtered
    assert parse_channel("alerts").market is None and parse_channel("alerts").timeframe is None
    assert parse_channel("structure:ETHUSDT:15m").market == ("ethusdt",)
    assert parse_channel("candles:BINANCE:BTCUSDT").timeframe is None  # BTCUSDT is no timeframe
    assert parse_channel("candles:*:5m").market is None and parse_channel("candles:*:5m").timeframe == "5m"
    assert parse_channel("whales:*").stream == "alerts" and parse_channel("whales").filtered
    assert parse_channel(" signals:* ").name == "signals:*"


@pytest.mark.parametrize("bad", ["", "  ", "trades:*", "candles:BTC USDT", "candles::1m", "candles:a$b", 7, None,
                                 "candles:" + "X" * 300])
def test_parse_rejects(bad) -> None:
    with pytest.raises(ChannelError):
        parse_channel(bad)


def test_market_and_timeframe_matching() -> None:
    assert matches("candles:*", CANDLE) and matches("candles", CANDLE)
    assert matches("candles:BINANCE:BTCUSDT:1m", CANDLE) and matches("candles:binance:btcusdt", CANDLE)
    assert matches("candles:BTCUSDT", CANDLE) and matches("candles:BTCUSDT:1m", CANDLE)
    assert matches("candles:BINANCE:*", CANDLE) and matches("candles:*:BTCUSDT:1m", CANDLE)
    assert matches("candles:*:1m", CANDLE) and not matches("candles:*:5m", CANDLE)
    assert not matches("candles:ETHUSDT", CANDLE) and not matches("candles:COINBASE:BTCUSDT", CANDLE)
    assert not matches("candles:BTC", CANDLE)  # whole parts only, no prefix match
    assert not matches("candles:BINANCE:BTCUSDT:1h", CANDLE)
    assert not matches("alerts:BTCUSDT", {"kind": "note"})  # no market, no match on a market pattern
    assert matches("alerts", {"kind": "note"})


def test_whales_are_whale_alerts() -> None:
    assert matches("whales", {"kind": "whale", "market": "ETH"})
    assert not matches("whales:*", {"kind": "price_spike", "market": "ETH"})
    assert matches("alerts:*", {"kind": "whale", "market": "ETH"})


def test_parse_seq_orders_numerically() -> None:
    assert parse_seq("1700000000000-10") > parse_seq("1700000000000-9")
    assert parse_seq("1700000000001") == (1700000000001, 0)
    for bad in ("", "abc", "1-2-3", "-1", None, 5):
        with pytest.raises(ChannelError):
            parse_seq(bad)
