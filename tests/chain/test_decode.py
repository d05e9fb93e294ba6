"""Pure decoding: topic hashes, Transfer layouts as ethereum-etl reads them, WETH and Uniswap events, bad input."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from eth_abi import encode
from eth_hash.auto import keccak
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.chain import decode as d
from engine.chain.blocks import block_data, header_of
from engine.chain.errors import ChainDataError
from engine.chain.formats import csv_value, item_timestamp, stream_item
from schemas.arrow import to_table
from schemas.records import ChainBlock, TokenTransfer, ValueTransfer
from tests.data_paths import SHARED_DATA

STREAM = SHARED_DATA / "chain" / "test_stream" / "blocks_1755634_1755635"
BLOCK = json.loads((STREAM / "web3_response.eth_getBlockByNumber_0x1ac9f3_true.json").read_text())["result"]
RECEIPT_FILE = ("web3_response.eth_getTransactionReceipt_"
                "0x2e3dcd051a91d3a694f6b8de2ac4b5fe7acdba55f58bcf8471ff00d4a430074d.json")
RECEIPT = json.loads((STREAM / RECEIPT_FILE).read_text())["result"]

WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
ALICE = "0x00000000000000000000000000000000000a11ce"
BOB = "0xb0b0000000000000000000000000000000000b0b"
ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
TX = "0x" + "ab" * 32
BLOCK_HASH = "0x" + "cd" * 32


def _topic(addr_or_int: str | int) -> str:
    value = int(addr_or_int, 16) if isinstance(addr_or_int, str) else addr_or_int
    return "0x" + format(value % 2**256, "064x")


def _log(address: str, topics: list[str], data: bytes | str = b"", log_index: int = 7) -> dict[str, Any]:
    return {"address": address, "topics": topics, "data": data if isinstance(data, str) else "0x" + data.hex(),
            "transaction_hash": TX, "log_index": log_index, "transaction_index": 2, "block_number": 17_000_000,
            "block_hash": BLOCK_HASH, "block_timestamp": 1_683_029_999}


# ------------------------------------------------------------------------------------------------ topics

@pytest.mark.parametrize(("constant", "signature"), [
    (d.TRANSFER_TOPIC, "Transfer(address,address,uint256)"),
    (d.WETH_DEPOSIT_TOPIC, "Deposit(address,uint256)"),
    (d.WETH_WITHDRAWAL_TOPIC, "Withdrawal(address,uint256)"),
    (d.UNISWAP_V2_SWAP_TOPIC, "Swap(address,uint256,uint256,uint256,uint256,address)"),
    (d.UNISWAP_V3_SWAP_TOPIC, "Swap(address,address,int256,int256,uint160,uint128,int24)"),
])
def test_topic_constants_are_the_keccak_of_their_signatures(constant: str, signature: str) -> None:
    assert constant == "0x" + keccak(signature.encode()).hex()


# ------------------------------------------------------------------------------------------------ transfers

def test_erc20_transfer_of_a_real_receipt_log() -> None:
    logs = d.decode_receipt_logs(RECEIPT, block_timestamp=1466669562)
    assert [d.token_transfer_from_log(x) is not None for x in logs] == [True, False]  # log 1 is another event
    assert d.token_transfer_from_log(logs[0]) == {
        "token_address": "0xbb9bc244d798123fde783fcc1c72d3bb8c189413",
        "from_address": "0x6498077292a0921c8804924fdf47b5e91e2a215f",
        "to_address": "0x8b3b3b624c3c0397d3da8fd861512393d51dcbac", "value": 5_000_000_000_000_000_000,
        "transaction_hash": "0x2e3dcd051a91d3a694f6b8de2ac4b5fe7acdba55f58bcf8471ff00d4a430074d", "log_index": 0,
        "block_number": 1755635, "block_hash": "0x1dec87ec1ba8e65b7773bb6f62249468948a28a427efd3d896a2ff7d7c591a67",
        "block_timestamp": 1466669562}


def test_erc20_value_is_the_exact_uint256() -> None:
    top = 2**256 - 1
    t = d.token_transfer_from_log(_log(WETH, [d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)],
                                       encode(["uint256"], [top])))
    assert t is not None and t["value"] == top and isinstance(t["value"], int)
    assert (t["from_address"], t["to_address"], t["token_address"]) == (ALICE, BOB, WETH)


def test_erc721_transfer_takes_the_token_id_from_topic3() -> None:
    t = d.token_transfer_from_log(_log(BOB, [d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB), _topic(1234)]))
    assert t is not None and (t["from_address"], t["to_address"], t["value"]) == (ALICE, BOB, 1234)


def test_unindexed_arguments_are_read_from_the_data_words() -> None:
    # old tokens (and CryptoKitties) emit Transfer(address,address,uint256) with nothing indexed
    data = encode(["address", "address", "uint256"], [ALICE, BOB, 5])
    t = d.token_transfer_from_log(_log(BOB, [d.TRANSFER_TOPIC], data))
    assert t is not None and (t["from_address"], t["to_address"], t["value"]) == (ALICE, BOB, 5)
    t = d.token_transfer_from_log(_log(BOB, [d.TRANSFER_TOPIC, _topic(ALICE)],
                                       encode(["address", "uint256"], [BOB, 9])))
    assert t is not None and (t["from_address"], t["to_address"], t["value"]) == (ALICE, BOB, 9)


@pytest.mark.parametrize(("topics", "data"), [
    ([d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)], b""),  # 3 words
    ([d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)], encode(["uint256", "uint256"], [1, 2])),  # 5 words
    ([d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB), _topic(1)], encode(["uint256"], [1])),  # 5 words
    ([], encode(["uint256"], [1])),  # anonymous event
    ([d.WETH_DEPOSIT_TOPIC, _topic(ALICE), _topic(BOB)], encode(["uint256"], [1])),  # another event
])
def test_layouts_ethereum_etl_rejects_give_none(topics: list[str], data: bytes) -> None:
    assert d.token_transfer_from_log(_log(WETH, topics, data)) is None


def test_topic0_matches_in_any_case_and_a_short_last_data_word_counts_as_ethereum_etl_does() -> None:
    upper = "0x" + d.TRANSFER_TOPIC[2:].upper()
    t = d.token_transfer_from_log(_log(WETH, [upper, _topic(ALICE), _topic(BOB)], "0x01ff"))
    # ethereum-etl cuts data into 64-digit pieces and keeps a short last piece as the value word
    assert t is not None and t["value"] == 0x01FF


def test_logs_csv_rows_decode_like_rpc_logs() -> None:
    row = {"log_index": "3", "transaction_hash": TX, "transaction_index": "0", "block_hash": BLOCK_HASH,
           "block_number": "1452581", "address": WETH.upper().replace("0X", "0x"), "data": "0x" + "00" * 31 + "2a",
           "topics": f"{d.TRANSFER_TOPIC},{_topic(ALICE)},{_topic(BOB)}"}
    log = d.log_from_csv_row(row)
    assert log["address"] == WETH and log["log_index"] == 3 and len(log["topics"]) == 3
    assert d.token_transfer_from_log(log)["value"] == 42  # type: ignore[index]
    with pytest.raises(ChainDataError, match="log_index: expected a decimal integer"):
        d.log_from_csv_row({**row, "log_index": "x"})
    with pytest.raises(ChainDataError, match="missing field 'topics'"):
        d.log_from_csv_row({k: v for k, v in row.items() if k != "topics"})


# ------------------------------------------------------------------------------------------------ WETH, Uniswap

def test_weth_deposit_and_withdrawal() -> None:
    dep = d.decode_weth_event(_log(WETH, [d.WETH_DEPOSIT_TOPIC, _topic(ALICE)], encode(["uint256"], [10**18])))
    assert dep == {"event": "weth_deposit", "contract_address": WETH, "address": ALICE, "amount": 10**18,
                   "transaction_hash": TX, "log_index": 7, "block_number": 17_000_000, "block_hash": BLOCK_HASH,
                   "block_timestamp": 1_683_029_999}
    wd = d.decode_event(_log(WETH, [d.WETH_WITHDRAWAL_TOPIC, _topic(BOB)], encode(["uint256"], [123_456_789])))
    assert wd is not None and (wd["event"], wd["address"], wd["amount"]) == ("weth_withdrawal", BOB, 123_456_789)
    # the same signature with the amount indexed, or extra data: not WETH9's layout
    assert d.decode_weth_event(_log(WETH, [d.WETH_DEPOSIT_TOPIC, _topic(ALICE), _topic(5)])) is None
    assert d.decode_weth_event(_log(WETH, [d.TRANSFER_TOPIC, _topic(ALICE)], encode(["uint256"], [1]))) is None


def test_uniswap_v2_swap() -> None:
    pair = "0xb4e16d0168e52d35cacd2c6185b44281ec28c9dc"
    data = encode(["uint256"] * 4, [0, 10**18, 1_850_123_456, 0])
    s = d.decode_event(_log(pair, [d.UNISWAP_V2_SWAP_TOPIC, _topic(ROUTER), _topic(BOB)], data))
    assert s == {"event": "uniswap_v2_swap", "pair_address": pair, "sender": ROUTER, "to": BOB,
                 "amount0_in": 0, "amount1_in": 10**18, "amount0_out": 1_850_123_456, "amount1_out": 0,
                 "transaction_hash": TX, "log_index": 7, "block_number": 17_000_000, "block_hash": BLOCK_HASH,
                 "block_timestamp": 1_683_029_999}
    assert d.decode_uniswap_v2_swap(_log(pair, [d.UNISWAP_V2_SWAP_TOPIC, _topic(ROUTER), _topic(BOB)],
                                         data[:96])) is None


def test_uniswap_v3_swap_with_signed_amounts_and_tick() -> None:
    pool = "0x88e6a0c2ddd26feeb64f039a2c41296fcb3f5640"
    values = [-1_850_123_456, 10**18, 1_234_567_890_123_456_789_012_345_678_901_234, 2**100, -201_234]
    data = encode(["int256", "int256", "uint160", "uint128", "int24"], values)
    s = d.decode_event(_log(pool, [d.UNISWAP_V3_SWAP_TOPIC, _topic(ROUTER), _topic(ALICE)], data))
    assert s is not None and s["event"] == "uniswap_v3_swap" and s["pool_address"] == pool
    assert (s["sender"], s["recipient"]) == (ROUTER, ALICE)
    assert [s["amount0"], s["amount1"], s["sqrt_price_x96"], s["liquidity"], s["tick"]] == values
    bad = bytearray(data)
    bad[64:96] = (2**200).to_bytes(32, "big")  # sqrtPriceX96 wider than uint160
    with pytest.raises(ChainDataError, match="out-of-range"):
        d.decode_uniswap_v3_swap(_log(pool, [d.UNISWAP_V3_SWAP_TOPIC, _topic(ROUTER), _topic(ALICE)], bytes(bad)))


def test_decode_event_ignores_unknown_topics() -> None:
    assert d.decode_event(_log(WETH, ["0x" + "00" * 32])) is None
    assert d.decode_event(_log(WETH, [])) is None


# ------------------------------------------------------------------------------------------------ blocks etc.

def test_block_transactions_and_receipt_of_a_real_block() -> None:
    b = d.decode_block(BLOCK)
    assert (b["number"], b["timestamp"], b["transaction_count"], b["withdrawals"]) == (1755635, 1466669562, 2, [])
    assert b["total_difficulty"] == 30078063397065281661 and b["base_fee_per_gas"] is None
    txs = d.decode_block_transactions(BLOCK)
    assert [t["value"] for t in txs] == [0, 405738107000000000] and txs[0]["block_timestamp"] == 1466669562
    r = d.decode_receipt(RECEIPT)
    assert (r["gas_used"], r["status"], r["effective_gas_price"]) == (36418, None, 20_000_000_000)
    assert d.block_transaction_hashes(BLOCK) == [t["hash"] for t in txs]


def test_a_transaction_from_another_block_is_rejected() -> None:
    block = copy.deepcopy(BLOCK)
    block["transactions"][1]["blockNumber"] = "0x1"
    with pytest.raises(ChainDataError, match="says it is in block 1"):
        d.decode_block_transactions(block)
    with pytest.raises(ChainDataError, match="receipts do not match"):
        d.check_receipts(BLOCK, [RECEIPT])


def _set(path: tuple, value: Any) -> Any:
    def mutate(obj: Any) -> Any:
        obj = copy.deepcopy(obj)
        target = obj
        for key in path[:-1]:
            target = target[key]
        if value is _DELETE:
            del target[path[-1]]
        else:
            target[path[-1]] = value
        return obj
    return mutate


_DELETE = object()
_LOG0 = ("logs", 0)


@pytest.mark.parametrize(("what", "mutate", "match"), [
    ("block", _set(("hash",), _DELETE), "missing field 'hash'"),
    ("block", _set(("timestamp",), None), "missing field 'timestamp'"),
    ("block", _set(("number",), 1755635), "expected a hex quantity"),
    ("block", _set(("gasUsed",), True), "expected a hex quantity"),
    ("block", _set(("timestamp",), "0xzz"), "expected a hex quantity"),
    ("block", _set(("difficulty",), "0x" + "1" * 65), "at most 256 bits"),
    ("block", _set(("difficulty",), "0x"), "expected a hex quantity"),
    ("block", _set(("hash",), BLOCK["hash"][:-2]), "expected 32 bytes, got 31"),
    ("block", _set(("miner",), "0x123"), "hex bytes"),
    ("block", _set(("transactions",), "0x"), "expected a JSON array"),
    ("block", lambda b: [b], "expected a JSON object"),
    ("block", _set(("withdrawals",), [{"index": "0x1"}]), "withdrawals\\[0\\]: missing field 'validatorIndex'"),
    ("tx", _set(("transactions", 0, "from"), _DELETE), "missing field 'from'"),
    ("tx", _set(("transactions", 0, "value"), 10**18), "value: expected a hex quantity"),
    ("tx", _set(("transactions", 0, "input"), "0x7edae70"), "input: expected 0x-prefixed hex bytes"),
    ("tx", _set(("transactions", 1), "0x" + "ab" * 32), "not an object"),
    ("receipt", _set(("gasUsed",), None), "missing field 'gasUsed'"),
    ("receipt", _set(("logs",), _DELETE), "missing field 'logs'"),
    ("receipt", _set(("l1FeeScalar",), "abc"), "l1FeeScalar: expected a decimal number"),
    ("log", _set(_LOG0 + ("topics",), d.TRANSFER_TOPIC), "topics: expected a JSON array"),
    ("log", _set(_LOG0 + ("topics", 1), "0x" + "00" * 31), "topics\\[1\\]: expected 32 bytes"),
    ("log", _set(_LOG0 + ("data",), "0x0"), "data: expected 0x-prefixed hex bytes"),
    ("log", _set(_LOG0 + ("logIndex",), _DELETE), "missing field 'logIndex'"),
    ("log", _set(_LOG0 + ("address",), 5), "address: expected 0x-prefixed hex bytes"),
])
def test_malformed_input_raises_chain_data_error_naming_the_field(what: str, mutate: Any, match: str) -> None:
    if what in ("block", "tx"):
        obj = mutate(BLOCK)
        call = d.decode_block if what == "block" else d.decode_block_transactions
    else:
        obj = mutate(RECEIPT)
        call = d.decode_receipt if what == "receipt" else d.decode_receipt_logs
    with pytest.raises(ChainDataError, match=match):
        call(obj)


@pytest.mark.parametrize("bad", [None, {}, {"topics": [d.TRANSFER_TOPIC]}, {"topics": "x", "data": "0x"},
                                 {"topics": [d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)], "data": "0x" + "00" * 32}])
def test_event_decoders_raise_chain_data_error_never_key_error(bad: Any) -> None:
    with pytest.raises(ChainDataError):
        d.token_transfer_from_log(bad)
    for decoder in (d.decode_weth_event, d.decode_uniswap_v2_swap, d.decode_uniswap_v3_swap, d.decode_event):
        try:  # another event's decoder may just say "not mine"; anything but ChainDataError escapes and fails
            assert decoder(bad) is None
        except ChainDataError:
            pass


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=80),
                     lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=3),
                     max_leaves=6)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzzed_fields_either_decode_or_raise_chain_data_error(data: st.DataObject) -> None:
    block = copy.deepcopy(BLOCK)
    receipt = copy.deepcopy(RECEIPT)
    for obj in (block, block["transactions"][0], receipt, receipt["logs"][0]):
        key = data.draw(st.sampled_from(sorted(obj)))
        obj[key] = data.draw(_JSON)
    for call, arg in ((d.decode_block, block), (d.decode_block_transactions, block), (d.decode_receipt, receipt),
                      (d.decode_receipt_logs, receipt)):
        try:
            call(arg)
        except ChainDataError:
            pass
    try:
        logs = d.decode_receipt_logs(receipt)
    except ChainDataError:
        return
    for log in logs:
        d.decode_event(log)


# ------------------------------------------------------------------------------------------------ records, formats

def test_records_keep_the_exact_value_as_text_and_round_trip_through_arrow() -> None:
    t = d.token_transfer_from_log(_log(WETH, [d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)],
                                       encode(["uint256"], [2**256 - 1])))
    assert t is not None
    rec = d.token_transfer_record(t, chain_id=1)
    assert rec.value == str(2**256 - 1) and int(rec.value) == 2**256 - 1
    assert TokenTransfer.model_validate(to_table([rec], TokenTransfer).to_pylist()[0]) == rec
    blk = d.chain_block_record(d.decode_block(BLOCK), chain_id=1)
    assert blk == ChainBlock(chain_id=1, number=1755635, hash=BLOCK["hash"], parent_hash=BLOCK["parentHash"],
                             timestamp=1466669562, transaction_count=2)
    with pytest.raises(ChainDataError, match="block_timestamp"):
        d.token_transfer_record({**t, "block_timestamp": None}, chain_id=1)


def test_the_follower_block_and_transfers_are_the_export_records() -> None:
    """One block record and one derivation: the live follower's block is the export's ChainBlock (chain id
    unknown), and its token transfers are the export's TokenTransfer records as value movements."""
    blk = d.chain_block_record(d.decode_block(BLOCK), chain_id=1)
    assert header_of(BLOCK) == blk.model_copy(update={"chain_id": None})
    assert hash(header_of(BLOCK)) == hash(header_of(copy.deepcopy(BLOCK)))  # frozen: usable as a key
    got = block_data(BLOCK, RECEIPT["logs"])
    assert got.header == header_of(BLOCK)
    rows = [d.token_transfer_from_log(r) for r in d.decode_receipt_logs(RECEIPT, blk.timestamp)]
    records = [d.token_transfer_record(r, chain_id=1) for r in rows if r is not None]
    assert records and [t for t in got.transfers if t.log_index >= 0] == [
        ValueTransfer.of_token_transfer(r) for r in records]


def test_csv_cells_and_stream_ids() -> None:
    assert csv_value(None) == "" and csv_value(["0xa", "0xb"]) == "0xa,0xb"
    assert csv_value([{"index": 1, "amount": 2}]) == '{"index":1,"amount":2}'
    assert item_timestamp(1466669557) == "2016-06-23T08:12:37Z"
    t = d.token_transfer_from_log(_log(WETH, [d.TRANSFER_TOPIC, _topic(ALICE), _topic(BOB)], encode(["uint256"], [1])))
    item = stream_item("token_transfers", t)  # type: ignore[arg-type]
    assert item["item_id"] == f"token_transfer_{TX}_7" and item["type"] == "token_transfer"
