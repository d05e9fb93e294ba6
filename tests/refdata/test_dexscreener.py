"""DexScreener against a local server answering in its documented formats."""

from __future__ import annotations

import pytest
from aiohttp import web

from connectors.refdata.dexscreener import DexScreener, dexscreener_config
from connectors.refdata.http import BadResponse, RefDataClient
from schemas.errors import ConfigError
from schemas.records import DexPair
from tests.refdata.fake_api import FakeApi, Reply, fixture, ok

FETCHED_NS = 1_711_356_400_000_000_000
WETH_USDC = "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
WETH_USDT = "0x11b815efB8f581194ae79006d24E0d814B7697F6"
SOL_USDC = "58oQChx4yWmvKdwLLZzBi4ChoCc2fqCUWBkwMihLYQo2"
WETH = "0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2"

EXPECTED_WETH_USDC = DexPair(
    source="dexscreener", chain="ethereum", pair_address=WETH_USDC, dex="uniswap", base_symbol="WETH",
    base_address=WETH, quote_symbol="USDC", quote_address="0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48",
    ts=FETCHED_NS, price_usd=3442.71, price_native=3442.7158, liquidity_usd=158964211.64,
    volume_24h_usd=118541231.52)


def _ds(api: FakeApi, **kw) -> DexScreener:
    cfg = dexscreener_config(base_url=api.url, min_interval_s=0, backoff_s=0.01, **kw)
    return DexScreener(client=RefDataClient(cfg, clock_ns=lambda: FETCHED_NS))


async def test_pairs_parse_exact_values() -> None:
    path = f"/latest/dex/pairs/ethereum/{WETH_USDT},{WETH_USDC}"  # sorted: one cache entry per set
    async with FakeApi() as api:
        api.on(path, ok(fixture("dexscreener_pairs_ethereum.json")))
        async with _ds(api) as ds:
            got = await ds.pairs("ethereum", [WETH_USDC, WETH_USDT])
            again = await ds.pairs("ethereum", [WETH_USDT, WETH_USDC])
        assert got[0] == EXPECTED_WETH_USDC
        assert got[1] == DexPair(
            source="dexscreener", chain="ethereum", pair_address=WETH_USDT, dex="uniswap", base_symbol="WETH",
            base_address=WETH, quote_symbol="USDT", quote_address="0xdAC17F958D2ee523a2206206994597C13D831ec7",
            ts=FETCHED_NS, price_usd=3441.98, price_native=3441.9822, liquidity_usd=31877422.35,
            volume_24h_usd=41260731.07)
        assert again == got and len(api.calls) == 1 and ds.client.stats["cache_hits"] == 1
        assert ds.client.stats["not_found"] == 0


async def test_pairs_batch_30_and_count_unknown_addresses() -> None:
    def answer(request: web.Request) -> Reply:
        asked = request.path.rsplit("/", 1)[1].split(",")
        body = fixture("dexscreener_pairs_ethereum.json")
        body["pairs"] = [p for p in body["pairs"] if p["pairAddress"].lower() in {a.lower() for a in asked}] or None
        return ok(body)

    others = [f"0x{n:040x}" for n in range(1, 34)]
    async with FakeApi() as api:
        addresses = [WETH_USDC.lower(), *others]  # lower-case in, checksummed out: still found
        for start in range(0, 34, 30):
            batch = sorted(addresses)[start:start + 30]
            api.on("/latest/dex/pairs/ethereum/" + ",".join(batch), answer)
        async with _ds(api) as ds:
            got = await ds.pairs("ethereum", addresses)
        assert [len(c.path.rsplit("/", 1)[1].split(",")) for c in api.calls] == [30, 4]
        assert got == [EXPECTED_WETH_USDC]
        assert ds.client.stats["not_found"] == 33


async def test_token_pairs_and_search() -> None:
    async with FakeApi() as api:
        api.on(f"/token-pairs/v1/ethereum/{WETH}", ok(fixture("dexscreener_token_pairs.json")))
        api.on("/latest/dex/search", ok(fixture("dexscreener_search.json")))
        api.on("/latest/dex/pairs/solana/nothing", ok({"schemaVersion": "1.0.0", "pairs": None}))
        async with _ds(api) as ds:
            tokens = await ds.token_pairs("ethereum", WETH)
            found = await ds.search("SOL/USDC")
            none = await ds.pairs("solana", ["nothing"])
            with pytest.raises(ConfigError):
                await ds.search("  ")
        assert [p.pair_address for p in tokens] == [WETH_USDC, WETH_USDT] and tokens[0] == EXPECTED_WETH_USDC
        assert api.calls_to("/latest/dex/search")[0].query == {"q": "SOL/USDC"}
        assert found[0] == DexPair(
            source="dexscreener", chain="solana", pair_address=SOL_USDC, dex="raydium", base_symbol="SOL",
            base_address="So11111111111111111111111111111111111111112", quote_symbol="USDC",
            quote_address="EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", ts=FETCHED_NS, price_usd=182.47,
            price_native=182.47, liquidity_usd=12451773.02, volume_24h_usd=57321908.44)
        assert none == [] and ds.client.stats["not_found"] == 1


async def test_malformed_pairs_are_skipped_and_counted() -> None:
    async with FakeApi() as api:
        api.on(f"/latest/dex/pairs/ethereum/{WETH_USDC}", ok(fixture("dexscreener_pairs_bad.json")))
        async with _ds(api) as ds:
            got = await ds.pairs("ethereum", [WETH_USDC])
        assert got[0] == EXPECTED_WETH_USDC
        # a pool DexScreener cannot value has no priceUsd or liquidity: kept, with None
        assert got[1].pair_address == "0x9Db9e0e53058C89e5B94e29621a205198648425B"
        assert (got[1].price_usd, got[1].liquidity_usd, got[1].price_native, got[1].volume_24h_usd) == \
            (None, None, 67150.11, 12455.31)
        assert len(got) == 2 and ds.client.stats["rejected"] == 4
        assert ds.client.rejected_reasons == {"missing:baseToken": 1, "not_numeric:priceUsd": 1,
                                              "missing:address": 1, "not_object:row": 1}


async def test_truncated_or_misshapen_body_is_bad_response() -> None:
    async with FakeApi() as api:
        api.on(f"/latest/dex/pairs/ethereum/{WETH_USDC}", ok(b'{"schemaVersion":"1.0.0","pairs":[{"chainId":"eth'))
        api.on(f"/token-pairs/v1/ethereum/{WETH}", ok({"pairs": []}))
        async with _ds(api) as ds:
            with pytest.raises(BadResponse, match=r"dexscreener: GET /latest/dex/pairs/ethereum/0x88.*not valid JSON"):
                await ds.pairs("ethereum", [WETH_USDC])
            with pytest.raises(BadResponse, match="JSON list of pairs"):
                await ds.token_pairs("ethereum", WETH)
        assert ds.client.stats["errors"] == 2


def test_config_defaults() -> None:
    cfg = dexscreener_config()
    assert cfg.base_url == "https://api.dexscreener.com" and cfg.min_interval_s == pytest.approx(0.2)
    assert dexscreener_config(base_url="http://127.0.0.1:9").base_url == "http://127.0.0.1:9"
