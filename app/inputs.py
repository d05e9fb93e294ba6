"""Turning command-line values into a pipeline config and loaded inputs, shared by every command and job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import ValidationError

from engine.config import STAGES, PipelineConfig
from schemas.errors import ConfigError, CryptoIntelError, InputError
from schemas.timeframes import parse_timeframe


class CommandLineError(CryptoIntelError, ValueError):
    """A command-line value is unusable."""


# PipelineConfig fields -> the flags that set them, to name the flag when a value is refused
PIPELINE_FLAGS = {"timeframes": "--timeframes", "lateness_ns": "--lateness", "gaps": "--gaps",
                  "strategy": "--strategy", "indicators": "--indicators", "swing_left": "--swing",
                  "swing_right": "--swing", "break_by": "--break-by", "analyses": "--analyses",
                  "shards": "--shards", "fused": "--fused", "batch_size": "--batch-size",
                  "linger_ms": "--linger-ms"}


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    try:
        lateness = 0 if args.lateness.strip() in ("0", "0s") else parse_timeframe(args.lateness)
    except ConfigError as e:
        raise CommandLineError(f"--lateness: {e}") from None
    if args.shards < 1 or args.batch_size < 1:
        raise CommandLineError("--shards and --batch-size must be at least 1")
    return make_config(PIPELINE_FLAGS,
                       timeframes=tuple(t.strip() for t in args.timeframes.split(",") if t.strip()),
                       lateness_ns=lateness, gaps=args.gaps, strategy=args.strategy,
                       indicators=tuple(s for s in args.indicators.split(",") if s.strip()),
                       swing_left=args.swing, swing_right=args.swing, break_by=args.break_by,
                       analyses=tuple(a.strip() for a in args.analyses.split(",")
                                      if a.strip() and a.strip() != "none"),
                       shards={s: args.shards for s in STAGES},
                       fused=args.fused, batch_size=args.batch_size,
                       linger_ms=args.linger_ms if args.linger_ms is not None else args.default_linger_ms)


def make_config(flags: dict[str, str], **fields) -> PipelineConfig:
    """A PipelineConfig, or a CommandLineError naming the flag of each refused field and why."""
    try:
        return PipelineConfig(**fields)
    except ValidationError as e:
        raise CommandLineError("; ".join(_explain(err, flags) for err in e.errors(include_url=False))) from None


def _explain(err: dict, flags: dict[str, str]) -> str:
    """One pydantic error as ``--flag: what is wrong``."""
    field = str(err["loc"][0]) if err.get("loc") else ""
    flag = flags.get(field, field)
    kind, ctx, value = err.get("type", ""), err.get("ctx") or {}, err.get("input")
    if kind == "value_error" and "error" in ctx:
        why = str(ctx["error"])
    elif kind == "greater_than_equal":
        why = f"must be at least {ctx['ge']}, got {value!r}"
    elif kind == "greater_than":
        why = f"must be greater than {ctx['gt']}, got {value!r}"
    elif kind == "literal_error":
        why = f"{value!r} is not one of {ctx['expected']}"
    else:
        msg = str(err.get("msg", "invalid value"))
        why = f"{msg[:1].lower()}{msg[1:]}, got {value!r}"
    return f"{flag}: {why}"


def load_inputs(paths: list[str], market: str | None, columns: str | None = None):
    from engine.sources.columns import parse_column_map
    from engine.sources.files import load_any

    mapping = parse_column_map(columns)
    for p in paths:  # every path first: a typo in the last one fails before the first is read
        check_input_file(p)
    batches = []
    for p in paths:
        if p.startswith("synthetic:"):
            batches.append(synthetic_input(p))
            print(f"generated {len(batches[-1]):,} synthetic trades of {len(batches[-1].markets)} markets",
                  file=sys.stderr)
            continue
        batch, rejects = load_any(p, market=market, columns=mapping)
        kind = "candles" if batch.__class__.__name__ == "CandleBatch" else "trades"
        print(f"loaded {len(batch):,} {kind} of {', '.join(batch.markets)} from {p}", file=sys.stderr)
        if rejects.total:
            print(f"  rejected {rejects.summary()}", file=sys.stderr)
        batches.append(batch)
    return batches


def check_input_file(path: str) -> None:
    """``path`` names an existing regular file (``synthetic:...`` inputs pass)."""
    if path.startswith("synthetic:"):
        return
    p = Path(path)
    if not p.exists():
        raise InputError(f"{path}: no such file")
    if not p.is_file():
        raise InputError(f"{path}: not a file")


def synthetic_input(spec: str):
    """``synthetic:MARKETS:TRADES[:SEED]`` -> seeded synthetic trades (load tests, never real data)."""
    from engine.sources.synthetic import synthetic_trades

    parts = spec.split(":")[1:]
    try:
        markets, trades, seed = (int(x) for x in (parts + ["1"])[:3])
        if len(parts) not in (2, 3) or markets < 1 or trades < 1:
            raise ValueError
    except ValueError:
        raise CommandLineError(f"bad input {spec!r}: write synthetic:MARKETS:TRADES[:SEED], "
                                  "e.g. synthetic:100:1000000") from None
    return synthetic_trades(n_markets=markets, n_trades=trades, seed=seed)


def check_strategy(config: PipelineConfig) -> None:
    """Fail fast on a bad strategy or indicator spec, before any data or Ray starts."""
    from engine.indicators.registry import parse_spec
    from engine.pipeline import build_operators
    from engine.signals.rules import load_strategy
    try:
        for spec in config.indicators:
            parse_spec(spec)
    except ConfigError as e:
        raise CommandLineError(f"--indicators: {e}") from None
    try:
        load_strategy(config.strategy)
        build_operators("indicators", config)
        build_operators("signals", config)
    except ConfigError as e:
        msg = str(e)
        msg = msg.removeprefix(f"{Path(config.strategy)}: ")  # a strategy file's errors start with its path
        raise CommandLineError(f"--strategy {config.strategy}: {msg}") from None
