"""``chain export`` against recorded mainnet JSON-RPC answers, file by file against ethereum-etl's expected output.

The cases are ethereum-etl's own test resources (tests/data/chain), served by tests/chain/replay_rpc.py.
Block 483920 is spread over three of them (its block, its four receipts, its Transfer filter), so
those are served together. Calls without a recording get -32601, which exercises the client's
fallbacks: eth_getBlockReceipts -> eth_getTransactionReceipt per transaction, eth_getLogs -> filters.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest

from app.cli import main as chain_main
from connectors.chain.export_job import ExportConfig, export_range
from connectors.chain.rpc import RpcClient, RpcConfig
from engine.chain.decode import log_from_csv_row, token_transfer_from_log
from engine.chain.errors import ChainDataError
from engine.chain.formats import COLUMNS, RowWriter
from tests.chain.replay_rpc import ReplayRpc, response_file
from tests.data_paths import SHARED_DATA

CHAIN = SHARED_DATA / "chain"
STREAM = CHAIN / "test_stream" / "blocks_1755634_1755635"
BLOCKS = CHAIN / "test_export_blocks_job"
RECEIPTS = CHAIN / "test_export_receipts_job" / "receipts_with_logs"
TRANSFERS = CHAIN / "test_export_token_transfers_job" / "block_with_transfers"
EXTRACT = CHAIN / "test_extract_token_transfers_job" / "logs"


def _export(server: ReplayRpc, out: Path, first: int, last: int, *extra: str) -> None:
    rc = chain_main(["chain", "export", "--rpc", server.url, "--from-block", str(first), "--to-block", str(last),
                     "--out", str(out), *extra])
    assert rc == 0


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _csv(path: Path) -> tuple[list[str] | None, list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


def _same_csv(ours: Path, expected: Path, sort_by: str | None = None) -> int:
    """Header and every cell equal, as text (some expected files lack the final newline); the row count."""
    (h1, rows1), (h2, rows2) = _csv(ours), _csv(expected)
    assert h1 == h2, f"{ours.name}: header differs"
    if sort_by:  # ethereum-etl wrote these in completion order
        rows1, rows2 = (sorted(r, key=lambda x: int(x[sort_by])) for r in (rows1, rows2))
    assert len(rows1) == len(rows2), f"{ours.name}: {len(rows1)} rows, expected {len(rows2)}"
    for i, (a, b) in enumerate(zip(rows1, rows2)):
        diff = {k: (a[k], b[k]) for k in b if a[k] != b[k]}
        assert not diff, f"{ours.name} row {i}: (ours, expected) {diff}"
    if not sort_by:
        assert ours.read_text().rstrip("\n") == expected.read_text().rstrip("\n")
    return len(rows1)


# ------------------------------------------------------------------------------------------------ cases

def test_stream_case_matches_every_field_of_every_item(tmp_path: Path) -> None:
    """ethereum-etl stream's items for blocks 1755634..1755635: all fields, receipt_* and item ids included."""
    with ReplayRpc(STREAM) as server:
        _export(server, tmp_path, 1755634, 1755635, "--format", "stream")
        # no eth_getBlockReceipts recorded: one receipt per transaction instead
        assert server.unanswered == [response_file("eth_getBlockReceipts", ["0x1ac9f3"])]
    counts = {}
    for entity in ("blocks", "transactions", "logs", "token_transfers"):
        ours, expected = _json_lines(tmp_path / f"{entity}.json"), _json_lines(STREAM / f"expected_{entity}.json")
        assert ours == expected, entity
        counts[entity] = len(ours)
    assert counts == {"blocks": 2, "transactions": 2, "logs": 2, "token_transfers": 1}
    assert _json_lines(tmp_path / "token_transfers.json")[0]["value"] == 5_000_000_000_000_000_000


def test_stream_case_in_export_json_format_matches_on_the_exported_fields(tmp_path: Path) -> None:
    """The export (not stream) JSON carries ethereum-etl's export columns, equal to the same fields of the items."""
    with ReplayRpc(STREAM) as server:
        _export(server, tmp_path, 1755634, 1755635, "--format", "json", "--batch-size", "1")
    for entity in ("blocks", "transactions", "logs", "token_transfers"):
        ours = _json_lines(tmp_path / f"{entity}.json")
        expected = [{c: row[c] for c in COLUMNS[entity]} for row in _json_lines(STREAM / f"expected_{entity}.json")]
        assert ours == expected, entity
        assert all(list(r) == list(COLUMNS[entity]) for r in ours)


def test_block_483920_matches_blocks_transactions_logs_receipts_and_transfers(tmp_path: Path) -> None:
    entities = "blocks,transactions,logs,token_transfers,receipts"
    with ReplayRpc(BLOCKS / "block_with_logs", RECEIPTS) as server:
        _export(server, tmp_path / "csv", 483920, 483920, "--entities", entities, "--logs-format", "csv")
        assert server.methods() == ["eth_getBlockByNumber", "eth_getBlockReceipts"] + ["eth_getTransactionReceipt"] * 4
        _export(server, tmp_path / "json", 483920, 483920, "--entities", entities, "--format", "json")
        _export(server, tmp_path / "default", 483920, 483920)
    out = tmp_path / "csv"
    assert _same_csv(out / "blocks.csv", BLOCKS / "block_with_logs" / "expected_blocks.csv") == 1
    assert _same_csv(out / "transactions.csv", BLOCKS / "block_with_logs" / "expected_transactions.csv") == 4
    assert _same_csv(out / "logs.csv", RECEIPTS / "expected_logs.csv") == 2
    assert _same_csv(out / "receipts.csv", RECEIPTS / "expected_receipts.csv", sort_by="transaction_index") == 4
    # the transfers decoded from the receipts' logs equal ethereum-etl's export from its Transfer filter
    assert _same_csv(out / "token_transfers.csv", TRANSFERS / "expected_token_transfers.csv") == 2
    out = tmp_path / "json"
    assert (out / "logs.json").read_text() == (RECEIPTS / "expected_logs.json").read_text()  # byte for byte
    by_index = sorted(_json_lines(RECEIPTS / "expected_receipts.json"), key=lambda r: r["transaction_index"])
    assert _json_lines(out / "receipts.json") == by_index
    # the default files: blocks/transactions/token_transfers CSV and logs as JSON, as ethereum-etl export_all
    assert sorted(p.name for p in (tmp_path / "default").iterdir()) == [
        "blocks.csv", "logs.json", "token_transfers.csv", "transactions.csv"]
    assert (tmp_path / "default" / "logs.json").read_text() == (RECEIPTS / "expected_logs.json").read_text()


def test_token_transfers_alone_come_from_the_filter_variant_of_get_logs(tmp_path: Path) -> None:
    with ReplayRpc(TRANSFERS) as server:
        _export(server, tmp_path, 483920, 483920, "--entities", "token_transfers")
        # eth_getLogs is not recorded: the client falls back to a filter, and removes it afterwards
        assert server.methods() == ["eth_getLogs", "eth_newFilter", "eth_getFilterLogs", "eth_uninstallFilter"]
    assert _same_csv(tmp_path / "token_transfers.csv", TRANSFERS / "expected_token_transfers.csv") == 2
    # stream items carry block_timestamp: the block is fetched for it, the transfers still come from the filter
    with ReplayRpc(TRANSFERS, BLOCKS / "block_with_logs") as server:
        _export(server, tmp_path / "stream", 483920, 483920, "--entities", "token_transfers", "--format", "stream")
        assert "eth_getTransactionReceipt" not in server.methods()
    items = _json_lines(tmp_path / "stream" / "token_transfers.json")
    assert [(i["value"], i["block_timestamp"], i["item_timestamp"]) for i in items] == [
        (100000, 1446561880, "2015-11-03T14:44:40Z"), (200000, 1446561880, "2015-11-03T14:44:40Z")]


@pytest.mark.parametrize(("case", "first", "last", "n_blocks", "n_txs"), [
    ("block_without_transactions", 0, 0, 1, 0),
    ("blocks_with_transactions", 47218, 47219, 2, 4),
    ("block_with_logs", 483920, 483920, 1, 4),
])
def test_blocks_job_cases_match_blocks_and_transactions(tmp_path: Path, case: str, first: int, last: int,
                                                        n_blocks: int, n_txs: int) -> None:
    with ReplayRpc(BLOCKS / case) as server:
        _export(server, tmp_path, first, last, "--entities", "blocks,transactions", "--batch-size", "1")
        assert set(server.methods()) == {"eth_getBlockByNumber"}  # no receipts needed for these two
    assert _same_csv(tmp_path / "blocks.csv", BLOCKS / case / "expected_blocks.csv") == n_blocks
    if n_txs == 0:  # ethereum-etl writes the header with the first row: no rows, an empty file
        assert (tmp_path / "transactions.csv").read_bytes() == b""
        assert (BLOCKS / case / "expected_transactions.csv").read_bytes() == b""
    else:
        assert _same_csv(tmp_path / "transactions.csv", BLOCKS / case / "expected_transactions.csv") == n_txs


def _rpc_block_from_expected(block: dict[str, Any], txs: list[dict[str, Any]]) -> dict[str, Any]:
    """Re-encode an ethereum-etl block row and its transaction rows as eth_getBlockByNumber would return them."""
    h = hex
    return {
        "number": h(block["number"]), "hash": block["hash"], "parentHash": block["parent_hash"],
        "nonce": block["nonce"], "sha3Uncles": block["sha3_uncles"], "logsBloom": block["logs_bloom"],
        "transactionsRoot": block["transactions_root"], "stateRoot": block["state_root"],
        "receiptsRoot": block["receipts_root"], "miner": block["miner"], "difficulty": h(block["difficulty"]),
        "totalDifficulty": h(block["total_difficulty"]), "size": h(block["size"]),
        "extraData": block["extra_data"], "gasLimit": h(block["gas_limit"]), "gasUsed": h(block["gas_used"]),
        "timestamp": h(block["timestamp"]), "baseFeePerGas": h(block["base_fee_per_gas"]),
        "withdrawalsRoot": block["withdrawals_root"],
        "withdrawals": [{"index": h(w["index"]), "validatorIndex": h(w["validator_index"]), "address": w["address"],
                         "amount": h(w["amount"])} for w in block["withdrawals"]],
        "transactions": [{
            "hash": t["hash"], "nonce": h(t["nonce"]), "blockHash": t["block_hash"],
            "blockNumber": h(t["block_number"]),
            "transactionIndex": h(t["transaction_index"]), "from": t["from_address"], "to": t["to_address"],
            "value": h(t["value"]), "gas": h(t["gas"]), "gasPrice": h(t["gas_price"]), "input": t["input"],
            "type": h(t["transaction_type"]),
            **({"maxFeePerGas": h(t["max_fee_per_gas"]), "maxPriorityFeePerGas": h(t["max_priority_fee_per_gas"])}
               if t["max_fee_per_gas"] is not None else {}),
        } for t in txs],
    }


def test_withdrawals_block_formats_like_ethereum_etl(tmp_path: Path) -> None:
    """Blocks 17173049.. (withdrawals, EIP-1559 transactions): the data holds no RPC answers for this case,
    so the expected JSON rows are re-encoded into RPC form. This checks formats (withdrawal objects in a
    CSV cell, type-2 fee fields, big integers, quoting) against ethereum-etl's CSV, not hex decoding."""
    case = BLOCKS / "blocks_with_transactions_and_withdrawals"
    blocks, txs = _json_lines(case / "expected_blocks.json"), _json_lines(case / "expected_transactions.json")
    extra = {response_file("eth_getBlockByNumber", [hex(b["number"]), True]):
             {"result": _rpc_block_from_expected(b, [t for t in txs if t["block_number"] == b["number"]])}
             for b in blocks}
    first, last = blocks[0]["number"], blocks[-1]["number"]
    with ReplayRpc(extra=extra) as server:
        _export(server, tmp_path / "csv", first, last, "--entities", "blocks,transactions")
        _export(server, tmp_path / "json", first, last, "--entities", "blocks,transactions", "--format", "json")
    assert _same_csv(tmp_path / "csv" / "blocks.csv", case / "expected_blocks.csv") == len(blocks)
    assert _same_csv(tmp_path / "csv" / "transactions.csv", case / "expected_transactions.csv") == len(txs) == 298
    assert (tmp_path / "json" / "blocks.json").read_text() == (case / "expected_blocks.json").read_text()
    assert (tmp_path / "json" / "transactions.json").read_text() == (case / "expected_transactions.json").read_text()


def test_token_transfers_extracted_from_logs_csv_match(tmp_path: Path) -> None:
    """ethereum-etl's extract_token_transfers case: logs.csv in, token_transfers.csv out (pure decoding)."""
    _, rows = _csv(EXTRACT / "logs.csv")
    transfers = [t for t in (token_transfer_from_log(log_from_csv_row(r)) for r in rows) if t is not None]
    with RowWriter(tmp_path / "token_transfers.csv", "token_transfers", "csv") as w:
        w.write_all(transfers)
    assert _same_csv(tmp_path / "token_transfers.csv", EXTRACT / "expected_token_transfers.csv") == 2


# ------------------------------------------------------------------------------------------------ robustness

async def test_a_malformed_answer_is_counted_and_its_batch_fetched_again(tmp_path: Path) -> None:
    async with ReplayRpc(STREAM) as server:
        server.fault("eth_getBlockByNumber", "truncate").fault("eth_getTransactionReceipt", "wrong_type")
        config = ExportConfig(rpc_url=server.url, from_block=1755634, to_block=1755635, out_dir=tmp_path,
                              fmt="stream")
        async with RpcClient(RpcConfig(server.url, backoff_s=0.01)) as client:
            result = await export_range(config, client=client)
    assert result.refetched_batches == 2 and result.rpc_stats["malformed"] == 2
    for entity in ("blocks", "transactions", "logs", "token_transfers"):
        assert _json_lines(tmp_path / f"{entity}.json") == _json_lines(STREAM / f"expected_{entity}.json")


async def test_persistently_malformed_answers_stop_the_export_with_the_range(tmp_path: Path) -> None:
    async with ReplayRpc(STREAM) as server:
        server.fault("eth_getBlockByNumber", "huge_hex", times=10)
        config = ExportConfig(rpc_url=server.url, from_block=1755634, to_block=1755635, out_dir=tmp_path)
        with pytest.raises(ChainDataError, match=r"blocks 1755634\.\.1755635: malformed .* after 3 attempts"):
            await export_range(config)


async def test_many_small_batches_give_the_same_files_and_report_progress(tmp_path: Path) -> None:
    progress = io.StringIO()
    async with ReplayRpc(BLOCKS / "blocks_with_transactions") as server:
        config = ExportConfig(rpc_url=server.url, from_block=47218, to_block=47219, out_dir=tmp_path, batch_size=1,
                              entities=("blocks", "transactions"), concurrency=2)
        result = await export_range(config, progress_stream=progress)
    assert result.blocks == 2 and result.counts == {"blocks": 2, "transactions": 4}
    assert "chain export blocks" in progress.getvalue()
    _same_csv(tmp_path / "transactions.csv", BLOCKS / "blocks_with_transactions" / "expected_transactions.csv")


def test_cli_rejects_an_empty_range_with_exit_code_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = chain_main(["chain", "export", "--rpc", "http://127.0.0.1:9", "--from-block", "10", "--to-block", "5",
                     "--out", str(tmp_path)])
    assert rc == 2 and "--from-block must be >= 0 and <= --to-block" in capsys.readouterr().err
    rc = chain_main(["chain", "export", "--rpc", "ftp://x", "--from-block", "1", "--to-block", "1",
                     "--out", str(tmp_path)])
    assert rc == 2 and "http:// or https://" in capsys.readouterr().err
    with ReplayRpc(BLOCKS / "blocks_with_transactions") as server:  # blocks recorded, receipts not
        rc = chain_main(["chain", "export", "--rpc", server.url, "--from-block", "47218", "--to-block", "47219",
                         "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "eth_getTransactionReceipt" in err and "(fetching blocks 47218..47219)" in err
