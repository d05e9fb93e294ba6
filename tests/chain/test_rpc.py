"""RpcClient against the replay node: recorded answers, fallbacks, retries; malformed answers rejected and counted."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from connectors.chain.rpc import RpcClient, RpcConfig
from engine.chain.errors import (
    ChainDataError,
    RpcError,
    RpcMethodNotFound,
    RpcUnavailable,
)
from schemas.errors import ConfigError
from tests.chain.replay_rpc import ReplayRpc, response_file
from tests.data_paths import SHARED_DATA

CHAIN = SHARED_DATA / "chain"
STREAM = CHAIN / "test_stream" / "blocks_1755634_1755635"
TOKENS = CHAIN / "test_stream" / "blocks_2112234_2112234"
BLOCK_483920 = CHAIN / "test_export_blocks_job" / "block_with_logs"
RECEIPTS = CHAIN / "test_export_receipts_job" / "receipts_with_logs"
TRANSFERS = CHAIN / "test_export_token_transfers_job" / "block_with_transfers"
TRANSFER = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
HEAD = {response_file("eth_blockNumber", []): {"result": "0x1ac9f3"}}


def _client(server: ReplayRpc, **kw: Any) -> RpcClient:
    return RpcClient(RpcConfig(server.url, **{"backoff_s": 0.01, "max_backoff_s": 0.02, "attempts": 3, **kw}))


def test_response_file_names_follow_the_recording_convention() -> None:
    assert response_file("eth_getBlockByNumber", ["0x1ac9f2", True]) == \
        "web3_response.eth_getBlockByNumber_0x1ac9f2_true.json"
    assert response_file("eth_chainId", []) == "web3_response.eth_chainId_.json"
    flt = {"toBlock": "0x76250", "fromBlock": "0x76250", "topics": [TRANSFER]}
    assert (TRANSFERS / response_file("eth_newFilter", [flt])).is_file()
    assert (TOKENS / response_file("eth_call", [{"to": "0xdbdacfc9eb9d42559ac1efbdb40460c728139e6a",
                                                  "data": "0x06fdde03"}, "latest"])).is_file()


async def test_recorded_methods_and_batches() -> None:
    async with ReplayRpc(STREAM, TOKENS, extra=HEAD) as server, _client(server) as client:
        assert await client.chain_id() == 0x1234  # what ethereum-etl recorded (a test value, not mainnet's 1)
        assert await client.block_number() == 1755635
        blocks = await client.get_blocks([1755634, 1755635])
        assert [b["hash"][:10] for b in blocks] == ["0xa06fc36a", "0x1dec87ec"]
        assert client.stats["batches"] == 1 and server.http_requests == 3
        latest = await client.get_block("latest", full_tx=False)
        assert latest["number"] == "0x71993a"
        name = await client.call("0xdbdacfc9eb9d42559ac1efbdb40460c728139e6a", "0x06fdde03")
        assert name.startswith("0x") and len(name) > 2
        assert client.stats["malformed"] == 0


async def test_receipts_fall_back_to_one_call_per_transaction_and_use_block_receipts_when_offered() -> None:
    async with ReplayRpc(STREAM) as server, _client(server) as client:
        block = await client.get_block(1755635)
        receipts = await client.get_block_receipts(block)
        assert [r["transactionHash"][:10] for r in receipts] == ["0x2e3dcd05", "0x9a5437ec"]
        assert client.supports["eth_getBlockReceipts"] is False and client.stats["fallbacks"] == 1
        await client.get_block_receipts(block)  # remembered: straight to per-transaction receipts
        assert server.methods().count("eth_getBlockReceipts") == 1
    # a node that has eth_getBlockReceipts answers with one call
    recorded = [json.loads(p.read_text())["result"] for p in sorted(RECEIPTS.glob("web3_response.*"))]
    recorded.sort(key=lambda r: int(r["transactionIndex"], 16))
    extra = {response_file("eth_getBlockReceipts", ["0x76250"]): {"result": recorded}}
    async with ReplayRpc(BLOCK_483920, extra=extra) as server, _client(server) as client:
        receipts = await client.get_block_receipts(await client.get_block(483920))
        assert len(receipts) == 4 and "eth_getTransactionReceipt" not in server.methods()
        assert client.supports["eth_getBlockReceipts"] is True


async def test_get_logs_falls_back_to_filters_and_splits_ranges_a_provider_refuses() -> None:
    async with ReplayRpc(TRANSFERS) as server, _client(server) as client:
        logs = await client.get_logs(483920, 483920, topics=[TRANSFER])
        assert len(logs) == 2 and server.methods()[-1] == "eth_uninstallFilter"
        assert client.supports["eth_getLogs"] is False
    whole = {"fromBlock": "0x1", "toBlock": "0x4"}
    extra = {response_file("eth_getLogs", [whole]): {"error": {"code": -32005,
                                                               "message": "query returned more than 10000 results"}}}
    for a, b, n in ((1, 2, 1), (3, 4, 2)):
        name = response_file("eth_getLogs", [{"fromBlock": hex(a), "toBlock": hex(b)}])
        extra[name] = {"result": [{"n": i} for i in range(n)]}
    async with ReplayRpc(extra=extra) as server, _client(server) as client:
        assert len(await client.get_logs(1, 4)) == 3
        assert client.supports["eth_getLogs"] is True


async def test_node_errors_name_the_method_and_the_message() -> None:
    async with ReplayRpc(STREAM) as server, _client(server) as client:
        with pytest.raises(RpcMethodNotFound, match=r"eth_foo: .*does not exist.*code -32601"):
            await client.request("eth_foo", [])
        server.fault("eth_getBlockByNumber", "error")
        with pytest.raises(RpcError, match=r"eth_getBlockByNumber: injected failure \(code -32000\)") as e:
            await client.get_block(1755634)
        assert e.value.method == "eth_getBlockByNumber" and e.value.code == -32000
        assert (await client.get_block(1755634))["number"] == "0x1ac9f2"


async def test_refused_batches_are_sent_one_by_one() -> None:
    async with ReplayRpc(STREAM, batches=False) as server, _client(server) as client:
        blocks = await client.get_blocks([1755634, 1755635])
        assert len(blocks) == 2 and client.supports["batch"] is False
        await client.get_blocks([1755634, 1755635])
        assert server.http_requests == 1 + 2 + 2  # the refused batch, then singles (remembered)


@pytest.mark.parametrize("fault", ["http500", "http429"])
async def test_5xx_and_429_are_retried(fault: str) -> None:
    async with ReplayRpc(STREAM) as server, _client(server) as client:
        server.fault("eth_getBlockByNumber", fault, times=2)
        assert (await client.get_block(1755634))["number"] == "0x1ac9f2"
        assert client.stats["retries"] == 2
        server.fault("eth_getBlockByNumber", fault, times=3)
        with pytest.raises(RpcUnavailable, match="failed after 3 attempts"):
            await client.get_block(1755634)


async def test_connection_refused_ends_in_rpc_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with RpcClient(RpcConfig(f"http://127.0.0.1:{port}", attempts=2, backoff_s=0.01)) as client:
        with pytest.raises(RpcUnavailable, match=r"eth_chainId: failed after 2 attempts.*Connect"):
            await client.chain_id()
    with pytest.raises(ConfigError):
        RpcConfig("127.0.0.1:8545")


def _other_id(resp: dict[str, Any]) -> dict[str, Any]:
    return {**resp, "id": 999}


def _timestamp_as_json_int(resp: dict[str, Any]) -> dict[str, Any]:
    return {**resp, "result": {**resp["result"], "timestamp": 1466669557}}


@pytest.mark.parametrize(("method", "fault", "call", "match"), [
    ("eth_getBlockByNumber", "truncate", "block", "not JSON"),
    ("eth_getBlockByNumber", "not_json", "block", "not JSON"),
    ("eth_getBlockByNumber", "no_result", "block", "neither 'result' nor 'error'"),
    ("eth_getBlockByNumber", "wrong_type", "block", "expected a block object"),
    ("eth_getBlockByNumber", "huge_hex", "block", "the node answered block"),
    ("eth_getBlockByNumber", _other_id, "block", "does not match request id"),
    ("eth_getBlockByNumber", "drop", "blocks", "responses missing"),
    ("eth_blockNumber", "huge_hex", "head", "at most 256 bits"),
    # orjson reads a JSON integer over 64 bits as a float: still no hex quantity, so still rejected
    ("eth_blockNumber", "huge_json_number", "head", "expected a hex quantity"),
    ("eth_blockNumber", "wrong_type", "head", "expected a hex quantity"),
    ("eth_getTransactionReceipt", "wrong_type", "receipts", "expected receipt objects"),
    ("eth_getTransactionReceipt", "truncate", "receipts", "not JSON"),
    ("eth_getFilterLogs", "wrong_type", "logs", "expected a JSON array of log objects"),
    ("eth_newFilter", "wrong_type", "logs", "expected a filter id"),
])
async def test_malformed_answers_are_rejected_counted_and_the_client_keeps_going(
        method: str, fault: Any, call: str, match: str) -> None:
    async def do(client: RpcClient) -> Any:
        if call == "block":
            return await client.get_block(1755634)
        if call == "blocks":
            return await client.get_blocks([1755634, 1755635])
        if call == "head":
            return await client.block_number()
        if call == "receipts":
            return await client.get_block_receipts(await client.get_block(1755635))
        return await client.get_logs(483920, 483920, topics=[TRANSFER])

    async with ReplayRpc(STREAM, TRANSFERS, extra=HEAD) as server, _client(server) as client:
        server.fault(method, fault)
        with pytest.raises(ChainDataError, match=match):
            await do(client)
        assert client.stats["malformed"] == 1 and match.split()[0] in client.last_malformed
        assert await do(client)  # the next, unspoiled answer goes through
        assert client.stats["malformed"] == 1


async def test_field_level_garbage_is_left_to_the_decoder_which_rejects_it() -> None:
    from engine.chain.decode import decode_block
    async with ReplayRpc(STREAM) as server, _client(server) as client:
        server.fault("eth_getBlockByNumber", _timestamp_as_json_int)
        block = await client.get_block(1755634)  # the client checks shapes; the decoder checks fields
        with pytest.raises(ChainDataError, match="block 1755634.timestamp: expected a hex quantity"):
            decode_block(block)


def test_case_directories_hold_what_the_tests_expect() -> None:
    assert all(p.is_dir() for p in (STREAM, TOKENS, BLOCK_483920, RECEIPTS, TRANSFERS)), Path(CHAIN)
