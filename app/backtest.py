"""``crypto-intel backtest``: run a strategy through the simulated broker, check it for look-ahead, sweep its
parameters on Ray; the files each writes."""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from app import flags
from app.inputs import CommandLineError, load_inputs
from schemas.errors import ConfigError, InputError
from schemas.json_safe import json_safe

ACTIONS = ("run", "check", "sweep")


def add_backtest_parser(sub) -> None:
    bt = sub.add_parser(
        "backtest", help="backtest a strategy; `backtest check` finds look-ahead; `backtest sweep` runs a grid",
        description="backtest [run] runs a strategy over history through the live operators and a simulated "
                    "broker and writes trades, fills, equity, metrics and an HTML report; `backtest check` reruns "
                    "it on truncated and perturbed histories to find look-ahead and reports recursive indicator "
                    "warm-ups; `backtest sweep --grid ...` runs every parameter combination x market as Ray tasks.")
    bt.add_argument("action", nargs="?", choices=ACTIONS, default="run", help="run (default), check or sweep")
    bt.add_argument("--input", nargs="+", required=True, help="Parquet, CSV or Feather files of trades or candles")
    bt.add_argument("--strategy", default="default",
                    help="built-in strategy name, a TOML file, or a Python file (STRATEGY and columns(); "
                         "runs with --engine vector)")
    bt.add_argument("--params", default="", type=_params_flag, help="strategy parameters, e.g. rsi_len=10,atr_mult=2.5")
    bt.add_argument("--timeframe", default=None, type=flags.timeframe,
                    help="bar length built from trades (default 1m; candle files keep their own)")
    bt.add_argument("--engine", choices=["event", "vector"], default="event",
                    help="event: the live operators in micro-batches (default); vector: whole arrays, for "
                         "strategies over indicator and candle columns")
    bt.add_argument("--fill", choices=["next_open", "close"], default="next_open",
                    help="market orders fill at the next bar's open (default) or the signal bar's close")
    bt.add_argument("--fee", type=flags.non_negative_float, default=0.001, help="taker fee fraction (default 0.001)")
    bt.add_argument("--maker-fee", type=float, default=None, help="maker fee fraction for limit fills (default: --fee)")
    bt.add_argument("--slippage-bps", type=flags.non_negative_float, default=0.0,
                    help="adverse slippage on market and stop fills, in basis points (default 0)")
    bt.add_argument("--slippage-volume", type=flags.non_negative_float, default=0.0,
                    help="extra slippage fraction per unit of size / bar volume (default 0)")
    bt.add_argument("--mode", choices=["long-only", "short-only", "long-short"], default="long-only")
    bt.add_argument("--size", default="equity:1", help="fixed:Q | cash:X | equity:F | risk:R (default equity:1)")
    bt.add_argument("--cash", type=flags.positive_float, default=10_000.0, help="starting cash (default 10000)")
    bt.add_argument("--leverage", type=flags.positive_float, default=1.0,
                    help="gross notional at most this x equity (default 1)")
    bt.add_argument("--intrabar", choices=["stop", "target", "ohlc"], default="stop",
                    help="a bar touching stop and target: the stop wins (default), the target, or the OHLC path")
    bt.add_argument("--entry", choices=["market", "limit", "stop"], default="market", help="entry order type")
    bt.add_argument("--entry-offset-bps", type=flags.non_negative_float, default=0.0,
                    help="limit entries this far better than the signal price, stop entries this far worse")
    bt.add_argument("--entry-bars", type=flags.positive_int, default=1, help="bars a limit/stop entry works (default 1)")
    bt.add_argument("--funding", nargs="+", default=[], metavar="MARKET=FILE",
                    help="funding rates of a perpetual: files with a time column (date/ts) and a rate column "
                         "(rate/funding_rate/open)")
    bt.add_argument("--start", default=None, help="first bar to trade (ISO time or ns); earlier bars warm up")
    bt.add_argument("--end", default=None, help="last bar to trade (ISO time or ns)")
    bt.add_argument("--out", default=None, help="output directory (run, sweep) or JSON file (check)")
    # check
    bt.add_argument("--cuts", type=flags.positive_int, default=3, help="check: cut points (default 3)")
    # sweep
    bt.add_argument("--grid", default=None, help='sweep: e.g. "rsi_len=7..21:7,atr_mult=1.5,2,3"')
    bt.add_argument("--train", default=None, help="sweep: walk-forward training window, e.g. 30d")
    bt.add_argument("--test", default=None, help="sweep: walk-forward test window, e.g. 7d")
    bt.add_argument("--rank-by", default="sharpe", choices=["sharpe", "total_return", "profit_factor", "win_rate"],
                    help="sweep: ranking metric (default sharpe)")
    bt.add_argument("--ray-address", default=None, help="sweep: Ray cluster address (auto: the running one)")
    bt.add_argument("--serial", action="store_true", help="sweep: run in this process, not on Ray")
    bt.add_argument("--market", default=None, help="market name for single-market files without a symbol column")
    bt.add_argument("--columns", default=None, metavar="FIELD=COLUMN,...", help="rename input columns")
    bt.set_defaults(func=cmd_backtest)


def _params_flag(text: str) -> dict:
    out: dict = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        name, eq, value = part.partition("=")
        if not eq or not name.strip():
            raise argparse.ArgumentTypeError(f"bad parameter {part!r}: write name=value, e.g. rsi_len=10")
        try:
            v = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"parameter {name}: {value!r} is not a number") from None
        if not math.isfinite(v):
            raise argparse.ArgumentTypeError(f"parameter {name}: {value!r} is not a finite number")
        out[name.strip()] = int(v) if v.is_integer() and "." not in value else v
    return out


def _time_flag(flag: str, text: str | None) -> int | None:
    if text is None:
        return None
    if text.lstrip("-").isdigit():
        return int(text)
    import datetime as dt
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandLineError(f"{flag} {text}: not an ISO time (2021-01-31T00:00Z) or ns since the epoch") from None
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 10**9 + t.microsecond * 1000


def _settings(args):
    from engine.backtest.settings import BacktestSettings, Size
    try:
        return BacktestSettings(fill=args.fill, fee=args.fee, maker_fee=args.maker_fee, slippage_bps=args.slippage_bps,
                                slippage_volume=args.slippage_volume, mode=args.mode, size=Size.parse(args.size),
                                cash=args.cash, leverage=args.leverage, intrabar=args.intrabar, entry=args.entry,
                                entry_offset_bps=args.entry_offset_bps, entry_bars=args.entry_bars)
    except ConfigError as e:
        msg = str(e)
        raise CommandLineError(msg if msg.startswith("--") else f"--size {args.size}: {msg}") from None


def load_python_strategy(path: str):
    """A strategy file in Python: ``STRATEGY`` (a strategy document as in TOML, or a Strategy) and optionally
    ``columns(bars) -> {name: array}`` computing its own columns from one market's whole series."""
    from engine.signals.rules import Strategy, strategy_from_doc
    spec = importlib.util.spec_from_file_location(f"strategy_{Path(path).stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # the user's code: say where it failed, in one line
        raise InputError(f"--strategy {path}: the file failed to load: {type(e).__name__}: {e}") from None
    doc = getattr(module, "STRATEGY", None)
    if isinstance(doc, dict):
        strategy = strategy_from_doc({"name": Path(path).stem, **doc}, Path(path).stem, path)
    elif isinstance(doc, Strategy):
        strategy = doc
    else:
        raise InputError(f"--strategy {path}: define STRATEGY, a strategy document (dict) or a Strategy")
    fn = getattr(module, "columns", None)
    return strategy, fn


def _strategy(args):
    """(strategy name or object, extra columns function, engine) as the flags ask."""
    if args.strategy.endswith(".py"):
        if not Path(args.strategy).is_file():
            raise InputError(f"--strategy {args.strategy}: no such file")
        strategy, fn = load_python_strategy(args.strategy)
        if args.engine != "vector":
            print("a Python strategy file runs with --engine vector", file=sys.stderr)
        return strategy, fn, "vector"
    from engine.signals.rules import load_strategy
    try:
        load_strategy(args.strategy, args.params or None)
    except ConfigError as e:
        msg = str(e).removeprefix(f"{Path(args.strategy)}: ")
        raise CommandLineError(f"--strategy {args.strategy}: {msg}") from None
    return args.strategy, None, args.engine


def _funding(args, inputs) -> dict | None:
    if not args.funding:
        return None
    from engine.sources.readers import read_table
    from engine.sources.timestamps import to_ns
    out = {}
    for item in args.funding:
        market, eq, path = item.partition("=")
        if not eq:
            markets = sorted({m for b in inputs for m in b.markets})
            if len(markets) != 1:
                raise CommandLineError(f"--funding {item}: write MARKET=FILE (markets: {', '.join(markets)})")
            market, path = markets[0], item
        if not Path(path).is_file():
            raise CommandLineError(f"--funding {item}: {path}: no such file")
        table = read_table(Path(path))[0]
        names = {n.lower(): n for n in table.column_names}
        tcol = next((names[n] for n in ("ts", "date", "time", "timestamp", "funding_time") if n in names), None)
        rcol = next((names[n] for n in ("rate", "funding_rate", "fundingrate", "open") if n in names), None)
        if tcol is None or rcol is None:
            raise CommandLineError(f"--funding {item}: needs a time column (ts/date) and a rate column "
                                   f"(rate/funding_rate/open); has {', '.join(table.column_names)}")
        ts = to_ns(table.column(tcol))
        order = np.argsort(ts, kind="stable")
        rate = table.column(rcol).to_numpy().astype(np.float64)
        if not np.isfinite(rate).all():
            raise CommandLineError(f"--funding {item}: rates must be finite numbers")
        out[market] = (ts[order], rate[order])
    return out


def cmd_backtest(args) -> int:
    if args.action == "check":
        return _cmd_check(args)
    if args.action == "sweep":
        return _cmd_sweep(args)
    return _cmd_run(args)


def _out_dir(args) -> Path:
    if not args.out:
        raise CommandLineError("--out: give the output directory, e.g. --out runs/sma")
    flags.check_out_dir("--out", args.out)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CommandLineError(f"--out {args.out}: is a file; give a directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_id(args, strategy, settings, inputs) -> str:
    h = hashlib.blake2b(digest_size=8)
    name = strategy if isinstance(strategy, str) else strategy.name
    version = strategy.version if not isinstance(strategy, str) else ""
    for p in args.input:
        st = os.stat(p) if not p.startswith("synthetic:") else None
        h.update(f"{p}:{st.st_size if st else ''}:{st.st_mtime_ns if st else ''}".encode())
    h.update(repr((name, version, sorted((args.params or {}).items()), settings.describe(), args.timeframe,
                   args.engine, args.start, args.end, args.funding)).encode())
    return "bt-" + h.hexdigest()


def _cmd_run(args) -> int:
    from engine.backtest.runner import run_backtest
    from engine.progress import Progress

    settings = _settings(args)
    strategy, extra, engine = _strategy(args)
    start, end = _time_flag("--start", args.start), _time_flag("--end", args.end)
    out = _out_dir(args)
    inputs = load_inputs(args.input, args.market, args.columns)
    funding = _funding(args, inputs)
    total = sum(len(b) for b in inputs)
    progress = Progress(total, "backtest")
    t0 = time.perf_counter()
    result = run_backtest(inputs, strategy, args.params or None, settings, args.timeframe, engine, funding, start, end,
                          progress=progress.advance, extra_columns=extra)
    elapsed = time.perf_counter() - t0
    progress.done = total
    progress.draw()
    progress.close()
    run_id = _run_id(args, strategy, settings, inputs)
    write_outputs(result, out, run_id, args.input)
    p = result.metrics["portfolio"]
    b = result.metrics["benchmark"]
    print(f"{len(result.bars):,} bars of {len(result.bars.markets)} market(s) in {elapsed:.2f}s "
          f"({len(result.bars) / max(elapsed, 1e-9):,.0f} bars/s, {engine}); {p['trades']:,} trades; "
          f"return {_pct(p['total_return'])} (buy and hold {_pct(b['total_return'])}), sharpe {_num(p['sharpe'])}, "
          f"max drawdown {_pct(p['max_drawdown'])}, fees {p['fees']:,.2f} -> {out}", file=sys.stderr)
    url = os.environ.get("DATABASE_URL")
    if url:
        _save(url, result, run_id, out)
    return 0


def _save(url: str, result, run_id: str, out: Path) -> None:
    from connectors.storage.backtests import save_backtest_sync
    try:
        save_backtest_sync(url, run_record(result, run_id, out))
    except (OSError, ConnectionError) as e:
        raise InputError(f"DATABASE_URL: cannot save the run (its files are in {out}): {e}") from None
    except Exception as e:  # asyncpg's errors: a refused login, a missing database
        if type(e).__module__.startswith("asyncpg"):
            raise InputError(f"DATABASE_URL: cannot save the run (its files are in {out}): {e}") from None
        raise
    print(f"saved run {run_id} to the backtests table", file=sys.stderr)


def run_record(result, run_id: str, out: Path | None) -> dict:
    """The ``backtests`` row of a run."""
    s = result.strategy
    return {"id": run_id, "strategy": s.name, "strategy_version": s.version, "params": json_safe(s.params),
            "settings": json_safe(result.settings.describe()), "timeframe": result.timeframe, "engine": result.engine,
            "markets": list(result.bars.markets), "start_ts": result.window[0], "end_ts": result.window[1],
            "bars": len(result.bars), "trades": int(len(result.ledger.trades["pnl"])),
            "metrics": json_safe(result.metrics), "out_dir": str(out) if out else None}


def _pct(v) -> str:
    return "n/a" if v is None else f"{v:+.2%}"


def _num(v) -> str:
    return "n/a" if v is None else f"{v:.2f}"


def tables(result) -> dict:
    """trades, fills and equity of a run as Arrow tables (the files' columns)."""
    import pyarrow as pa
    from engine.backtest.broker import REASONS
    names = np.array(result.bars.markets, dtype=object)
    t = result.ledger.trades
    trades = pa.table({
        "market": pa.array(names[t["market"]].tolist() if len(t["market"]) else [], pa.string()),
        "side": pa.array(["long" if s > 0 else "short" for s in t["side"]], pa.string()),
        "entry_ts": pa.array(t["entry_ts"], pa.int64()), "entry_price": pa.array(t["entry_price"], pa.float64()),
        "exit_ts": pa.array(t["exit_ts"], pa.int64()), "exit_price": pa.array(t["exit_price"], pa.float64()),
        "size": pa.array(t["size"], pa.float64()), "fees": pa.array(t["fees"], pa.float64()),
        "pnl": pa.array(t["pnl"], pa.float64()), "return": pa.array(t["return"], pa.float64()),
        "funding": pa.array(t["funding"], pa.float64()),
        "exit_reason": pa.array([REASONS[r] for r in t["exit_reason"]], pa.string())})
    f = result.ledger.fills
    fills = pa.table({
        "ts": pa.array(f["ts"], pa.int64()),
        "market": pa.array(names[f["market"]].tolist() if len(f["market"]) else [], pa.string()),
        "kind": pa.array(["funding" if k == 1 else "fill" for k in f["kind"]], pa.string()),
        "side": pa.array(["buy" if s > 0 else ("sell" if s < 0 else "") for s in f["side"]], pa.string()),
        "price": pa.array(f["price"], pa.float64()), "qty": pa.array(f["qty"], pa.float64()),
        "fee": pa.array(f["fee"], pa.float64()), "cash_flow": pa.array(f["cash_flow"], pa.float64()),
        "reason": pa.array([REASONS[r] for r in f["reason"]], pa.string())})
    e = result.ledger.equity
    equity = pa.table({"ts": pa.array(e["ts"], pa.int64()), "equity": pa.array(e["equity"], pa.float64()),
                       "cash": pa.array(e["cash"], pa.float64()), "exposure": pa.array(e["exposure"], pa.float64()),
                       "benchmark": pa.array(result.benchmark, pa.float64())})
    return {"trades": trades, "fills": fills, "equity": equity}


def write_outputs(result, out: Path, run_id: str, inputs: list[str]) -> None:
    import pyarrow.parquet as pq
    from app.backtest_report import render_report
    try:
        for name, table in tables(result).items():
            pq.write_table(table, out / f"{name}.parquet")
        doc = {"id": run_id, "strategy": result.strategy.name, "strategy_version": result.strategy.version,
               "params": result.strategy.params, "settings": result.settings.describe(),
               "timeframe": result.timeframe, "engine": result.engine, "inputs": inputs,
               "markets": result.bars.markets, "bars": len(result.bars), **result.metrics}
        (out / "metrics.json").write_text(json.dumps(json_safe(doc), indent=2, sort_keys=False) + "\n")
        (out / "report.html").write_text(render_report(result), encoding="utf-8")
    except OSError as e:
        raise InputError(f"--out {out}: cannot write: {e.strerror or e}") from None


def _cmd_check(args) -> int:
    from engine.backtest.check import bars_by_market, lookahead, recursion
    from engine.backtest.runner import run_backtest
    from engine.signals.rules import Strategy, load_strategy

    settings = _settings(args)
    strategy, extra, engine = _strategy(args)
    if args.out:
        flags.check_out_file("--out", args.out)
    inputs = load_inputs(args.input, args.market, args.columns)
    t0 = time.perf_counter()
    report = lookahead(inputs, strategy, args.params or None, settings, args.timeframe, engine, args.cuts, extra,
                       progress=lambda text: print(f"  rerun: {text}", file=sys.stderr))
    strat = strategy if isinstance(strategy, Strategy) else load_strategy(strategy, args.params or None)
    full = run_backtest(inputs, strategy, args.params or None, settings, args.timeframe, engine, extra_columns=extra)
    report["recursive"] = recursion(bars_by_market(full), strat)
    elapsed = time.perf_counter() - t0
    if report["ok"]:
        print(f"look-ahead: none found ({len(report['cuts'])} cuts, truncated and perturbed, "
              f"{len(report['columns_checked'])} columns, signals and trades) in {elapsed:.1f}s")
    else:
        print(f"LOOK-AHEAD: {len(report['leaks'])} finding(s); columns that leaked: "
              f"{', '.join(report['leaked_columns']) or 'none (signals/trades only)'}")
        for leak in report["leaks"][:20]:
            what = f"column {leak['column']}" if leak["kind"] == "column" else f"{leak['count']} {leak['kind']}(s)"
            print(f"  {leak['test']} at {_iso(leak['cut'])}: {what} of {leak['market']} changed, "
                  f"first at {_iso(leak['ts'])}")
    for r in report["recursive"]:
        if r["recursive"]:
            need = "does not settle within the data" if r["warmup_bars"] is None else f"{r['warmup_bars']} bars"
            print(f"recursive: {r['indicator']} depends on the history before it (lookback {r['lookback']}, "
                  f"warm-up needed {need})")
    if args.out:
        Path(args.out).write_text(json.dumps(json_safe(report), indent=2) + "\n")
    return 0 if report["ok"] else 1


def _iso(ns) -> str:
    import datetime as dt
    return dt.datetime.fromtimestamp(int(ns) / 1e9, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M")


def _cmd_sweep(args) -> int:
    from engine.backtest import sweep as sw
    from engine.progress import Progress

    if not args.grid:
        raise CommandLineError("--grid: a sweep needs a grid, e.g. --grid \"rsi_len=7..21:7,atr_mult=1.5,2,3\"")
    if bool(args.train) != bool(args.test):
        raise CommandLineError("--train and --test go together (walk-forward), e.g. --train 30d --test 7d")
    settings = _settings(args)
    strategy, extra, engine = _strategy(args)
    if not isinstance(strategy, str):
        raise CommandLineError("--strategy: a sweep runs built-in or TOML strategies")
    try:
        grid = sw.parse_grid(args.grid)
        combos = sw.combinations(grid)
        from engine.signals.rules import load_strategy
        for c in (combos[0], combos[-1]):
            load_strategy(strategy, c)
    except ConfigError as e:
        raise CommandLineError(str(e) if str(e).startswith("--") else f"--grid: {e}") from None
    out = _out_dir(args)
    inputs = load_inputs(args.input, args.market, args.columns)
    by_market = sw.split_by_market(inputs)
    windows = None
    if args.train:
        t0, t1 = sw.span_of(inputs)
        windows = sw.walk_forward(t0, t1, sw.parse_span(args.train, "--train"), sw.parse_span(args.test, "--test"))
        if not windows:
            raise CommandLineError(f"--train {args.train} --test {args.test}: longer than the data "
                                   f"({(t1 - t0) / 86_400e9:.1f} days)")
    tasks = sw.tasks_for(combos, sorted(by_market), windows)
    if windows:
        tasks += sw.tasks_for(combos, sorted(by_market), None)
    print(f"sweep: {len(combos)} combinations x {len(by_market)} markets"
          + (f" x {len(windows)} walk-forward windows (in and out of sample)" if windows else "")
          + f" = {len(tasks):,} backtests", file=sys.stderr)
    progress = Progress(len(tasks), "sweep")
    t_start = time.perf_counter()
    if args.serial:
        from actors.backtest_sweep import run_serial
        rows = run_serial(tasks, by_market, strategy, settings, args.timeframe, engine, progress.advance)
    else:
        from actors.backtest_sweep import run_on_ray
        from actors.runtime import start_ray, stop_ray
        own = args.ray_address is None
        if own:
            start_ray(dashboard=False)
        else:
            import ray
            ray.init(address=args.ray_address)
        try:
            rows = run_on_ray(tasks, by_market, strategy, settings, args.timeframe, engine, progress.advance)
        finally:
            if own:
                stop_ray()
            else:
                import ray
                ray.shutdown()
    elapsed = time.perf_counter() - t_start
    progress.done = len(tasks)
    progress.draw()
    progress.close()
    write_sweep(out, rows, sw.rank(rows, args.rank_by), sw.walk_forward_table(rows, args.rank_by) if windows else [],
                args, len(tasks), elapsed)
    return 0


def write_sweep(out: Path, rows: list[dict], ranking: list[dict], wf: list[dict], args, n_tasks: int,
                elapsed: float) -> None:
    import html

    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        pq.write_table(pa.Table.from_pylist(rows), out / "results.parquet")
        pq.write_table(pa.Table.from_pylist(ranking), out / "ranking.parquet")
        if wf:
            pq.write_table(pa.Table.from_pylist(wf), out / "walk_forward.parquet")
        cols = [c for c in (ranking[0] if ranking else {}) if c != "combo"]
        lines = [f"<!doctype html><meta charset='utf-8'><title>sweep {html.escape(args.strategy)}</title>",
                 "<style>body{font:14px system-ui;margin:24px}table{border-collapse:collapse}"
                 "td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:right}</style>",
                 f"<h1>Sweep of {html.escape(args.strategy)}</h1><p>{html.escape(args.grid)}; {n_tasks:,} backtests "
                 f"in {elapsed:.1f}s; ranked by mean {html.escape(args.rank_by)} over markets (full period)</p>"]
        if wf:
            lines.append("<h2>Walk-forward: best in sample, then out of sample</h2><table id='walk-forward'><tr>"
                         + "".join(f"<th>{html.escape(k)}</th>" for k in wf[0]) + "</tr>")
            for r in wf:
                lines.append("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>")
            lines.append("</table>")
        lines.append("<h2>Ranking (in sample: the whole period)</h2><table id='ranking'><tr><th>#</th>"
                     + "".join(f"<th>{html.escape(c)}</th>" for c in cols) + "</tr>")
        for i, r in enumerate(ranking, 1):
            lines.append(f"<tr><td>{i}</td>" + "".join(f"<td>{_cell(r[c])}</td>" for c in cols) + "</tr>")
        lines.append("</table>")
        (out / "ranking.html").write_text("\n".join(lines), encoding="utf-8")
    except OSError as e:
        raise InputError(f"--out {out}: cannot write: {e.strerror or e}") from None
    print(f"{n_tasks:,} backtests in {elapsed:.1f}s -> {out}/results.parquet, ranking.html", file=sys.stderr)
    for i, r in enumerate(ranking[:5], 1):
        params = ", ".join(f"{k[2:]}={v}" for k, v in r.items() if k.startswith("p_"))
        print(f"  {i}. {params}: mean sharpe {_num(_f(r['sharpe']))}, return {_pct(_f(r['total_return']))}, "
              f"{r['trades']:.0f} trades per market", file=sys.stderr)
    if wf:
        oos = [r["out_of_sample_return"] for r in wf if r["out_of_sample_return"] == r["out_of_sample_return"]]
        ins = [r["in_sample_return"] for r in wf if r["in_sample_return"] == r["in_sample_return"]]
        print(f"  walk-forward over {len(wf)} windows: mean in-sample return {_pct(_f(np.mean(ins)) if ins else None)}, "
              f"out of sample {_pct(_f(np.mean(oos)) if oos else None)}", file=sys.stderr)


def _f(v):
    return None if v is None or v != v else float(v)


def _cell(v) -> str:
    import html
    if isinstance(v, float):
        return "" if v != v else f"{v:.4g}"
    return html.escape(str(v))
