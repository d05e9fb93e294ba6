"""``crypto-intel chain``: export a block range from an Ethereum JSON-RPC node in ethereum-etl's files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from app import flags


def _block_number(text: str) -> int:
    try:
        value = int(text, 0)  # decimal, or 0x-hex as nodes and explorers show them
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a block number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"block numbers are >= 0, got {value}")
    return value


def add_chain_parser(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``chain`` and its ``export`` subcommand; returns ``chain``'s subparsers for more subcommands."""
    from connectors.chain.export_job import ALL_ENTITIES, ENTITIES, FORMATS

    c = sub.add_parser("chain", help="on-chain data: export block ranges from an Ethereum JSON-RPC node",
                       description="Read blocks, transactions, receipts and logs from an Ethereum JSON-RPC node.")
    csub = c.add_subparsers(dest="chain_command", required=True, metavar="CHAIN_COMMAND")
    e = csub.add_parser(
        "export", help="write blocks, transactions, logs and token transfers of a block range (ethereum-etl format)",
        description="Fetch blocks FROM..TO (inclusive) and write DIR/blocks.csv, transactions.csv, logs.json and "
                    "token_transfers.csv with ethereum-etl's columns and value formats (--format json: one JSON "
                    "object per line; --format stream: ethereum-etl stream items). Logs come from the receipts "
                    "(eth_getBlockReceipts, else eth_getTransactionReceipt per transaction); token transfers alone "
                    "come from eth_getLogs (else eth_newFilter + eth_getFilterLogs) on the Transfer topic.")
    e.add_argument("--rpc", required=True, metavar="URL", type=flags.http_url,
                   help="JSON-RPC endpoint, e.g. http://127.0.0.1:8545")
    e.add_argument("--from-block", type=_block_number, required=True, help="first block (decimal or 0x-hex)")
    e.add_argument("--to-block", type=_block_number, required=True, help="last block, inclusive")
    e.add_argument("--out", required=True, metavar="DIR", help="directory for the files (created if missing)")
    e.add_argument("--batch-size", type=flags.positive_int, default=100, metavar="N",
                   help="blocks per batch of JSON-RPC calls (default 100)")
    e.add_argument("--format", dest="fmt", choices=FORMATS, default="csv",
                   help="csv (default), json (one object per line), or stream (ethereum-etl stream items)")
    e.add_argument("--logs-format", choices=["json", "csv"], default=None,
                   help="with --format csv: logs as logs.json (default, like ethereum-etl export_all) or logs.csv")
    e.add_argument("--entities", default=",".join(ENTITIES),
                   help=f"comma-separated, from {', '.join(ALL_ENTITIES)} (default {','.join(ENTITIES)})")
    e.add_argument("--concurrency", type=flags.positive_int, default=4, help="batches fetched at once (default 4)")
    e.add_argument("--timeout-s", type=flags.positive_float, default=30.0, help="seconds per HTTP request (default 30)")
    e.set_defaults(func=cmd_export)
    return csub


def cmd_export(args: argparse.Namespace) -> int:
    """Run ``chain export``; the summary line goes to stderr."""
    from connectors.chain.export_job import ExportConfig, run_export

    flags.check_out_dir("--out", args.out)
    config = ExportConfig(rpc_url=args.rpc, from_block=args.from_block, to_block=args.to_block,
                          out_dir=Path(args.out), batch_size=args.batch_size,
                          entities=tuple(x.strip() for x in args.entities.split(",") if x.strip()),
                          fmt=args.fmt, logs_format=args.logs_format, concurrency=args.concurrency,
                          rpc_timeout_s=args.timeout_s)
    result = run_export(config)
    print(f"chain export: {result.summary(config)}", file=sys.stderr)
    return 0
