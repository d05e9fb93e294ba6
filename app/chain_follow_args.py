"""Arguments of ``crypto-intel chain follow`` (the job itself runs on Ray: ``app/chain_follow.py``)."""

from __future__ import annotations

import argparse
from typing import Callable

from app import flags


def add_follow_parser(csub: argparse._SubParsersAction, cmd_follow: Callable[[argparse.Namespace], int]) -> None:
    """Add ``chain follow`` to the ``chain`` subcommands; ``cmd_follow`` runs it."""
    f = csub.add_parser("follow", help="follow a chain live: blocks, reorgs, wallet state, alerts",
                        description="Follow new heads (WebSocket newHeads with --ws, else HTTP polling), check "
                                    "every block against its parent, roll back reorganised blocks and emit "
                                    "retractions, keep per-wallet state in shards and write alerts.")
    f.add_argument("--rpc", required=True, type=flags.http_url, help="HTTP JSON-RPC URL of the node")
    f.add_argument("--ws", default=None, type=flags.ws_url, help="WebSocket URL for newHeads (default: poll over HTTP)")
    f.add_argument("--from-block", type=flags.non_negative_int, required=True, help="first block to process")
    f.add_argument("--to-block", type=flags.non_negative_int, default=None,
                   help="stop after this block (default: follow forever)")
    f.add_argument("--chain-name", default="ethereum", help="name stored with alerts (default ethereum)")
    f.add_argument("--confirmations", type=flags.non_negative_int, default=12,
                   help="blocks until an event is confirmed (default 12)")
    f.add_argument("--window", type=flags.positive_int, default=64, help="reorg window in blocks (default 64)")
    f.add_argument("--shards", type=flags.positive_int, default=2, help="wallet shards (default 2)")
    f.add_argument("--in-process", action="store_true", help="keep wallet state in this process, without Ray")
    f.add_argument("--native-usd", type=flags.non_negative_float, default=0.0,
                   help="USD price of the native coin for whale alerts")
    f.add_argument("--whale-usd", type=flags.non_negative_float, default=1_000_000.0,
                   help="a transfer worth at least this many USD is a whale alert (default 1,000,000)")
    f.add_argument("--price-source", choices=["none", "coingecko"], default="none",
                   help="where USD prices for whale alerts come from (default none: only --native-usd)")
    f.add_argument("--coingecko-url", default=None, type=flags.http_url,
                   help="CoinGecko API base URL (default the public API)")
    f.add_argument("--native-id", default="ethereum", help="CoinGecko id of the native coin (default ethereum)")
    f.add_argument("--token-id", action="append", metavar="ADDRESS=ID", help="CoinGecko id of a token (repeatable)")
    f.add_argument("--price-interval-s", type=flags.positive_float, default=60.0,
                   help="seconds between price updates (default 60)")
    f.add_argument("--timeframes", default="1m", type=flags.timeframes,
                   help="candles built from confirmed DEX swaps (default 1m)")
    f.add_argument("--strategy", default="default", help="signal strategy over those candles (default: default)")
    f.add_argument("--no-markets", action="store_true", help="do not feed DEX swaps into the market pipeline")
    f.add_argument("--poll-s", type=flags.positive_float, default=2.0, help="HTTP polling period (default 2)")
    f.add_argument("--status-s", type=flags.positive_float, default=5.0,
                   help="seconds between status lines (default 5)")
    f.add_argument("--max-seconds", type=flags.non_negative_float, default=None, help="stop after this many seconds")
    f.add_argument("--out-dir", default="data/out", help="where chain-alerts.jsonl goes (default data/out)")
    f.set_defaults(func=cmd_follow)
