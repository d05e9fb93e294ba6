"""Etherscan history against a local server answering in its documented formats, 10,000-row cap enforced."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import logging
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp import web

from connectors.refdata.etherscan import (
    Etherscan,
    EtherscanRejected,
    HistoryRow,
    InvalidApiKey,
    WindowExhausted,
    backfill_wallet,
    balances_from_history,
    etherscan_config,
)
from connectors.refdata.http import RateLimited
from schemas.errors import ConfigError
from schemas.records import ValueTransfer
from tests.refdata.fake_api import FakeApi, Reply, ok, status

PATH = "/v2/api"
KEY = "K3YSECRET9Q2W7E4R"
WALLET = "0x7a16ff8270133f063aab6c9977183d9e72835428"
ALICE = "0x28c6c06298d514db089934071355e5743bf21d60"
BOB = "0xdfd5293d8e347dfe59e90efd55b2956a1343963d"
ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
SHIB = "0x95ad61b0a150d79219dcf64e1e6cc01f0b64c4ce"
PUNKS = "0xb47e3cd837ddf8e4c57f05d70ab865de6e193bbb"
NEW_CONTRACT = "0x5e5a7f09c3e9c3f2b4f1c7e3a5d4b2c1e0f9a8b7"
ETH = 10**18
BIG = 2**70 + 1  # above 2**64: exact only if never a float
T0 = 1_681_000_000


def _hash(tag: str) -> str:
    return "0x" + hashlib.sha256(tag.encode()).hexdigest()


def tx_row(block: int, tag: str, frm: str, to: str, value: int, *, failed: bool = False,
           created: str = "") -> dict[str, str]:
    """A ``txlist`` row with every documented field, as strings the way Etherscan sends them."""
    return {"blockNumber": str(block), "timeStamp": str(T0 + (block - 17_000_000) * 12), "hash": _hash(tag),
            "nonce": "41", "blockHash": _hash(f"block{block}"), "transactionIndex": "87", "from": frm, "to": to,
            "value": str(value), "gas": "21000", "gasPrice": "23415648772", "isError": "1" if failed else "0",
            "txreceipt_status": "0" if failed else "1", "input": "0x", "contractAddress": created,
            "cumulativeGasUsed": "8719203", "gasUsed": "21000", "confirmations": "2345678",
            "methodId": "0x", "functionName": ""}


def internal_row(block: int, tag: str, frm: str, to: str, value: int, trace: str, *,
                 failed: bool = False) -> dict[str, str]:
    """A ``txlistinternal`` row (documented fields: no nonce, gasPrice or logIndex; a traceId instead)."""
    return {"blockNumber": str(block), "timeStamp": str(T0 + (block - 17_000_000) * 12), "hash": _hash(tag),
            "from": frm, "to": to, "value": str(value), "contractAddress": "", "input": "", "type": "call",
            "gas": "2300", "gasUsed": "0", "traceId": trace, "isError": "1" if failed else "0",
            "errCode": "Reverted" if failed else ""}


def token_row(block: int, tag: str, log_index: int, token: str, frm: str, to: str, value: int,
              symbol: str = "USDT", decimals: int = 6) -> dict[str, str]:
    """A ``tokentx`` row: the transaction fields plus token name, symbol, decimals and the log index."""
    return {"blockNumber": str(block), "timeStamp": str(T0 + (block - 17_000_000) * 12), "hash": _hash(tag),
            "nonce": "41", "blockHash": _hash(f"block{block}"), "from": frm, "contractAddress": token, "to": to,
            "value": str(value), "tokenName": symbol.title(), "tokenSymbol": symbol, "tokenDecimal": str(decimals),
            "transactionIndex": "87", "gas": "180000", "gasPrice": "23415648772", "gasUsed": "121935",
            "cumulativeGasUsed": "9812345", "input": "deprecated", "confirmations": "2345678",
            "logIndex": str(log_index)}


NATIVE_ROWS = [
    tx_row(17_000_000, "deposit", ALICE, WALLET, 5 * ETH),
    tx_row(17_000_005, "pay-bob", WALLET, BOB, 3 * ETH // 2),
    tx_row(17_000_005, "pay-bob-failed", WALLET, BOB, 2 * ETH, failed=True),
    tx_row(17_000_010, "swap", WALLET, ROUTER, 0),
    tx_row(17_000_020, "deploy", WALLET, "", ETH // 10, created=NEW_CONTRACT),
    tx_row(17_000_030, "whale", ALICE, WALLET, BIG),
]
INTERNAL_ROWS = [
    internal_row(17_000_010, "swap", ROUTER, WALLET, ETH // 4, "0_1"),
    internal_row(17_000_012, "refund-reverted", ROUTER, WALLET, 3 * ETH, "0", failed=True),
]
TOKEN_ROWS = [
    token_row(17_000_002, "airdrop", 40, SHIB, ALICE, WALLET, 10**30 + 7, "SHIB", 18),
    token_row(17_000_010, "swap", 9, SHIB, WALLET, ROUTER, 4 * 10**29, "SHIB", 18),
    token_row(17_000_010, "swap", 12, USDT, ROUTER, WALLET, 1_000_000_000),
]


def notok(text: str) -> Reply:
    return ok({"status": "0", "message": "NOTOK", "result": text})


def explorer(data: dict[str, list[dict[str, Any]]], cap: int = 10_000) -> Callable[[web.Request], Reply]:
    """Etherscan's account lists: address and block filters, ascending pages, the page*offset cap."""
    def answer(request: web.Request) -> Reply:
        q = request.query
        page, offset = int(q.get("page", "1")), int(q.get("offset", "10000"))
        if page * offset > cap:
            return notok("Result window is too large, PageNo x Offset size must be less than or equal to 10000")
        start, end = int(q.get("startblock", "0")), int(q.get("endblock", "99999999"))
        address, contract = q["address"].lower(), q.get("contractaddress", "").lower()
        hits = [r for r in data.get(q["action"], [])
                if start <= int(r["blockNumber"]) <= end and address in (r["from"], r["to"])
                and (not contract or r["contractAddress"] == contract)]
        hits.sort(key=lambda r: int(r["blockNumber"]))  # stable: same-block rows keep their order
        chunk = hits[(page - 1) * offset:page * offset]
        if not chunk:
            return ok({"status": "0", "message": "No transactions found", "result": []})
        return ok({"status": "1", "message": "OK", "result": chunk})
    return answer


def _es(api: FakeApi, **kw: Any) -> Etherscan:
    settings: dict[str, Any] = {"min_interval_s": 0, "backoff_s": 0.01, "api_key": KEY}
    settings.update(kw)
    return Etherscan(etherscan_config(base_url=api.url + PATH, **settings))


def _native(row: dict[str, str], *, failed: bool = False) -> HistoryRow:
    to = row["to"] or row["contractAddress"]
    return HistoryRow(int(row["blockNumber"]), int(row["timeStamp"]),
                      ValueTransfer(row["hash"], -1, "", row["from"], to, int(row["value"])), failed)


async def test_native_transactions_parse_exact_values_and_flag_failed_ones() -> None:
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": NATIVE_ROWS}))
        async with _es(api) as es:
            got = await es.native_transactions(WALLET.upper().replace("0X", "0x"))
        assert got == [_native(NATIVE_ROWS[0]), _native(NATIVE_ROWS[1]), _native(NATIVE_ROWS[2], failed=True),
                       _native(NATIVE_ROWS[3]), _native(NATIVE_ROWS[4]), _native(NATIVE_ROWS[5])]
        assert got[4].transfer.to_address == NEW_CONTRACT  # a creation pays the new contract
        assert got[5].transfer.value == BIG and type(got[5].transfer.value) is int
        (call,) = api.calls
        assert call.query == {"chainid": "1", "module": "account", "action": "txlist", "address": WALLET,
                              "startblock": "0", "page": "1", "offset": "1000", "sort": "asc", "apikey": KEY}


async def test_internal_token_and_nft_rows() -> None:
    nft = {**token_row(17_000_040, "mint", 3, PUNKS, ALICE, WALLET, 0), "tokenID": "7804", "value": ""}
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlistinternal": INTERNAL_ROWS, "tokentx": TOKEN_ROWS, "tokennfttx": [nft]}))
        async with _es(api, chain_id=8453) as es:
            internal = await es.internal_transactions(WALLET, end_block=17_000_011)
            usdt = await es.token_transfers(WALLET, contract=USDT.upper().replace("0X", "0x"))
            nfts = await es.nft_transfers(WALLET)
    assert internal == [HistoryRow(17_000_010, T0 + 120, ValueTransfer(_hash("swap"), -1, "", ROUTER, WALLET, ETH // 4),
                                   False)]
    assert usdt == [HistoryRow(17_000_010, T0 + 120,
                               ValueTransfer(_hash("swap"), 12, USDT, ROUTER, WALLET, 1_000_000_000), False)]
    assert nfts == [HistoryRow(17_000_040, T0 + 480, ValueTransfer(_hash("mint"), 3, PUNKS, ALICE, WALLET, 1), False,
                               token_id=7804)]
    queries = [c.query for c in api.calls]
    assert queries[0]["endblock"] == "17000011" and queries[0]["chainid"] == "8453"
    assert queries[1]["contractaddress"] == USDT and queries[2]["action"] == "tokennfttx"


async def test_pages_until_a_short_or_empty_page() -> None:
    rows = [tx_row(17_100_000 + i, f"p{i}", ALICE, WALLET, i) for i in range(23)]
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": rows, "tokentx": [token_row(17_100_000 + i, f"t{i}", i, USDT, WALLET,
                                                                      BOB, i) for i in range(20)]}))
        async with _es(api) as es:
            native = await es.native_transactions(WALLET, page_size=10)
            tokens = await es.token_transfers(WALLET, page_size=10)
    assert [r.transfer.value for r in native] == list(range(23))
    assert [r.transfer.value for r in tokens] == list(range(20))
    # 23 rows: pages 1, 2 full, 3 short; 20 rows: page 3 answers "No transactions found"
    assert [(c.query["action"], c.query["page"]) for c in api.calls] == [
        ("txlist", "1"), ("txlist", "2"), ("txlist", "3"), ("tokentx", "1"), ("tokentx", "2"), ("tokentx", "3")]


async def test_continues_past_the_10000_row_window_from_the_last_block() -> None:
    # three rows a block: the 10,000th row is the first of block 18_003_333, whose other two fall past the cap
    rows = [tx_row(18_000_000 + i // 3, f"w{i}", ALICE, WALLET, i) for i in range(12_000)]
    boundary = 18_000_000 + 9_999 // 3
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": rows}))
        async with _es(api) as es:
            got = await es.native_transactions(WALLET, page_size=2500)
    assert [r.transfer.value for r in got] == list(range(12_000))  # each row once, in order
    assert len({r.transfer.tx_hash for r in got}) == 12_000
    assert [(c.query["startblock"], c.query["page"]) for c in api.calls] == [
        ("0", "1"), ("0", "2"), ("0", "3"), ("0", "4"), (str(boundary), "1")]
    assert all(int(c.query["page"]) * int(c.query["offset"]) <= 10_000 for c in api.calls)
    assert es.client.stats["rejected"] == 0


async def test_a_block_larger_than_the_window_raises_instead_of_looping() -> None:
    rows = [tx_row(18_500_000, f"b{i}", ALICE, WALLET, i) for i in range(10_001)]
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": rows}))
        async with _es(api) as es:
            with pytest.raises(WindowExhausted, match="block 18500000 alone fills"):
                await es.native_transactions(WALLET, page_size=5000)
    assert len(api.calls) == 4


async def test_rate_limit_answer_is_waited_out_and_counted() -> None:
    limited = notok("Max rate limit reached, please use API Key for higher rate limit")
    async with FakeApi() as api:
        api.on(PATH, limited, limited, explorer({"txlist": NATIVE_ROWS}))
        async with _es(api, backoff_s=0.1) as es:
            got = await es.native_transactions(WALLET)
        assert len(got) == len(NATIVE_ROWS)
        assert es.client.stats["rate_limited"] == 2 and es.client.stats["retries"] == 2
        gaps = [b.at - a.at for a, b in itertools.pairwise(api.calls)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # doubling backoff, never less


async def test_rate_limit_gives_up_after_attempts_and_daily_quota_at_once() -> None:
    async with FakeApi() as api:
        api.on(PATH, notok("Max calls per sec rate limit reached (5/sec)"))
        async with _es(api, attempts=2) as es:
            with pytest.raises(RateLimited, match="still rate limited after 2 attempts"):
                await es.native_transactions(WALLET)
        assert len(api.calls) == 2
        api.calls.clear()
        api.on(PATH, notok("Max daily rate limit reached. 100000/day"))
        async with _es(api) as es:
            with pytest.raises(RateLimited, match="daily quota"):
                await es.native_transactions(WALLET)
        assert len(api.calls) == 1


async def test_http_429_honours_retry_after() -> None:
    async with FakeApi() as api:
        api.on(PATH, status(429, "Too Many Requests", {"Retry-After": "1"}), explorer({"txlist": NATIVE_ROWS}))
        async with _es(api) as es:
            got = await es.native_transactions(WALLET)
        assert len(got) == len(NATIVE_ROWS)
        assert es.client.stats["rate_limited"] == 1 and es.client.stats["retries"] == 1
        assert api.calls[1].at - api.calls[0].at >= 0.99


async def test_invalid_key_raises_without_showing_the_key(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeApi() as api:
        # a server error first, so the client's retry warnings are logged too
        api.on(PATH, status(503, "busy"), notok(f"Invalid API Key (#err2)|{KEY}"))
        async with _es(api) as es:
            with pytest.raises(InvalidApiKey, match="API key was refused") as info:
                await es.native_transactions(WALLET)
            assert api.calls[-1].query["apikey"] == KEY  # sent, as the API wants, in the query
            # the fake server's own access log shows the query it received; only the client side counts
            logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "aiohttp.access")
            shown = [str(info.value), repr(info.value), info.value.url, repr(es), repr(es.config),
                     repr(es.client.config), repr(es._session), logged]
        assert "retrying" in logged
        assert not [s for s in shown if KEY in s]


async def test_other_errors_raise_clearly() -> None:
    async with FakeApi() as api:
        api.on(PATH, notok("Error! Invalid address format"))
        async with _es(api) as es:
            with pytest.raises(EtherscanRejected, match="Invalid address format") as info:
                await es.native_transactions(WALLET)
        assert not isinstance(info.value, InvalidApiKey)
    with pytest.raises(ConfigError, match="address"):
        await Etherscan(etherscan_config()).native_transactions("vitalik.eth")
    with pytest.raises(ConfigError, match="page_size"):
        await Etherscan(etherscan_config()).native_transactions(WALLET, page_size=10_001)


async def test_no_transactions_found_is_an_empty_list() -> None:
    async with FakeApi() as api:
        api.on(PATH, ok({"status": "0", "message": "No transactions found", "result": []}))
        async with _es(api) as es:
            assert await es.native_transactions(WALLET) == []
            assert await es.internal_transactions(WALLET) == []
            assert await es.token_transfers(WALLET) == []
            assert await es.nft_transfers(WALLET) == []
        assert len(api.calls) == 4 and es.client.stats["errors"] == 0


async def test_malformed_rows_are_skipped_and_counted() -> None:
    good = tx_row(17_000_000, "good", ALICE, WALLET, 5)
    bad: list[Any] = [
        "not a row",
        {k: v for k, v in good.items() if k != "hash"},
        {**good, "value": "1.5e18"},
        {**good, "value": 1e18},  # a JSON number: a float, never trusted for wei
        {**good, "value": "-5"},
        {**good, "from": "0x123"},
        {**good, "isError": ""},
        {k: v for k, v in good.items() if k != "blockNumber"},
    ]
    async with FakeApi() as api:
        api.on(PATH, ok({"status": "1", "message": "OK", "result": [bad[0], good, *bad[1:]]}))
        async with _es(api) as es:
            got = await es.native_transactions(WALLET)
    assert got == [_native(good)]
    assert es.client.stats["rejected"] == 8
    assert es.client.rejected_reasons == {"not_object:row": 1, "missing:hash": 1, "not_integer:value": 3,
                                          "bad:from": 1, "missing:isError": 1, "missing:blockNumber": 1}


async def test_backfill_merges_in_block_order_and_balances_are_exact() -> None:
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": NATIVE_ROWS, "txlistinternal": INTERNAL_ROWS, "tokentx": TOKEN_ROWS}))
        async with _es(api) as es:
            rows = await backfill_wallet(es, WALLET)
    assert [(r.block_number, r.transfer.log_index, r.transfer.token, r.transfer.value) for r in rows] == [
        (17_000_000, -1, "", 5 * ETH),
        (17_000_002, 40, SHIB, 10**30 + 7),
        (17_000_005, -1, "", 3 * ETH // 2),
        (17_000_005, -1, "", 2 * ETH),  # failed: listed, never counted
        (17_000_010, -1, "", 0),
        (17_000_010, -1, "", ETH // 4),  # internal, after the native row of the block
        (17_000_010, 9, SHIB, 4 * 10**29),
        (17_000_010, 12, USDT, 1_000_000_000),
        (17_000_012, -1, "", 3 * ETH),  # reverted internal call
        (17_000_020, -1, "", ETH // 10),
        (17_000_030, -1, "", BIG),
    ]
    assert [r.is_error for r in rows].count(True) == 2
    assert {c.query["action"] for c in api.calls} == {"txlist", "txlistinternal", "tokentx"}
    assert balances_from_history(rows, WALLET.upper().replace("0X", "0x")) == {
        "": 5 * ETH - 3 * ETH // 2 - ETH // 10 + BIG + ETH // 4,
        SHIB: 10**30 + 7 - 4 * 10**29,
        USDT: 1_000_000_000,
    }
    # the counterparty sees the mirror image of its own flows only
    assert balances_from_history(rows, BOB) == {"": 3 * ETH // 2}


def test_balances_count_self_transfers_as_zero_and_skip_failed_rows() -> None:
    me = WALLET
    rows = [HistoryRow(1, T0, ValueTransfer(_hash("a"), -1, "", me, me, 7 * ETH), False),
            HistoryRow(2, T0, ValueTransfer(_hash("b"), -1, "", ALICE, me, 2**200), True),
            HistoryRow(3, T0, ValueTransfer(_hash("c"), 0, USDT, ALICE, me, 2**64 + 3), False)]
    assert balances_from_history(rows, me) == {"": 0, USDT: 2**64 + 3}


async def test_request_rate_stays_within_calls_per_second() -> None:
    rows = [tx_row(17_200_000 + i, f"r{i}", ALICE, WALLET, i) for i in range(12)]
    async with FakeApi() as api:
        api.on(PATH, explorer({"txlist": rows, "tokentx": TOKEN_ROWS}))
        es = Etherscan(etherscan_config(base_url=api.url + PATH, api_key=KEY, calls_per_second=5))
        async with es:
            # two histories at once share the one schedule
            native, tokens = await asyncio.gather(es.native_transactions(WALLET, page_size=2),
                                                  es.token_transfers(WALLET, page_size=2))
    assert len(native) == 12 and len(tokens) == 3
    arrivals = [c.at for c in api.calls]
    assert len(arrivals) == 9  # 7 txlist pages (the 7th empty) + 2 tokentx pages
    busiest = max(sum(1 for t in arrivals if a <= t < a + 1.0) for a in arrivals)
    assert busiest <= 5
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.2


def test_config_keeps_the_key_out_of_sight_and_splits_the_endpoint() -> None:
    cfg = etherscan_config(api_key=KEY)
    assert (cfg.base_url, cfg.path, cfg.chain_id, cfg.name) == ("https://api.etherscan.io", "/v2/api", 1, "etherscan")
    assert cfg.min_interval_s == pytest.approx(1.05 / 5) and cfg.cache_ttl_s == 0
    assert KEY not in repr(cfg) and cfg.query_api_key == KEY
    assert etherscan_config("https://api.bscscan.com/api", chain_id=None, calls_per_second=10).chain_id is None
    with pytest.raises(ConfigError, match="api_key"):
        etherscan_config(f"https://api.etherscan.io/v2/api?apikey={KEY}")
    with pytest.raises(ConfigError, match="calls_per_second"):
        etherscan_config(calls_per_second=0)


async def test_v1_style_explorer_gets_no_chainid() -> None:
    async with FakeApi() as api:
        api.on("/api", explorer({"txlist": NATIVE_ROWS[:1]}))
        async with Etherscan(etherscan_config(api.url + "/api", chain_id=None, min_interval_s=0)) as es:
            assert len(await es.native_transactions(WALLET)) == 1
        assert "chainid" not in api.calls[0].query and "apikey" not in api.calls[0].query
