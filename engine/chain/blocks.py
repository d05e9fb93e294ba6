"""One canonical block as the follower hands it on: its header, value transfers and DEX swaps.

Built from the raw ``eth_getBlockByNumber`` (full transactions) result and the block's raw logs.
Transfers: native coin moved by a successful transaction (value > 0; ``failed`` names the reverted
ones, from their receipts' status), ERC-20/721 ``Transfer`` logs decoded exactly as ethereum-etl does, and WETH
``Deposit``/``Withdrawal`` as mint/burn of WETH (WETH9 emits no Transfer for them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from engine.chain.decode import (
    address,
    decode_event,
    decode_log,
    hex_data,
    quantity,
    token_transfer_from_log,
)
from engine.chain.errors import ChainDataError
from schemas.records import NATIVE, ChainBlock, ValueTransfer

ZERO = "0x" + "0" * 40


@dataclass
class BlockData:
    header: ChainBlock
    transfers: list[ValueTransfer] = field(default_factory=list)
    swaps: list[dict] = field(default_factory=list)  # decoded Uniswap V2/V3 Swap events
    trades: list = field(default_factory=list)  # swaps priced as trade ticks (when token metadata is known)


def header_of(raw: Mapping[str, Any]) -> ChainBlock:
    """The :class:`ChainBlock` of a raw block (full or hash-only transactions); the chain id is left unknown."""
    if not isinstance(raw, Mapping):
        raise ChainDataError(f"block: expected an object, got {type(raw).__name__}")
    try:
        number = quantity(raw["number"], "block.number")
        block_hash = hex_data(raw["hash"], "block.hash", 32)
        parent = hex_data(raw["parentHash"], "block.parentHash", 32)
        timestamp = quantity(raw["timestamp"], "block.timestamp")
    except KeyError as e:
        raise ChainDataError(f"block: missing field {e}") from None
    txs = raw.get("transactions")
    if not isinstance(txs, list):
        raise ChainDataError(f"block {number}: transactions is not a list")
    return ChainBlock(number=number, hash=block_hash, parent_hash=parent, timestamp=timestamp,
                      transaction_count=len(txs))


def block_data(raw: Mapping[str, Any], logs: list, failed: set[str] | frozenset = frozenset()) -> BlockData:
    """Header, transfers and swaps of one block; raises ChainDataError on anything malformed."""
    header = header_of(raw)
    txs = raw["transactions"]
    out = BlockData(header)
    for i, tx in enumerate(txs):
        if not isinstance(tx, Mapping):
            raise ChainDataError(f"block {header.number}: transaction {i} is not an object (ask for full transactions)")
        value = quantity(tx.get("value"), f"block {header.number} tx {i}.value")
        to = tx.get("to")
        if value and to and tx.get("hash") not in failed:  # a reverted transaction moved nothing
            out.transfers.append(ValueTransfer(hex_data(tx.get("hash"), "tx.hash", 32), -1, NATIVE,
                                          address(tx.get("from"), "tx.from"), address(to, "tx.to"), value))
    if not isinstance(logs, list):
        raise ChainDataError(f"block {header.number}: logs is not a list")
    for entry in sorted(logs, key=lambda e: quantity(e.get("logIndex"), "log.logIndex") if isinstance(e, Mapping) else -1):
        if not isinstance(entry, Mapping):
            raise ChainDataError(f"block {header.number}: a log is not an object")
        if entry.get("removed"):
            continue  # the node says this log left the canonical chain
        row = decode_log(entry, header.timestamp)
        if row["block_hash"] != header.hash:
            continue  # a log of another block at this height (the node switched chains in between)
        t = token_transfer_from_log(row)
        if t is not None:
            out.transfers.append(ValueTransfer(t["transaction_hash"], t["log_index"], t["token_address"],
                                          t["from_address"], t["to_address"], t["value"]))
            continue
        ev = decode_event(row)
        if ev is None:
            continue
        if ev["event"] == "weth_deposit":
            out.transfers.append(ValueTransfer(ev["transaction_hash"], ev["log_index"], ev["contract_address"], ZERO,
                                          ev["address"], ev["amount"]))
        elif ev["event"] == "weth_withdrawal":
            out.transfers.append(ValueTransfer(ev["transaction_hash"], ev["log_index"], ev["contract_address"],
                                          ev["address"], ZERO, ev["amount"]))
        elif ev["event"].startswith("uniswap"):
            out.swaps.append(ev)
    return out
