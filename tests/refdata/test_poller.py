"""RefDataPoller against a local server: keeps going through errors, delivers news, stops cleanly."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Callable

import pytest
from aiohttp import web

from connectors.refdata.coingecko import CoinGecko, coingecko_config
from connectors.refdata.dexscreener import DexScreener, dexscreener_config
from connectors.refdata.http import RateLimited, RefDataUnavailable
from connectors.refdata.poller import RefDataPoller, RefRecord
from schemas.records import DexPair, ReferencePrice
from tests.refdata.fake_api import FakeApi, Reply, fixture, ok, status

WETH_USDC = "0x88e6A0c2dDD26FEEb64F039a2c41296FcB3f5640"
WETH_USDT = "0x11b815efB8f581194ae79006d24E0d814B7697F6"
PAIRS_PATH = f"/latest/dex/pairs/ethereum/{WETH_USDT},{WETH_USDC}"
# no cache and one attempt per request, so every round reaches the server and errors surface at once
FAST = {"min_interval_s": 0, "cache_ttl_s": 0, "attempts": 1, "backoff_s": 0.01}


def _sources(api: FakeApi) -> tuple[CoinGecko, DexScreener]:
    return (CoinGecko(coingecko_config(base_url=api.url, **FAST)),
            DexScreener(dexscreener_config(base_url=api.url, **FAST)))


def _price(usd: float, updated: int) -> Reply:
    body = fixture("coingecko_simple_price.json")
    body["bitcoin"].update(usd=usd, last_updated_at=updated)
    return ok({"bitcoin": body["bitcoin"]})


async def _until(cond: Callable[[], bool], timeout_s: float = 3.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def test_poller_survives_errors_and_delivers_later_values() -> None:
    got: list[RefRecord] = []

    async def on_records(records: list[RefRecord]) -> None:
        got.extend(records)
        if len(got) == len(records):  # the consumer fails once; the poller must not care
            raise RuntimeError("consumer hiccup")

    async with FakeApi() as api:
        api.on("/simple/price", status(500), status(502), _price(67000.5, 1711356300), _price(67000.5, 1711356300),
               _price(67250.0, 1711356360))
        api.on(PAIRS_PATH, status(503), ok(fixture("dexscreener_pairs_ethereum.json")))
        cg, ds = _sources(api)
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"], dexscreener=ds,
                               dex_pairs={"ethereum": [WETH_USDC, WETH_USDT]}, interval_s=0.02,
                               max_backoff_s=0.08, on_records=on_records)
        assert poller.latest_price("bitcoin") is None
        poller.start()
        poller.start()  # idempotent while running
        await _until(lambda: (p := poller.latest_price("bitcoin")) is not None and p.price_usd == 67250.0)
        await poller.stop()
        seen = len(api.calls)
        await asyncio.sleep(0.1)
        assert len(api.calls) == seen  # nothing after stop
        await cg.close()
        await ds.close()

    assert not poller.running
    assert poller.stats["errors"] >= 3 and poller.stats["callback_errors"] == 1
    assert poller.consecutive_errors == 0 and "RefDataUnavailable" in (poller.last_error or "")
    # each value once: the repeated bitcoin quote and the unchanged pools are not news
    prices = [r.price_usd for r in got if isinstance(r, ReferencePrice)]
    assert prices == [67000.5, 67250.0]
    assert sorted(r.pair_address for r in got if isinstance(r, DexPair)) == [WETH_USDT, WETH_USDC]
    assert poller.latest_price("bitcoin").ts == 1711356360 * 10**9
    pair = poller.latest_pair("ethereum", WETH_USDC.lower())  # EVM addresses match in any case
    assert pair is not None and pair.liquidity_usd == 158964211.64


async def test_changed_pool_values_are_delivered_again() -> None:
    moved = fixture("dexscreener_pairs_ethereum.json")
    later = copy.deepcopy(moved)
    later["pairs"][0]["priceUsd"] = "3450.02"
    got: list[RefRecord] = []

    async def on_records(records: list[RefRecord]) -> None:
        got.extend(records)

    async with FakeApi() as api:
        api.on(PAIRS_PATH, ok(moved), ok(moved), ok(later))
        _, ds = _sources(api)
        poller = RefDataPoller(dexscreener=ds, dex_pairs={"ethereum": [WETH_USDC, WETH_USDT]}, on_records=on_records)
        assert len(await poller.poll_once()) == 2
        assert await poller.poll_once() == []
        (news,) = await poller.poll_once()
        assert news.price_usd == 3450.02 and poller.latest_pair("ethereum", WETH_USDC).price_usd == 3450.02
        assert len(got) == 3
        await ds.close()


async def test_poll_once_raises_after_keeping_the_good_source() -> None:
    async with FakeApi() as api:
        api.on("/simple/price", status(500))
        api.on(PAIRS_PATH, ok(fixture("dexscreener_pairs_ethereum.json")))
        cg, ds = _sources(api)
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"], dexscreener=ds,
                               dex_pairs={"ethereum": [WETH_USDC, WETH_USDT]})
        with pytest.raises(RefDataUnavailable, match="coingecko: GET /simple/price"):
            await poller.poll_once()
        assert poller.latest_pair("ethereum", WETH_USDT) is not None and poller.latest_price("bitcoin") is None
        await cg.close()
        await ds.close()


async def test_errors_back_off_and_honour_a_long_retry_after() -> None:
    async with FakeApi() as api:
        api.on("/simple/price", status(500), status(500), status(429, "", {"Retry-After": "120"}))
        cg = CoinGecko(coingecko_config(base_url=api.url, max_retry_after_s=1, **FAST))
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"], interval_s=10, max_backoff_s=30)
        assert await poller._round() == 20  # one failed round: twice the interval
        assert await poller._round() == 30  # capped
        assert await poller._round() == 120  # the source asked for longer
        assert (poller.last_error or "").startswith(RateLimited.__name__)
        await cg.close()


async def test_stop_is_clean_while_a_request_hangs() -> None:
    release = asyncio.Event()

    async def hang(request: web.Request) -> Reply:
        await release.wait()
        return ok({})

    async with FakeApi() as api:
        api.on("/simple/price", hang)
        cg, _ = _sources(api)
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"], interval_s=0.01, stop_grace_s=0.1)
        task = poller.start()
        await _until(lambda: len(api.calls) == 1)
        t0 = time.monotonic()
        await poller.stop()
        assert time.monotonic() - t0 < 1.0
        assert task.done() and task.cancelled() and not poller.running
        await poller.stop()  # a second stop is harmless
        release.set()
        await cg.close()


async def test_stop_between_rounds_ends_the_task_without_cancelling() -> None:
    async with FakeApi() as api:
        api.on("/simple/price", _price(67000.5, 1711356300))
        cg, _ = _sources(api)
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"], interval_s=60)
        task = poller.start()
        await _until(lambda: poller.latest_price("bitcoin") is not None)
        await poller.stop()
        assert task.done() and not task.cancelled() and task.exception() is None
        await cg.close()


def test_targets_need_their_client() -> None:
    with pytest.raises(ValueError, match="CoinGecko"):
        RefDataPoller(coingecko_ids=["bitcoin"])
    with pytest.raises(ValueError, match="DexScreener"):
        RefDataPoller(dex_pairs={"ethereum": [WETH_USDC]})


async def test_an_older_quote_does_not_replace_a_newer_one() -> None:
    async with FakeApi() as api:
        api.on("/simple/price", _price(67250.0, 1711356360), _price(67000.5, 1711356300))
        cg, _ = _sources(api)
        poller = RefDataPoller(coingecko=cg, coingecko_ids=["bitcoin"])
        assert len(await poller.poll_once()) == 1
        assert await poller.poll_once() == []
        assert poller.latest_price("bitcoin").price_usd == 67250.0
        await cg.close()
