"""CoinGecko against a local server answering in its documented formats."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from aiohttp import web

from connectors.refdata.coingecko import CoinGecko, coingecko_config
from connectors.refdata.http import BadResponse, RefDataClient
from schemas.errors import ConfigError
from schemas.records import ReferencePrice
from tests.refdata.fake_api import FakeApi, Reply, fixture, ok

PREFIX = "/api/v3"  # the real base URL has a path; the client must keep it
FETCHED_NS = 1_711_356_400_123_456_789


def _cg(api: FakeApi, **kw) -> CoinGecko:
    cfg = coingecko_config(base_url=api.url + PREFIX, min_interval_s=0, backoff_s=0.01, **kw)
    return CoinGecko(client=RefDataClient(cfg, clock_ns=lambda: FETCHED_NS))


def _ns(iso: str) -> int:
    dt = datetime.fromisoformat(iso)
    return int(dt.replace(tzinfo=UTC).timestamp()) * 1_000_000_000 + dt.microsecond * 1000


async def test_simple_price_parses_exact_values_in_the_order_asked() -> None:
    async with FakeApi() as api:
        api.on(PREFIX + "/simple/price", ok(fixture("coingecko_simple_price.json")))
        async with _cg(api) as cg:
            got = await cg.prices(["solana", "bitcoin", "ethereum", "bitcoin"])
        assert got == [
            ReferencePrice(source="coingecko", asset="solana", ts=1711356296 * 10**9, price_usd=182.45,
                           market_cap_usd=81179604829.48, volume_24h_usd=4028754104.812, change_24h_pct=5.0231907),
            ReferencePrice(source="coingecko", asset="bitcoin", ts=1711356300 * 10**9, price_usd=67187.33589365664,
                           market_cap_usd=1317802988326.2493, volume_24h_usd=31260929299.52484,
                           change_24h_pct=3.637278946773539),
            ReferencePrice(source="coingecko", asset="ethereum", ts=1711356288 * 10**9, price_usd=3442.71,
                           market_cap_usd=413446851253.3021, volume_24h_usd=13875642187.6213,
                           change_24h_pct=-1.2474108913045),
        ]
        (call,) = api.calls
        assert call.query == {"ids": "bitcoin,ethereum,solana", "vs_currencies": "usd", "include_market_cap": "true",
                              "include_24hr_vol": "true", "include_24hr_change": "true",
                              "include_last_updated_at": "true"}
        assert "x-cg-demo-api-key" not in {k.lower() for k in call.headers}  # no key configured, none sent


async def test_simple_price_is_cached_and_unknown_ids_counted() -> None:
    async with FakeApi() as api:
        api.on(PREFIX + "/simple/price", ok(fixture("coingecko_simple_price.json")))
        async with _cg(api, api_key="CG-demo-key") as cg:
            first = await cg.prices(["bitcoin", "ethereum", "solana", "no-such-coin"])
            second = await cg.prices(["no-such-coin", "solana", "ethereum", "bitcoin"])
        assert len(api.calls) == 1  # same id set within the TTL: no second request
        assert {r.asset for r in first} == {r.asset for r in second} == {"bitcoin", "ethereum", "solana"}
        assert cg.client.stats["cache_hits"] == 1
        assert cg.client.stats["not_found"] == 2  # counted on every call, cached or not
        assert api.calls[0].headers["x-cg-demo-api-key"] == "CG-demo-key"


async def test_malformed_simple_price_rows_are_skipped_and_counted() -> None:
    async with FakeApi() as api:
        api.on(PREFIX + "/simple/price", ok(fixture("coingecko_simple_price_bad.json")))
        async with _cg(api) as cg:
            got = await cg.prices(["bitcoin", "ethereum", "solana", "dogecoin", "tether"])
        assert [r.asset for r in got] == ["bitcoin", "dogecoin"]
        assert got[0].price_usd == 67187.33589365664
        # no last_updated_at: stamped with the fetch time; nulls stay None
        assert got[1] == ReferencePrice(source="coingecko", asset="dogecoin", ts=FETCHED_NS, price_usd=0.1748)
        assert cg.client.stats["rejected"] == 3
        assert cg.client.rejected_reasons == {"missing:usd": 1, "not_numeric:usd": 1, "not_object:row": 1}


async def test_markets_parses_exact_values_and_skips_bad_rows() -> None:
    async with FakeApi() as api:
        api.on(PREFIX + "/coins/markets", ok(fixture("coingecko_markets.json")))
        async with _cg(api) as cg:
            got = await cg.markets(["ethereum", "bitcoin", "solana", "dogecoin"])
        assert got == [
            ReferencePrice(source="coingecko", asset="ethereum", ts=_ns("2024-04-07T16:49:22.412"),
                           price_usd=3385.62, market_cap_usd=406559114373.0, volume_24h_usd=9942350120.0,
                           change_24h_pct=-0.50894),
            ReferencePrice(source="coingecko", asset="bitcoin", ts=_ns("2024-04-07T16:49:31.736"),
                           price_usd=69314.0, market_cap_usd=1365392874021.0, volume_24h_usd=20831532349.0,
                           change_24h_pct=0.45327),
        ]
        assert got[1].ts == 1712508571736000000
        assert cg.client.rejected_reasons == {"not_numeric:current_price": 1, "not_time:last_updated": 1}
        (call,) = api.calls
        assert call.query["vs_currency"] == "usd" and call.query["ids"] == "bitcoin,dogecoin,ethereum,solana"


async def test_ids_are_batched_250_per_call() -> None:
    def answer(request: web.Request) -> Reply:
        return ok({i: {"usd": 1.0 + n, "last_updated_at": 1711356300}
                   for n, i in enumerate(request.query["ids"].split(","))})

    ids = [f"coin-{n:03d}" for n in range(260)]
    async with FakeApi() as api:
        api.on(PREFIX + "/simple/price", answer)
        async with _cg(api) as cg:
            got = await cg.prices(ids)
        assert [len(c.query["ids"].split(",")) for c in api.calls] == [250, 10]
        assert [r.asset for r in got] == ids


async def test_wrong_shapes_and_currencies_are_errors() -> None:
    async with FakeApi() as api:
        api.on(PREFIX + "/simple/price", ok([1, 2]))
        api.on(PREFIX + "/coins/markets", ok({"error": "coin not found"}))
        async with _cg(api) as cg:
            with pytest.raises(BadResponse, match="should answer a JSON object"):
                await cg.prices(["bitcoin"])
            with pytest.raises(BadResponse, match="should answer a JSON list"):
                await cg.markets(["bitcoin"])
            with pytest.raises(ConfigError, match="vs='usd'"):
                await cg.prices(["bitcoin"], vs="eur")


def test_config_defaults() -> None:
    demo = coingecko_config(api_key="k")
    assert demo.base_url == "https://api.coingecko.com/api/v3" and demo.api_key_header == "x-cg-demo-api-key"
    assert demo.min_interval_s == 2.0  # 30 calls/min
    pro = coingecko_config(api_key="k", plan="pro")
    assert pro.base_url.startswith("https://pro-api.") and pro.api_key_header == "x-cg-pro-api-key"
    assert coingecko_config().api_key_header is None
