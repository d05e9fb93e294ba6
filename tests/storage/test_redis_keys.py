"""Key names are versioned, namespaced and stable; record encoding is canonical."""

from __future__ import annotations

import pytest

from connectors.storage.redis_keys import (
    CHANNELS,
    RedisKeys,
    decode_record,
    encode_record,
)
from schemas.errors import ConfigError, InputError


def test_key_names_are_versioned_and_stable() -> None:
    k = RedisKeys(namespace="ci")
    assert k.prefix == "ci:v1:"
    assert k.pattern() == "ci:v1:*"
    assert k.feed("candles") == "ci:v1:feed:candles"
    assert k.live("signals") == "ci:v1:live:signals"
    assert k.checkpoint("live", 3) == "ci:v1:ckpt:live:3"
    assert k.checkpoint_index("live") == "ci:v1:idx:ckpt:live"
    assert k.latest("candle", "binance:BTC/USDT") == "ci:v1:latest:candle:binance:BTC/USDT"
    assert k.latest_index("candle") == "ci:v1:idx:latest:candle"
    assert k.rate_limit("api", "key-17") == "ci:v1:rl:api:key-17"
    assert RedisKeys() == k  # "ci" is the default namespace


def test_namespaces_do_not_overlap() -> None:
    a, b = RedisKeys("ci"), RedisKeys("ci-test")
    assert not a.feed("candles").startswith(b.prefix) and not b.feed("candles").startswith(a.prefix)


def test_engine_channels() -> None:
    assert set(CHANNELS) == {"candles", "signals", "structure", "alerts"}
    assert all(RedisKeys().feed(c) for c in CHANNELS)


@pytest.mark.parametrize("build", [
    lambda: RedisKeys("a b"),
    lambda: RedisKeys(""),
    lambda: RedisKeys().feed("candles:1m"),
    lambda: RedisKeys().live(""),
    lambda: RedisKeys().checkpoint("live", -1),
    lambda: RedisKeys().checkpoint("live", "0"),
    lambda: RedisKeys().checkpoint("a:b", 0),
    lambda: RedisKeys().latest("candle", ""),
    lambda: RedisKeys().rate_limit("a*", "k"),
])
def test_bad_names_are_rejected(build) -> None:
    with pytest.raises(ConfigError):
        build()


def test_record_encoding_is_canonical() -> None:
    a = encode_record({"b": 1, "a": [1.5, float("nan")], "c": {"y": float("inf"), "x": "é"}})
    b = encode_record({"c": {"x": "é", "y": float("-inf")}, "a": (1.5, None), "b": 1})
    assert a == b == '{"a":[1.5,null],"b":1,"c":{"x":"\\u00e9","y":null}}'
    assert decode_record(a) == {"a": [1.5, None], "b": 1, "c": {"x": "é", "y": None}}
    with pytest.raises(InputError, match="JSON"):
        encode_record({"when": object()})
