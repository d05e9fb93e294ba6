"""The ``crypto-intel`` command line: run, replay, indicators, structure, signals, db.

Errors a user can fix (bad paths, columns, specs, flag values, argparse's own) exit with code 2 and
one line, ``crypto-intel <command>: error: ...``, saying what is wrong and how to fix it; anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from app import flags
from app.inputs import CommandLineError, check_strategy, load_inputs, make_config, pipeline_config
from schemas.errors import CryptoIntelError, InputError

PROG = "crypto-intel"
# errors a user fixes (a path, a value): one line and exit code 2; anything else is a bug and shows its traceback
USER_ERRORS = (CryptoIntelError, FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError,
               PermissionError)


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, ``crypto-intel <command>: error: ...``, exit code 2
    (argparse's usage block stays behind ``--help``). Subcommand parsers are of the same class."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {flags.one_line(message)}; see {self.prog} --help\n")


def _add_pipeline_args(p: argparse.ArgumentParser, timeframes: str = "1m") -> None:
    p.add_argument("--timeframes", default=timeframes, type=flags.timeframes,
                   help=f"comma-separated candle timeframes built from trades (default {timeframes})")
    p.add_argument("--strategy", default="default", help="built-in strategy name or a TOML file (default: default)")
    p.add_argument("--indicators", default="", type=flags.indicator_list,
                   help="extra indicator specs, e.g. \"macd:12:26:9,obv\"")
    p.add_argument("--lateness", default="0s", type=flags.lateness,
                   help="accept out-of-order trades this late, e.g. 2s (default 0s)")
    p.add_argument("--gaps", choices=["skip", "flag"], default="skip",
                   help="empty buckets: absent (skip) or flagged candles with NaN prices (flag)")
    p.add_argument("--swing", type=flags.positive_int, default=5, help="left/right bars confirming a swing (default 5)")
    p.add_argument("--break-by", choices=["close", "wick"], default="close",
                   help="a swing level breaks on a close beyond it (default) or any trade beyond it")
    p.add_argument("--analyses", default="fvg,order_blocks,liquidity",
                   help="structure analyses after swings and breaks, comma-separated, or none "
                        "(default fvg,order_blocks,liquidity)")
    p.add_argument("--shards", type=flags.positive_int, default=1, help="shard actors per stage (default 1)")
    p.add_argument("--fused", action="store_true", help="run all stages of a shard in one actor (lower latency)")
    p.add_argument("--batch-size", type=flags.positive_int, default=8192,
                   help="max rows per micro-batch (default 8192)")
    p.add_argument("--linger-ms", type=flags.non_negative_float, default=None,
                   help="max wait for a partial micro-batch to fill before it is sent on "
                        "(default: 0 for run, lowest latency; 50 for replay, highest throughput)")
    _add_input_args(p)


def _add_input_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--market", default=None, help="market name for single-market files without a symbol column")
    p.add_argument("--columns", default=None, metavar="FIELD=COLUMN,...",
                   help="name input columns the reader does not recognise, e.g. timestamp=time,price=px,size=qty")


def cmd_replay(args: argparse.Namespace) -> int:
    from engine.pipeline import run_in_process
    from engine.progress import Progress
    from engine.sources.replay import Replay
    from schemas.records import Signal, StructureEvent

    config = pipeline_config(args)
    check_strategy(config)
    flags.check_out_file("--out", args.out)
    if args.events_out:
        flags.check_out_file("--events-out", args.events_out)
    inputs = load_inputs(args.input, args.market, args.columns)
    total = sum(len(b) for b in inputs)
    progress = Progress(total, "replay")
    t0 = time.perf_counter()

    def batches():
        for b in Replay(inputs, batch_size=config.batch_size):
            yield b
            progress.advance(len(b))

    if args.in_process:
        result = run_in_process(batches(), config)
    else:
        from actors.pipeline import run_on_ray
        from actors.runtime import start_ray, stop_ray
        start_ray(dashboard=False)
        try:
            result = run_on_ray(batches(), config)
        finally:
            stop_ray()
    elapsed = time.perf_counter() - t0
    progress.draw()
    progress.close()
    _write(args.out, result.signals, Signal)
    if args.events_out:
        _write(args.events_out, result.events, StructureEvent)
    mode = "in-process" if args.in_process else f"ray, {args.shards} shard(s)/stage"
    print(f"replayed {total:,} rows in {elapsed:.2f}s ({total / elapsed:,.0f} rows/s, {mode}); "
          f"{result.candles:,} candles, {len(result.events):,} structure events, {len(result.signals):,} signals "
          f"-> {args.out}", file=sys.stderr)
    if result.stats.get("late"):
        print(f"dropped {result.stats['late']:,} late trades", file=sys.stderr)
    return 0


def _write(path: str, records: list, model: type) -> None:
    """Records to a new file: Parquet when the name ends in .parquet, else JSON Lines."""
    try:
        if path.endswith(".parquet"):
            from engine.sinks.parquet import ParquetSink
            with ParquetSink(path, model) as sink:
                sink.write(records)
        else:
            from engine.sinks.jsonl import JsonlSink
            with JsonlSink(path, append=False) as sink:
                sink.write(records)
    except OSError as e:
        raise InputError(f"{path}: cannot write: {e.strerror or e}") from None


def cmd_indicators(args: argparse.Namespace) -> int:
    from engine.indicator_table import indicator_table
    from engine.sources.columns import parse_column_map

    flags.check_out_file("--out", args.out)
    table = indicator_table(args.input, args.timeframe, args.indicators, market=args.market,
                            columns=parse_column_map(args.columns))
    import pyarrow.parquet as pq
    try:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, args.out)
    except OSError as e:
        raise InputError(f"{args.out}: cannot write: {e.strerror or e}") from None
    print(f"wrote {table.num_rows:,} bars x {table.num_columns} columns to {args.out}", file=sys.stderr)
    return 0


def cmd_structure(args: argparse.Namespace) -> int:
    """Every structure, order-block and gap event of one file, in confirmation order."""
    import numpy as np

    from engine.indicator_table import candles_for
    from engine.pipeline import Chain, build_operators
    from engine.sources.columns import parse_column_map
    from schemas.batches import FeatureBatch
    from schemas.records import StructureEvent

    config = make_config({"timeframes": "--timeframe", "swing_left": "--swing-length",
                          "swing_right": "--swing-length", "break_by": "--break-by"},
                         timeframes=(args.timeframe,), swing_left=args.swing_length,
                         swing_right=args.swing_length, break_by=args.break_by)
    flags.check_out_file("--out", args.out)
    candles = candles_for(args.input, args.timeframe, args.market, parse_column_map(args.columns))
    candles = candles.take(np.lexsort((candles.market, candles.open_ts)))
    out = Chain(build_operators("structure", config)).update(FeatureBatch(candles, [], np.empty((len(candles), 0))))
    events = sorted(out.features.events, key=lambda e: (e.confirmed_ts, e.market, e.ts, e.kind, e.id))
    _write(args.out, events, StructureEvent)
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    summary = ", ".join(f"{n:,} {k}" for k, n in sorted(kinds.items()))
    print(f"{len(candles):,} bars -> {len(events):,} events ({summary}) -> {args.out}", file=sys.stderr)
    return 0


def cmd_signals(args: argparse.Namespace) -> int:
    """Signals of a strategy over one file, in canonical order."""
    from engine.pipeline import run_in_process
    from engine.sources.replay import Replay
    from schemas.records import Signal

    config = pipeline_config(args)
    check_strategy(config)
    flags.check_out_file("--out", args.out)
    result = run_in_process(Replay(load_inputs(args.input, args.market, args.columns),
                                   batch_size=config.batch_size), config)
    _write(args.out, result.signals, Signal)
    flagged = sum(1 for s in result.signals if s.flags)
    print(f"{result.candles:,} bars -> {len(result.signals):,} signals ({flagged:,} flagged) -> {args.out}",
          file=sys.stderr)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from engine.venues.sources import build_sources, load_config
    if args.out_dir:
        flags.check_out_dir("--out-dir", args.out_dir)
    if not args.out_dir or not args.no_services:  # the default --out-dir and the embedded services live there
        flags.check_out_dir("--data-dir", args.data_dir)
    if not args.no_dashboard:
        flags.check_port_free("--dashboard-port", "127.0.0.1", args.dashboard_port)
    if not args.no_services:
        flags.check_port_free("--http-port", args.host, args.http_port)
        flags.check_port_free("--ws-port", args.host, args.ws_port)
        from serve.ingress_mode import use_serve_mode
        use_serve_mode(args.serve_mode)  # Ray reads it when it starts
    sources, urls = list(args.source or []), list(args.venue_url or [])
    if args.config:
        file_sources, file_urls = load_config(args.config)
        sources, urls = file_sources + sources, file_urls + urls  # the command line wins
    if sources:
        from app.run_venues import run_venues
        return run_venues(args, pipeline_config(args), build_sources(sources, urls))
    if urls:
        raise CommandLineError("--venue-url needs a --source (or sources in --config)")
    from app.run import run_live
    return run_live(args, pipeline_config(args))


def cmd_chain_follow(args: argparse.Namespace) -> int:
    from app.chain_follow import cmd_follow
    return cmd_follow(args)


def build_parser() -> argparse.ArgumentParser:
    parser = CliParser(prog=PROG, description="Real-time crypto market intelligence on Ray.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="the main job: replay the bundled real sample live through the engine on Ray",
                         description="Start a local Ray instance, replay the bundled real sample (or --input files) "
                                     "in a loop at accelerated real time across several markets, and write "
                                     "signals to --out-dir. Candles, structure events, signals and risk scores go "
                                     "to Postgres and the Redis live feed, and the HTTP API, WebSocket feed and "
                                     "dashboard serve them: by default from a PostgreSQL and a Redis this job "
                                     "starts itself under --data-dir (stopped on exit), or from the services "
                                     "DATABASE_URL and REDIS_URL name. Ctrl-C or SIGTERM stops cleanly.")
    run.add_argument("--input", nargs="+", default=None,
                     help="trade/candle files or synthetic:MARKETS:TRADES[:SEED] (default: the bundled real sample)")
    run.add_argument("--speed", type=flags.positive_float, default=3600.0,
                     help="replay speed, x real time (default 3600)")
    run.add_argument("--max-seconds", type=flags.non_negative_float, default=None, help="stop after this many seconds")
    run.add_argument("--data-dir", default="data",
                     help="where the embedded PostgreSQL and Redis keep their data, and the default --out-dir "
                          "parent (default ./data)")
    run.add_argument("--out-dir", default=None, help="where signals, status files and the admin key file go "
                                                     "(default <data-dir>/out)")
    run.add_argument("--no-services", action="store_true",
                     help="files only: no Postgres, Redis, HTTP API, WebSocket feed or dashboard")
    run.add_argument("--dashboard-port", type=flags.port, default=8265, help="Ray dashboard port on 127.0.0.1")
    run.add_argument("--no-dashboard", action="store_true", help="do not start the Ray dashboard")
    run.add_argument("--no-models", action="store_true",
                     help="no feature rows, model scores or model serving (default: serve the registry's promoted "
                          "model and policy, training small ones on the bundled sample when there are none)")
    run.add_argument("--host", default="127.0.0.1", help="address the HTTP API binds (default 127.0.0.1)")
    run.add_argument("--http-port", type=flags.port, default=8000, help="HTTP API port (default 8000)")
    run.add_argument("--ws-port", type=flags.port, default=8001,
                     help="WebSocket live feed port, beside Serve (default 8001)")
    run.add_argument("--serve-mode", choices=("proxy", "haproxy"),
                     default=os.environ.get("CRYPTO_INTEL_SERVE_MODE", "proxy"),
                     help="Serve's HTTP ingress: proxy (Serve's Python proxy) or haproxy (HAProxy straight to the "
                          "replicas, throughput-optimised; replica ports then listen on every interface; "
                          "default proxy, or CRYPTO_INTEL_SERVE_MODE)")
    run.add_argument("--api-replicas", type=flags.int_at_least(1), default=1, help="HTTP API replicas (default 1)")
    run.add_argument("--api-cpus", type=flags.non_negative_float, default=0.0,
                     help="logical CPUs each API replica reserves (default 0: it takes none of the engine's)")
    run.add_argument("--checkpoint-s", type=flags.positive_float, default=30.0,
                     help="seconds between shard checkpoints to Redis when REDIS_URL is set (default 30)")
    run.add_argument("--source", action="append", metavar="VENUE:SYMBOLS",
                     help="follow a venue live instead of the sample, e.g. binance:BTCUSDT,ETHUSDT (repeatable; "
                          "venues: binance, binance_futures, coinbase, kraken, bybit, okx)")
    run.add_argument("--venue-url", action="append", metavar="VENUE.ws|rest=URL",
                     help="base URL of a venue's WebSocket or REST API, e.g. binance.ws=ws://127.0.0.1:9001")
    run.add_argument("--config", default=None, help="TOML file with sources = [...] and [venue_urls]")
    run.add_argument("--repair-hold-s", type=flags.non_negative_float, default=2.0,
                     help="how long a market's trades wait for a gap repair before going on degraded (default 2)")
    _add_pipeline_args(run)
    run.set_defaults(func=cmd_run, batch_size=512, default_linger_ms=0.0)

    replay = sub.add_parser("replay", help="replay files at maximum speed and write the signal stream",
                            description="Replay trade or candle files as fast as possible through the pipeline "
                                        "(on Ray, or --in-process) and write signals in canonical order.")
    replay.add_argument("--input", nargs="+", required=True,
                        help="Parquet, CSV or Feather files of trades or candles, or synthetic:MARKETS:TRADES[:SEED] "
                             "for seeded synthetic trades")
    replay.add_argument("--out", required=True, help="signals file to write: JSON Lines, or Parquet if it ends in .parquet")
    replay.add_argument("--events-out", default=None, help="also write structure events (JSON Lines or .parquet)")
    replay.add_argument("--in-process", action="store_true", help="run without Ray, in this process")
    _add_pipeline_args(replay)
    replay.set_defaults(func=cmd_replay, default_linger_ms=50.0)

    st = sub.add_parser("structure", help="write every structure, order-block and gap event of a file",
                        description="Build candles (from trades, or read candles) and write each confirmed swing, "
                                    "BOS/CHoCH and fair value gap event with the bar it refers to and the bar "
                                    "that confirmed it.")
    st.add_argument("--input", required=True, help="Parquet, CSV or Feather file of trades or candles")
    st.add_argument("--timeframe", required=True, type=flags.timeframe, help="candle timeframe, e.g. 15m")
    st.add_argument("--swing-length", type=flags.positive_int, default=5,
                    help="bars left and right confirming a swing (default 5)")
    st.add_argument("--break-by", choices=["close", "wick"], default="close", help="what breaks a swing level")
    st.add_argument("--out", required=True, help="events file: JSON Lines, or Parquet if it ends in .parquet")
    _add_input_args(st)
    st.set_defaults(func=cmd_structure)

    sig = sub.add_parser("signals", help="write the signals of a strategy over files",
                         description="Run the pipeline in-process over trade or candle files and write the "
                                     "strategy's signals with reasons and risk, sorted by (ts, market, kind).")
    sig.add_argument("--input", nargs="+", required=True, help="Parquet, CSV or Feather files of trades or candles")
    sig.add_argument("--out", required=True, help="signals file: JSON Lines, or Parquet if it ends in .parquet")
    _add_pipeline_args(sig)
    sig.set_defaults(func=cmd_signals, default_linger_ms=0.0)

    ind = sub.add_parser("indicators", help="compute indicators over a file of trades or candles",
                         description="Build candles (from trades, or read candles) and add one column per "
                                     "indicator output, named <name>_<params joined by _>.")
    ind.add_argument("--input", required=True, help="Parquet, CSV or Feather file of trades or candles")
    ind.add_argument("--timeframe", default="1m", type=flags.timeframe, help="candle timeframe (default 1m)")
    ind.add_argument("--indicators", required=True, type=flags.indicator_specs,
                     help="comma-separated specs, e.g. \"rsi:14,ema:20,macd:12:26:9,bbands:20:2,sar:0.02:0.2\"")
    ind.add_argument("--out", required=True, help="Parquet file to write")
    _add_input_args(ind)
    ind.set_defaults(func=cmd_indicators)

    from app.backtest import add_backtest_parser
    add_backtest_parser(sub)
    from app.ml import add_ml_parser
    add_ml_parser(sub)
    from app.rl import add_rl_parser
    add_rl_parser(sub)
    from app.chain import add_chain_parser
    from app.chain_follow_args import add_follow_parser
    from app.db import add_db_parser
    from app.venues import add_venues_parser
    from app.users import add_users_parser
    add_db_parser(sub)
    add_users_parser(sub)
    add_venues_parser(sub)
    add_follow_parser(add_chain_parser(sub), cmd_chain_follow)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
    except SystemExit as e:
        if e.code == 2:  # the parser has printed its one-line error
            return 2
        raise
    command = _command(args)
    if extra:
        print(f"{PROG} {command}: error: unrecognized arguments: {' '.join(extra)}; see {PROG} {command} --help",
              file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except USER_ERRORS as e:
        print(f"{PROG} {command}: error: {flags.one_line(str(e))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


def _command(args: argparse.Namespace) -> str:
    """The command as typed, e.g. ``replay`` or ``db migrate``."""
    sub = getattr(args, f"{args.command}_command", None)
    return f"{args.command} {sub}" if sub else args.command


if __name__ == "__main__":
    sys.exit(main())
