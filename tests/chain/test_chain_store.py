"""On-chain rows in Postgres: a block's transfers, alerts and wallets stored; an orphaned block's
transfers and alerts removed; the bundled labels copied into wallet_labels once."""

from __future__ import annotations

import asyncio

import asyncpg

from connectors.storage.chain_store import ChainStore
from connectors.storage.migrate import migrate
from engine.wallets.labels import LabelSet
from schemas.records import ChainAlert, ChainBlock, ValueTransfer
from tests.storage.pg_fixtures import pg_db, pg_url  # noqa: F401 - fixtures


async def _scenario(db: str) -> dict:
    await migrate(db)
    store = await ChainStore(db).start()
    try:
        keep = ChainBlock(number=10, hash="0x" + "aa" * 32, parent_hash="0x" + "99" * 32, timestamp=1_700_000_000,
                          transaction_count=1)
        gone = ChainBlock(number=11, hash="0x" + "bb" * 32, parent_hash=keep.hash, timestamp=1_700_000_012,
                          transaction_count=1)
        big = 2**255 + 12345  # exact uint256 all the way into numeric(78, 0)
        t1 = ValueTransfer("0x" + "01" * 32, 0, "0x" + "11" * 20, "0x" + "22" * 20, "0x" + "33" * 20, big)
        t2 = ValueTransfer("0x" + "02" * 32, -1, "", "0x" + "33" * 20, "0x" + "44" * 20, 5)
        alert = ChainAlert(id="gone-1", chain="ethereum", kind="whale_transfer", ts=gone.timestamp * 10**9,
                           block_number=11, block_hash=gone.hash, address="0x" + "33" * 20, amount="5")
        await store.block("ethereum", keep, [t1], [])
        await store.block("ethereum", gone, [t2], [alert])
        await store.retract("ethereum", [gone], [alert.model_copy(update={"retracted": True})])
        added = await store.load_labels("ethereum", LabelSet.load())
        again = await store.load_labels("ethereum", LabelSet.load())
        conn = await asyncpg.connect(db)
        try:
            return {"transfers": [(r["block_hash"], r["value"]) for r in await conn.fetch(
                        "SELECT block_hash, value FROM token_transfers")],
                    "alerts": await conn.fetchval("SELECT count(*) FROM alerts"),
                    "wallets": await conn.fetchval("SELECT count(*) FROM wallets"),
                    "labels": added, "again": again,
                    "binance": await conn.fetchval("SELECT label FROM wallet_labels WHERE address = "
                                                   "'0x3f5ce5fbfe3e9af3971dd833d26ba9b5c936f0be' AND label LIKE "
                                                   "'exchange:%'")}
        finally:
            await conn.close()
    finally:
        await store.close()


def test_block_rows_retraction_and_labels(pg_db: str) -> None:  # noqa: F811
    out = asyncio.run(_scenario(pg_db))
    assert out["transfers"] == [("0x" + "aa" * 32, 2**255 + 12345)]  # the orphaned block's transfer is gone
    assert out["alerts"] == 0 and out["wallets"] == 3
    assert out["labels"] == len(list(LabelSet.load())) > 8000 and out["again"] == 0
    assert out["binance"].startswith("exchange:Binance")
