"""Pure decoding of Ethereum JSON-RPC answers into ethereum-etl rows, and of common event logs.

Every function takes the JSON a node returns (dicts of hex strings) or a row built from it and
returns plain dicts named and formatted like ethereum-etl's exports: quantities become exact Python
ints (uint256 never goes through float), hashes and data stay the node's hex strings, addresses are
lower-cased. Anything malformed (a missing field, a wrong type, bad or truncated hex, a number over
256 bits) raises :class:`ChainDataError` saying which field of what was wrong.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from engine.chain.errors import ChainDataError
from schemas.records import ChainBlock, TokenTransfer

# keccak256 of the event signatures; tests/chain/test_decode.py recomputes each one
# Transfer(address,address,uint256)
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
# Deposit(address,uint256), Withdrawal(address,uint256)
WETH_DEPOSIT_TOPIC = "0xe1fffcc4923d04b559f4d29a8bfc6cda04eb5b0d3c460751c2402c5c5cc9109c"
WETH_WITHDRAWAL_TOPIC = "0x7fcf532c15f0a6db0bd6d0e038bea71d30d808c7d98cb3bf7268a95bf5081b65"
# Swap(address,uint256,uint256,uint256,uint256,address)
UNISWAP_V2_SWAP_TOPIC = "0xd78ad95fa46c994b6551d0da85fc275fe613ce37657fb8d5e3d130840159d822"
# Swap(address,address,int256,int256,uint160,uint128,int24)
UNISWAP_V3_SWAP_TOPIC = "0xc42079f94a6350d7e6235f29174924f928cc2ac818eb64fed8004e115fbcca67"

UINT256_MAX = 2**256 - 1
_QUANTITY = re.compile(r"0x[0-9a-fA-F]{1,64}")  # at most 64 digits: anything longer is over 256 bits
_DATA = re.compile(r"0x(?:[0-9a-fA-F]{2})*")
_MISSING = object()


# ---------------------------------------------------------------------------------------------- fields

def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(obj: Mapping[str, Any], key: str, where: str, required: bool) -> Any:
    if not isinstance(obj, Mapping):
        raise ChainDataError(f"{where}: expected a JSON object, got {type(obj).__name__} {_show(obj)}")
    value = obj.get(key, _MISSING)
    if value is _MISSING or value is None:
        if required:
            raise ChainDataError(f"{where}: missing field {key!r}")
        return None
    return value


def quantity(value: Any, where: str = "value") -> int:
    """An exact int from a JSON-RPC hex quantity such as ``"0x1ac9f3"`` (at most 256 bits)."""
    # bool is an int subclass and JSON numbers are not quantities: both mean a broken node or proxy
    if not isinstance(value, str) or not _QUANTITY.fullmatch(value):
        raise ChainDataError(f"{where}: expected a hex quantity such as '0x1a' (at most 256 bits), got {_show(value)}")
    return int(value, 16)


def hex_data(value: Any, where: str = "value", nbytes: int | None = None) -> str:
    """A ``0x``-prefixed hex byte string, unchanged; exactly ``nbytes`` long when given."""
    if not isinstance(value, str) or not _DATA.fullmatch(value):
        raise ChainDataError(f"{where}: expected 0x-prefixed hex bytes, got {_show(value)}")
    if nbytes is not None and len(value) != 2 + 2 * nbytes:
        raise ChainDataError(f"{where}: expected {nbytes} bytes, got {(len(value) - 2) // 2}: {_show(value)}")
    return value


def address(value: Any, where: str = "address") -> str:
    """A 20-byte address, lower-cased as ethereum-etl writes them."""
    return hex_data(value, where, 20).lower()


def _q(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> int | None:
    value = _field(obj, key, where, required)
    return None if value is None else quantity(value, f"{where}.{key}")


def _h(obj: Mapping[str, Any], key: str, where: str, required: bool = True, nbytes: int | None = 32) -> str | None:
    value = _field(obj, key, where, required)
    return None if value is None else hex_data(value, f"{where}.{key}", nbytes)


def _a(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> str | None:
    value = _field(obj, key, where, required)
    return None if value is None else address(value, f"{where}.{key}")


def _list(obj: Mapping[str, Any], key: str, where: str, required: bool = True) -> list | None:
    value = _field(obj, key, where, required)
    if value is not None and not isinstance(value, list):
        raise ChainDataError(f"{where}.{key}: expected a JSON array, got {type(value).__name__} {_show(value)}")
    return value


# ---------------------------------------------------------------------------------------------- blocks

def decode_block(block: Mapping[str, Any]) -> dict[str, Any]:
    """The ethereum-etl block row of an ``eth_getBlockByNumber`` result (transactions as hashes or objects).

    Fields a node may leave out (``totalDifficulty`` after geth 1.14, ``baseFeePerGas`` before London,
    the withdrawal and blob fields before Shanghai/Cancun) become None, ``withdrawals`` an empty list.
    ``blob_gas_used`` and ``excess_blob_gas`` are extra keys, not in the export's columns.
    """
    where = "block"
    number = _q(block, "number", where)
    where = f"block {number}"
    txs = _list(block, "transactions", where)
    withdrawals = _list(block, "withdrawals", where, required=False)
    return {
        "number": number,
        "hash": _h(block, "hash", where),
        "parent_hash": _h(block, "parentHash", where),
        "nonce": _h(block, "nonce", where, False, None),
        "sha3_uncles": _h(block, "sha3Uncles", where, False),
        "logs_bloom": _h(block, "logsBloom", where, False, None),
        "transactions_root": _h(block, "transactionsRoot", where, False),
        "state_root": _h(block, "stateRoot", where, False),
        "receipts_root": _h(block, "receiptsRoot", where, False),
        "miner": _a(block, "miner", where, False),
        "difficulty": _q(block, "difficulty", where, False),
        "total_difficulty": _q(block, "totalDifficulty", where, False),
        "size": _q(block, "size", where, False),
        "extra_data": _h(block, "extraData", where, False, None),
        "gas_limit": _q(block, "gasLimit", where, False),
        "gas_used": _q(block, "gasUsed", where, False),
        "timestamp": _q(block, "timestamp", where),
        "transaction_count": len(txs),
        "base_fee_per_gas": _q(block, "baseFeePerGas", where, False),
        "withdrawals_root": _h(block, "withdrawalsRoot", where, False),
        "withdrawals": [decode_withdrawal(w, f"{where}.withdrawals[{i}]") for i, w in enumerate(withdrawals or [])],
        "blob_gas_used": _q(block, "blobGasUsed", where, False),
        "excess_blob_gas": _q(block, "excessBlobGas", where, False),
    }


def decode_withdrawal(w: Mapping[str, Any], where: str = "withdrawal") -> dict[str, Any]:
    """One beacon-chain withdrawal of a block: index, validator_index, address, amount (gwei)."""
    return {"index": _q(w, "index", where), "validator_index": _q(w, "validatorIndex", where),
            "address": _a(w, "address", where), "amount": _q(w, "amount", where)}


def block_transaction_hashes(block: Mapping[str, Any]) -> list[str]:
    """The transaction hashes of a block, whether it came with full transactions or hashes only."""
    txs = _list(block, "transactions", "block") or []
    return [hex_data(t, f"block.transactions[{i}]", 32) if isinstance(t, str)
            else _h(t, "hash", f"block.transactions[{i}]") for i, t in enumerate(txs)]


# ---------------------------------------------------------------------------------------------- transactions

def decode_transaction(tx: Mapping[str, Any], block_timestamp: int | None = None) -> dict[str, Any]:
    """The ethereum-etl transaction row of one full transaction object of a block.

    ``max_fee_per_blob_gas`` and ``blob_versioned_hashes`` are extra keys, not in the export's columns.
    """
    where = "transaction"
    tx_hash = _h(tx, "hash", where)
    where = f"transaction {tx_hash}"
    blob_hashes = _list(tx, "blobVersionedHashes", where, required=False)
    return {
        "hash": tx_hash,
        "nonce": _q(tx, "nonce", where),
        "block_hash": _h(tx, "blockHash", where),
        "block_number": _q(tx, "blockNumber", where),
        "transaction_index": _q(tx, "transactionIndex", where),
        "from_address": _a(tx, "from", where),
        "to_address": _a(tx, "to", where, False),  # None: contract creation
        "value": _q(tx, "value", where),
        "gas": _q(tx, "gas", where),
        "gas_price": _q(tx, "gasPrice", where, False),
        "input": _h(tx, "input", where, True, None),
        "block_timestamp": block_timestamp,
        "max_fee_per_gas": _q(tx, "maxFeePerGas", where, False),
        "max_priority_fee_per_gas": _q(tx, "maxPriorityFeePerGas", where, False),
        "transaction_type": _q(tx, "type", where, False),
        "max_fee_per_blob_gas": _q(tx, "maxFeePerBlobGas", where, False),
        "blob_versioned_hashes": [hex_data(h, f"{where}.blobVersionedHashes", 32) for h in blob_hashes or []],
    }


def decode_block_transactions(block: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Transaction rows of a block fetched with full transactions, checked to belong to that block."""
    row = decode_block(block)
    out = []
    for i, tx in enumerate(block["transactions"]):
        if not isinstance(tx, Mapping):
            raise ChainDataError(f"block {row['number']}: transactions[{i}] is {_show(tx)}, not an object "
                                 "(fetch the block with full transactions)")
        t = decode_transaction(tx, row["timestamp"])
        if t["block_number"] != row["number"] or t["block_hash"].lower() != row["hash"].lower():
            raise ChainDataError(f"block {row['number']}: transaction {t['hash']} says it is in block "
                                 f"{t['block_number']} {t['block_hash']}")
        out.append(t)
    return out


# ---------------------------------------------------------------------------------------------- receipts, logs

def decode_receipt(receipt: Mapping[str, Any]) -> dict[str, Any]:
    """The ethereum-etl receipt row of an ``eth_getTransactionReceipt`` result (logs: :func:`decode_receipt_logs`)."""
    where = "receipt"
    tx_hash = _h(receipt, "transactionHash", where)
    where = f"receipt of {tx_hash}"
    _list(receipt, "logs", where)
    scalar = _field(receipt, "l1FeeScalar", where, False)
    if scalar is not None:
        # an OP-stack decimal string such as "0.684"; a ratio, not an amount, so float is what ethereum-etl writes
        try:
            value = float(scalar) if not isinstance(scalar, bool) else None
        except (TypeError, ValueError):
            value = None
        if value is None or not math.isfinite(value):
            raise ChainDataError(f"{where}.l1FeeScalar: expected a decimal number, got {_show(scalar)}")
        scalar = value
    return {
        "transaction_hash": tx_hash,
        "transaction_index": _q(receipt, "transactionIndex", where),
        "block_hash": _h(receipt, "blockHash", where),
        "block_number": _q(receipt, "blockNumber", where),
        "cumulative_gas_used": _q(receipt, "cumulativeGasUsed", where),
        "gas_used": _q(receipt, "gasUsed", where),
        "contract_address": _a(receipt, "contractAddress", where, False),
        "root": _h(receipt, "root", where, False),  # pre-Byzantium state root, else None
        "status": _q(receipt, "status", where, False),  # None before Byzantium
        "effective_gas_price": _q(receipt, "effectiveGasPrice", where, False),
        "l1_fee": _q(receipt, "l1Fee", where, False),
        "l1_gas_used": _q(receipt, "l1GasUsed", where, False),
        "l1_gas_price": _q(receipt, "l1GasPrice", where, False),
        "l1_fee_scalar": scalar,
        "blob_gas_price": _q(receipt, "blobGasPrice", where, False),
        "blob_gas_used": _q(receipt, "blobGasUsed", where, False),
    }


def decode_log(log: Mapping[str, Any], block_timestamp: int | None = None) -> dict[str, Any]:
    """The ethereum-etl log row of one log of a receipt or of ``eth_getLogs`` (plus ``block_timestamp``)."""
    where = "log"
    topics = _list(log, "topics", where)
    return {
        "log_index": _q(log, "logIndex", where),
        "transaction_hash": _h(log, "transactionHash", where),
        "transaction_index": _q(log, "transactionIndex", where),
        "block_hash": _h(log, "blockHash", where),
        "block_number": _q(log, "blockNumber", where),
        "address": _a(log, "address", where),
        "data": _h(log, "data", where, True, None),
        "topics": [hex_data(t, f"{where}.topics[{i}]", 32) for i, t in enumerate(topics)],
        "block_timestamp": block_timestamp,
    }


def decode_receipt_logs(receipt: Mapping[str, Any], block_timestamp: int | None = None) -> list[dict[str, Any]]:
    """Log rows of one receipt."""
    logs = _list(receipt, "logs", "receipt") or []
    return [decode_log(entry, block_timestamp) for entry in logs]


def log_from_csv_row(row: Mapping[str, str]) -> dict[str, Any]:
    """A log row read back from an ethereum-etl ``logs.csv`` (decimal numbers, comma-joined topics)."""
    def num(key: str) -> int:
        text = _field(row, key, "logs.csv row", True)
        if not isinstance(text, str) or not text.isdigit():
            raise ChainDataError(f"logs.csv row.{key}: expected a decimal integer, got {_show(text)}")
        return int(text)
    topics = _field(row, "topics", "logs.csv row", True)
    if not isinstance(topics, str):
        raise ChainDataError(f"logs.csv row.topics: expected text, got {_show(topics)}")
    return {
        "log_index": num("log_index"),
        "transaction_hash": _h(row, "transaction_hash", "logs.csv row"),
        "transaction_index": num("transaction_index"),
        "block_hash": _h(row, "block_hash", "logs.csv row"),
        "block_number": num("block_number"),
        "address": _a(row, "address", "logs.csv row"),
        "data": _h(row, "data", "logs.csv row", True, None),
        "topics": [hex_data(t, "logs.csv row.topics", 32) for t in topics.split(",") if t],
        "block_timestamp": None,
    }


# ---------------------------------------------------------------------------------------------- events

def _words(data: str) -> list[str]:
    # the data part cut into 32-byte words; ethereum-etl keeps a short last piece as a word of its own
    body = data[2:]
    return [body[i:i + 64] for i in range(0, len(body), 64)]


def _word_address(word: str) -> str:
    return "0x" + word.removeprefix("0x")[-40:].lower()


def _word_int(word: str, signed: bool = False) -> int:
    value = int(word.removeprefix("0x"), 16)
    return value - (1 << 256) if signed and value >> 255 else value


def _event_parts(log: Mapping[str, Any]) -> tuple[list[str], str]:
    where = "log"
    topics = _list(log, "topics", where)
    checked = [hex_data(t, f"{where}.topics[{i}]", 32) for i, t in enumerate(topics)]
    return checked, _h(log, "data", where, True, None)


def _log_meta(log: Mapping[str, Any]) -> dict[str, Any]:
    where = "log"
    ts = log.get("block_timestamp")
    if ts is not None and (not isinstance(ts, int) or isinstance(ts, bool)):
        raise ChainDataError(f"{where}.block_timestamp: expected int seconds, got {_show(ts)}")
    meta = {"transaction_hash": _h(log, "transaction_hash", where),
            "log_index": _field(log, "log_index", where, True),
            "block_number": _field(log, "block_number", where, True),
            "block_hash": _h(log, "block_hash", where, False), "block_timestamp": ts}
    for key in ("log_index", "block_number"):
        if not isinstance(meta[key], int) or isinstance(meta[key], bool) or meta[key] < 0:
            raise ChainDataError(f"{where}.{key}: expected a non-negative int, got {_show(meta[key])}")
    return meta


def token_transfer_from_log(log: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ethereum-etl token transfer of a log row, or None when it is not a Transfer ethereum-etl accepts.

    The topics and the 32-byte words of the data together must be exactly four: topic0 = Transfer,
    then from, to, value wherever the contract put them. That covers ERC-20 (3 topics + 1 data word),
    ERC-721 (4 topics, the token id as value) and old tokens with unindexed arguments (1 topic + 3 words).
    Addresses are the last 20 bytes of their word; value is the exact uint256 as an int.
    """
    topics, data = _event_parts(log)
    if not topics or topics[0].lower() != TRANSFER_TOPIC:
        return None
    words = topics + _words(data)
    if len(words) != 4:
        return None  # a Transfer with another argument list: ethereum-etl skips it too
    return {"token_address": _a(log, "address", "log"), "from_address": _word_address(words[1]),
            "to_address": _word_address(words[2]), "value": _word_int(words[3]), **_log_meta(log)}


def decode_weth_event(log: Mapping[str, Any]) -> dict[str, Any] | None:
    """WETH ``Deposit(address indexed dst, uint wad)`` / ``Withdrawal(address indexed src, uint wad)``, else None."""
    topics, data = _event_parts(log)
    if not topics or topics[0].lower() not in (WETH_DEPOSIT_TOPIC, WETH_WITHDRAWAL_TOPIC):
        return None
    if len(topics) != 2 or len(data) != 2 + 64:
        return None  # same signature, other indexing: not the WETH9 layout
    kind = "deposit" if topics[0].lower() == WETH_DEPOSIT_TOPIC else "withdrawal"
    return {"event": f"weth_{kind}", "contract_address": _a(log, "address", "log"),
            "address": _word_address(topics[1]), "amount": _word_int(data), **_log_meta(log)}


def decode_uniswap_v2_swap(log: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Uniswap V2 pair ``Swap(sender indexed, amount0In, amount1In, amount0Out, amount1Out, to indexed)``,
    else None."""
    topics, data = _event_parts(log)
    if not topics or topics[0].lower() != UNISWAP_V2_SWAP_TOPIC or len(topics) != 3 or len(data) != 2 + 4 * 64:
        return None
    w = _words(data)
    return {"event": "uniswap_v2_swap", "pair_address": _a(log, "address", "log"),
            "sender": _word_address(topics[1]), "to": _word_address(topics[2]),
            "amount0_in": _word_int(w[0]), "amount1_in": _word_int(w[1]),
            "amount0_out": _word_int(w[2]), "amount1_out": _word_int(w[3]), **_log_meta(log)}


def decode_uniswap_v3_swap(log: Mapping[str, Any]) -> dict[str, Any] | None:
    """A Uniswap V3 pool ``Swap(sender indexed, recipient indexed, int256 amount0, int256 amount1,
    uint160 sqrtPriceX96, uint128 liquidity, int24 tick)``, else None.

    amount0/amount1 are signed from the pool's side (positive: paid into the pool).
    """
    topics, data = _event_parts(log)
    if not topics or topics[0].lower() != UNISWAP_V3_SWAP_TOPIC or len(topics) != 3 or len(data) != 2 + 5 * 64:
        return None
    w = _words(data)
    sqrt_price, liquidity, tick = _word_int(w[2]), _word_int(w[3]), _word_int(w[4], signed=True)
    # ABI words of narrower types must be zero- (or sign-) extended; anything else is not a real pool's log
    if sqrt_price >> 160 or liquidity >> 128 or not -(1 << 23) <= tick < (1 << 23):
        raise ChainDataError(f"log: Uniswap V3 Swap with out-of-range sqrtPriceX96/liquidity/tick: {_show(data)}")
    return {"event": "uniswap_v3_swap", "pool_address": _a(log, "address", "log"),
            "sender": _word_address(topics[1]), "recipient": _word_address(topics[2]),
            "amount0": _word_int(w[0], signed=True), "amount1": _word_int(w[1], signed=True),
            "sqrt_price_x96": sqrt_price, "liquidity": liquidity, "tick": tick, **_log_meta(log)}


EVENT_DECODERS = {
    TRANSFER_TOPIC: token_transfer_from_log,
    WETH_DEPOSIT_TOPIC: decode_weth_event,
    WETH_WITHDRAWAL_TOPIC: decode_weth_event,
    UNISWAP_V2_SWAP_TOPIC: decode_uniswap_v2_swap,
    UNISWAP_V3_SWAP_TOPIC: decode_uniswap_v3_swap,
}


def decode_event(log: Mapping[str, Any]) -> dict[str, Any] | None:
    """The decoded event of a log row if its topic0 is one of :data:`EVENT_DECODERS`, else None."""
    topics = _list(log, "topics", "log")
    if not topics or not isinstance(topics[0], str):
        return None
    decoder = EVENT_DECODERS.get(topics[0].lower())
    return decoder(log) if decoder else None


# ---------------------------------------------------------------------------------------------- records

def token_transfer_record(row: Mapping[str, Any], chain_id: int) -> TokenTransfer:
    """The :class:`TokenTransfer` record of a token transfer row (value as an exact decimal string)."""
    if row.get("block_hash") is None or row.get("block_timestamp") is None:
        raise ChainDataError("token transfer row: block_hash and block_timestamp are needed for a record")
    return TokenTransfer(chain_id=chain_id, token_address=row["token_address"], from_address=row["from_address"],
                         to_address=row["to_address"], value=str(row["value"]),
                         transaction_hash=row["transaction_hash"], log_index=row["log_index"],
                         block_number=row["block_number"], block_hash=row["block_hash"],
                         block_timestamp=row["block_timestamp"])


def chain_block_record(row: Mapping[str, Any], chain_id: int) -> ChainBlock:
    """The :class:`ChainBlock` record of a block row."""
    return ChainBlock(chain_id=chain_id, number=row["number"], hash=row["hash"], parent_hash=row["parent_hash"],
                      timestamp=row["timestamp"], transaction_count=row["transaction_count"])


def check_receipts(block: Mapping[str, Any], receipts: Sequence[Mapping[str, Any]]) -> None:
    """Raise :class:`ChainDataError` unless ``receipts`` are exactly the block's transactions' receipts, in order."""
    hashes = [h.lower() for h in block_transaction_hashes(block)]
    got = [(_h(r, "transactionHash", "receipt") or "").lower() for r in receipts]
    if got != hashes:
        raise ChainDataError(f"block {block.get('number')}: {len(got)} receipts do not match its "
                             f"{len(hashes)} transactions")
