"""The read queries against the real server: ordering, filters, limits, exact ns and uint256 round
trips, case-insensitive addresses, and user input that looks like SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa
import pytest

from connectors.storage import rows
from connectors.storage.pg_writer import PgWriter
from connectors.storage.queries import MAX_LIMIT, Queries, QueryError
from connectors.storage.tables import table
from schemas.records import Signal, StructureEvent
from tests.storage.pg_fixtures import pg_db, pg_migrated, pg_url  # noqa: F401 - fixtures
from tests.storage.sample_rows import real_candles

T0 = 1_704_067_200_000_000_000  # 2024-01-01
MINUTE = 60_000_000_000
LATE_NS = 9_223_372_036_854_775_000  # the last whole µs an int64 ns holds (2262): a float would round it
CHAIN = "ethereum"
ALICE = "0x" + "ab" * 20
BOB = "0x" + "cd" * 20
TOKEN = "0x" + "11" * 20
EVIL = "x'; DROP TABLE candles; --"


async def _write(url: str, spill: Path, *batches: tuple[str, pa.Table]) -> None:
    w = await PgWriter(url, spill).start()
    for name, data in batches:
        w.write(name, data)
    await w.flush(timeout_s=120)
    await w.close()
    assert w.counters["batches_rejected"] == 0, w.last_error


@asynccontextmanager
async def _queries(url: str) -> AsyncIterator[Queries]:
    q = await Queries.create(url)
    try:
        yield q
    finally:
        await q.close()


def _signal(i: int, **kw) -> Signal:
    base = dict(id=f"sig-{i}", market="BINANCE:BTCUSDT", timeframe="1m", ts=T0 + i * MINUTE, kind="trend",
                side="buy", strength=0.5, price=42000.5 + i, stop=41000.0, target=43000.0, targets=[43000.0, 44000.0],
                reasons=["ema_20 > ema_50", "rsi_14 in (50, 70): 61.2 — ünïcode"], source_versions={"rules": "trend@3"},
                risk_score=37.5, risk={"vol_cc": 0.012, "score": 37.5}, flags=[])
    return Signal(**{**base, **kw})


def _transfers(items: list[tuple[int, str, str, int]]) -> pa.Table:
    """(block offset, from, to, value) as ``token_transfers`` rows, one log each."""
    n = len(items)
    return pa.table({"chain": [CHAIN] * n, "block_hash": [f"0x{b:064x}" for b, *_ in items],
                     "log_index": pa.array(range(n), pa.int32()), "block_number": [19_000_000 + b for b, *_ in items],
                     "block_ts": [T0 + b * 12_000_000_000 for b, *_ in items], "tx_hash": ["0x" + "ef" * 32] * n,
                     "token_address": [TOKEN] * n, "from_address": [f for _, f, _, _ in items],
                     "to_address": [t for _, _, t, _ in items], "value": [str(v) for *_, v in items]},
                    schema=table("token_transfers").arrow_schema)


def _alerts(items: list[tuple[str, int, str, str | None, str | None]]) -> pa.Table:
    """(id, ts, kind, chain, address) as ``alerts`` rows."""
    return pa.table({"id": [i for i, *_ in items], "ts": [t for _, t, *_ in items],
                     "kind": [k for _, _, k, _, _ in items],
                     "severity": ["warn"] * len(items), "chain": [c for *_, c, _ in items],
                     "market": [None] * len(items), "address": [a for *_, a in items],
                     "message": [f"alert {i}" for i, *_ in items],
                     "payload": ['{"amount": 12.5, "tags": ["whale"]}'] * len(items)},
                    schema=table("alerts").arrow_schema)


async def test_latest_candles_are_newest_first_with_exact_times_and_values(pg_migrated: str, tmp_path: Path) -> None:
    candles = real_candles()
    await _write(pg_migrated, tmp_path, ("candles", rows.candles(candles)))
    market = candles.markets[0]
    mine = np.flatnonzero(candles.market == 0)
    order = mine[np.argsort(-candles.open_ts[mine], kind="stable")]
    async with _queries(pg_migrated) as q:
        got = await q.latest_candles(market, "5m")
        assert len(got) == 500 and len(order) > 500
        assert [r["open_ts"] for r in got] == candles.open_ts[order[:500]].tolist()
        first = got[0]
        i = order[0]
        assert first["market"] == market and first["timeframe"] == "5m" and first["gap"] is False
        assert first["close_ts"] == int(candles.open_ts[i]) + 300_000_000_000
        for f in ("open", "high", "low", "close", "volume", "vwap"):
            assert first[f] == float(getattr(candles, f)[i])
        assert first["trade_count"] == int(candles.trade_count[i])
        assert set(first) == set(table("candles").names)

        t = int(candles.open_ts[order[10]])
        before = await q.latest_candles(market, "5m", limit=3, before_ns=t)
        assert [r["open_ts"] for r in before] == candles.open_ts[order[11:14]].tolist()
        # a bound that is not a whole µs still splits exactly at the nanosecond
        assert (await q.latest_candles(market, "5m", limit=1, before_ns=t + 1))[0]["open_ts"] == t
        assert (await q.latest_candles(market, "5m", limit=1, before_ns=t - 1))[0]["open_ts"] < t

        assert len(await q.latest_candles(market, "5m", limit=10**9)) == min(len(mine), MAX_LIMIT)
        assert await q.latest_candles(market, "1m") == []
        assert await q.latest_candles("BINANCE:NOPE", "5m") == []


async def test_signals_since_are_oldest_first_with_decoded_json_and_exact_ns(pg_migrated: str, tmp_path: Path) -> None:
    sigs = [_signal(i) for i in range(5)]
    sigs += [_signal(5, market="BINANCE:ETHUSDT", ts=T0 + 2 * MINUTE + 1_234_567_000, flags=["risk_limit"],
                     stop=None, target=None, targets=[], risk_score=None, risk={}, side="sell")]
    await _write(pg_migrated, tmp_path, ("signals", rows.signals(reversed(sigs))))
    # inserted directly: a batch spanning 2024..2262 would make the writer add a partition per month
    conn = await asyncpg.connect(pg_migrated)
    try:
        await conn.execute("INSERT INTO signals (id, market, timeframe, ts, kind, side, strength, price, reasons, "
                           "source_versions) VALUES ('sig-6', 'BINANCE:ETHUSDT', '1m', "
                           "'2262-04-11 23:47:16.854775+00', 'trend', 'buy', 0.5, 1.0, '{}', '{}')")
    finally:
        await conn.close()
    async with _queries(pg_migrated) as q:
        got = await q.signals_since(T0 + 2 * MINUTE)
        assert [r["id"] for r in got] == ["sig-2", "sig-5", "sig-3", "sig-4", "sig-6"]
        assert got[1]["ts"] == T0 + 2 * MINUTE + 1_234_567_000 and got[-1]["ts"] == LATE_NS
        s2, s5 = got[0], got[1]
        assert s2["reasons"] == sigs[2].reasons and s2["targets"] == [43000.0, 44000.0] and s2["flags"] == []
        assert s2["source_versions"] == {"rules": "trend@3"} and s2["risk"] == {"score": 37.5, "vol_cc": 0.012}
        assert s2["side"] == "buy" and s2["strength"] == 0.5 and s2["price"] == 42002.5
        assert s5["flags"] == ["risk_limit"] and s5["stop"] is None and s5["risk"] == {} and s5["targets"] == []
        assert set(s2) == set(table("signals").names)

        assert [r["id"] for r in await q.signals_since(T0, market="BINANCE:ETHUSDT")] == ["sig-5", "sig-6"]
        assert [r["id"] for r in await q.signals_since(T0, limit=2)] == ["sig-0", "sig-1"]
        # since is inclusive to the nanosecond, also between whole µs
        assert (await q.signals_since(T0 + 2 * MINUTE + 1_234_567_000, limit=1))[0]["id"] == "sig-5"
        assert (await q.signals_since(T0 + 2 * MINUTE + 1_234_567_001, limit=1))[0]["id"] == "sig-3"
        assert await q.signals_since(LATE_NS + 1) == []


async def test_structure_events_filter_by_timeframe_kind_and_time(pg_migrated: str, tmp_path: Path) -> None:
    kinds = ["swing_high", "bos_bullish", "ob_bullish"]
    events = [StructureEvent(id=f"ev{i}", market="BINANCE:BTCUSDT", timeframe="5m" if i % 2 else "1h",
                             kind=kinds[i % 3], ts=T0 + i * MINUTE, confirmed_ts=T0 + (i + 1) * MINUTE,
                             price=42000.0 + i, meta={"level": 41999.5 + i}) for i in range(9)]
    events.append(StructureEvent(id="other", market="BINANCE:ETHUSDT", timeframe="5m", kind="swing_high", ts=T0,
                                 confirmed_ts=T0 + MINUTE, price=2000.0))
    await _write(pg_migrated, tmp_path, ("structure_events", rows.structure_events(events)))
    async with _queries(pg_migrated) as q:
        every = await q.structure_events("BINANCE:BTCUSDT")
        assert [r["id"] for r in every] == [f"ev{i}" for i in range(9)]
        assert every[4]["meta"] == {"level": 42003.5} and every[4]["confirmed_ts"] == T0 + 5 * MINUTE
        assert every[4]["ts"] == T0 + 4 * MINUTE and every[4]["kind"] == "bos_bullish"
        assert [r["id"] for r in await q.structure_events("BINANCE:BTCUSDT", limit=2)] == ["ev7", "ev8"]
        assert [r["id"] for r in await q.structure_events("BINANCE:BTCUSDT", since_ns=T0 + 3 * MINUTE, limit=2)] \
            == ["ev2", "ev3"]
        assert [r["id"] for r in await q.structure_events("BINANCE:BTCUSDT", timeframe="5m")] == ["ev1", "ev3", "ev5",
                                                                                                   "ev7"]
        got = await q.structure_events("BINANCE:BTCUSDT", timeframe="1h", kinds=["swing_high", "ob_bullish"])
        assert [r["id"] for r in got] == ["ev0", "ev2", "ev6", "ev8"]
        assert await q.structure_events("BINANCE:BTCUSDT", kinds=[]) == []
        assert [r["id"] for r in await q.structure_events("BINANCE:ETHUSDT")] == ["other"]


async def test_wallet_and_its_transfers(pg_migrated: str, tmp_path: Path) -> None:
    big = 2**256 - 1
    transfers = _transfers([(0, ALICE, BOB, 1), (1, BOB, ALICE, big), (2, ALICE, ALICE, 10**30),
                            (3, BOB, "0x" + "99" * 20, 5), (4, ALICE, BOB, 0)])
    balances = pa.table({"chain": [CHAIN] * 4, "address": [ALICE] * 4, "token_address": ["", "", TOKEN, TOKEN],
                         "block_number": [19_000_000, 19_000_004, 19_000_001, 19_000_002],
                         "balance": ["7", "8", str(big), "3"]}, schema=table("wallet_balances").arrow_schema)
    await _write(pg_migrated, tmp_path, ("token_transfers", transfers), ("wallet_balances", balances))
    conn = await asyncpg.connect(pg_migrated)
    try:
        await conn.execute("INSERT INTO wallets VALUES ($1, $2, '2024-01-01 00:00:00.000001+00', "
                           "'2024-01-01 00:00:48+00')", CHAIN, ALICE)
        await conn.execute("INSERT INTO wallet_labels (chain, address, label, source) VALUES "
                           "($1, $2, 'whale', 'heuristic'), ($1, $2, 'exchange', 'user'), ($1, $3, 'mev', 'user')",
                           CHAIN, ALICE, "0x" + "77" * 20)
    finally:
        await conn.close()
    async with _queries(pg_migrated) as q:
        w = await q.wallet(CHAIN, ALICE.upper().replace("0X", "0x"))
        assert w is not None and w["address"] == ALICE and w["chain"] == CHAIN
        assert w["first_seen"] == T0 + 1_000 and w["last_seen"] == T0 + 48_000_000_000
        assert [(r["label"], r["source"]) for r in w["labels"]] == [("exchange", "user"), ("whale", "heuristic")]
        assert all(isinstance(r["created_at"], int) for r in w["labels"])
        assert w["balances"] == [{"token_address": "", "block_number": 19_000_004, "balance": 8},
                                 {"token_address": TOKEN, "block_number": 19_000_002, "balance": 3}]
        assert (await q.wallet(CHAIN, "0x" + "77" * 20))["labels"][0]["label"] == "mev"  # labelled, never seen
        assert await q.wallet(CHAIN, "0x" + "00" * 20) is None
        assert await q.wallet("polygon", ALICE) is None

        both = await q.transfers_by_wallet(CHAIN, "0X" + ALICE[2:].upper())
        assert [r["block_number"] - 19_000_000 for r in both] == [4, 2, 1, 0]  # the self-transfer once
        assert both[2]["value"] == big and type(both[2]["value"]) is int and both[1]["value"] == 10**30
        assert both[0]["block_ts"] == T0 + 4 * 12_000_000_000 and set(both[0]) == set(table("token_transfers").names)
        assert [r["value"] for r in await q.transfers_by_wallet(CHAIN, ALICE, direction="in")] == [10**30, big]
        assert [r["value"] for r in await q.transfers_by_wallet(CHAIN, ALICE, direction="out")] == [0, 10**30, 1]
        since = await q.transfers_by_wallet(CHAIN, ALICE, since_ns=T0 + 12_000_000_000)
        assert [r["block_number"] - 19_000_000 for r in since] == [4, 2, 1]
        assert len(await q.transfers_by_wallet(CHAIN, ALICE, limit=1)) == 1
        assert await q.transfers_by_wallet("polygon", ALICE) == []


async def test_alerts_filter_by_kind_chain_address_and_time(pg_migrated: str, tmp_path: Path) -> None:
    await _write(pg_migrated, tmp_path, ("alerts", _alerts([
        ("a0", T0, "whale_transfer", CHAIN, ALICE), ("a1", T0 + MINUTE, "whale_transfer", CHAIN, BOB),
        ("a2", T0 + 2 * MINUTE, "volume_spike", None, None),
        ("a3", T0 + 3 * MINUTE, "whale_transfer", "polygon", ALICE),
        ("a4", T0 + 4 * MINUTE + 5_000, "new_label", CHAIN, ALICE)])))
    async with _queries(pg_migrated) as q:
        every = await q.alerts()
        assert [r["id"] for r in every] == ["a0", "a1", "a2", "a3", "a4"]
        assert every[0]["payload"] == {"amount": 12.5, "tags": ["whale"]} and every[4]["ts"] == T0 + 4 * MINUTE + 5_000
        assert every[2]["chain"] is None and every[0]["severity"] == "warn"
        assert set(every[0]) == set(table("alerts").names)
        assert [r["id"] for r in await q.alerts(limit=2)] == ["a3", "a4"]
        assert [r["id"] for r in await q.alerts(since_ns=T0 + 1, limit=2)] == ["a1", "a2"]
        assert [r["id"] for r in await q.alerts(kind="whale_transfer")] == ["a0", "a1", "a3"]
        assert [r["id"] for r in await q.alerts(chain=CHAIN, address=ALICE.upper().replace("0X", "0x"))] == ["a0", "a4"]
        assert [r["id"] for r in await q.alerts(kind="whale_transfer", chain="polygon")] == ["a3"]
        assert await q.alerts(kind="nope") == []


async def test_input_that_looks_like_sql_is_only_data(pg_migrated: str, tmp_path: Path) -> None:
    await _write(pg_migrated, tmp_path, ("candles", rows.candles(real_candles().take(slice(0, 50)))),
                 ("alerts", _alerts([("a0", T0, "whale_transfer", CHAIN, ALICE)])))
    async with _queries(pg_migrated) as q:
        assert await q.latest_candles(EVIL, "5m") == []
        assert await q.latest_candles("BINANCE:ADA_BTC#0", "5m' OR '1'='1") == []
        assert await q.signals_since(0, market=EVIL) == []
        assert await q.structure_events(EVIL, timeframe=EVIL, kinds=[EVIL, "') OR true --"]) == []
        assert await q.wallet(CHAIN, "0x' OR '1'='1") is None
        assert await q.transfers_by_wallet(EVIL, "' OR 1=1; DELETE FROM alerts; --") == []
        assert await q.alerts(kind=EVIL, chain=EVIL, address=EVIL) == []
        assert len(await q.latest_candles("BINANCE:ADA_BTC#0", "5m")) == 50  # the table is still there
        assert len(await q.alerts()) == 1


@pytest.mark.parametrize("limit", [0, -1, "10", 2.5, True, None])
async def test_bad_limits_are_refused_before_any_query(limit) -> None:
    q = Queries(pool=None)  # type: ignore[arg-type] - argument checks happen before the pool is used
    with pytest.raises(QueryError, match="limit"):
        await q.latest_candles("BINANCE:BTCUSDT", "5m", limit=limit)
    with pytest.raises(ValueError, match="limit"):
        await q.alerts(limit=limit)


async def test_bad_times_directions_and_arguments_are_refused() -> None:
    q = Queries(pool=None)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="since_ns"):
        await q.signals_since(1.5e18)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="since_ns is required"):
        await q.signals_since(None)  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="int64"):
        await q.latest_candles("BINANCE:BTCUSDT", "5m", before_ns=2**63)
    with pytest.raises(QueryError, match="direction"):
        await q.transfers_by_wallet(CHAIN, ALICE, direction="sideways")
    with pytest.raises(QueryError, match="kinds"):
        await q.structure_events("BINANCE:BTCUSDT", kinds="swing_high")  # type: ignore[arg-type]
    with pytest.raises(QueryError, match="address"):
        await q.alerts(address=123)  # type: ignore[arg-type]


def test_queries_run_concurrently_on_the_pool(pg_migrated: str) -> None:
    async def main() -> list[list[dict]]:
        async with _queries(pg_migrated) as q:
            return await asyncio.gather(*(q.latest_candles(f"M{i}", "5m") for i in range(8)))
    assert asyncio.run(main()) == [[]] * 8
