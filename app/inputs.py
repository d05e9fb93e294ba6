"""Turning command-line values into a pipeline config and loaded inputs, shared by every command and job."""

from __future__ import annotations

import argparse
import sys

from engine.config import STAGES, PipelineConfig
from schemas.errors import CryptoIntelError
from schemas.timeframes import parse_timeframe


class CommandLineError(CryptoIntelError, ValueError):
    """A command-line value is unusable."""


def pipeline_config(args: argparse.Namespace) -> PipelineConfig:
    lateness = 0 if args.lateness in ("0", "0s") else parse_timeframe(args.lateness)
    if args.shards < 1 or args.batch_size < 1:
        raise CommandLineError("--shards and --batch-size must be at least 1")
    try:
        return PipelineConfig(
            timeframes=tuple(t.strip() for t in args.timeframes.split(",") if t.strip()),
            lateness_ns=lateness, gaps=args.gaps, strategy=args.strategy,
            indicators=tuple(s for s in args.indicators.split(",") if s.strip()),
            swing_left=args.swing, swing_right=args.swing, break_by=args.break_by,
            analyses=tuple(a.strip() for a in args.analyses.split(",") if a.strip() and a.strip() != "none"),
            shards={s: args.shards for s in STAGES},
            fused=args.fused, batch_size=args.batch_size,
            linger_ms=args.linger_ms if args.linger_ms is not None else args.default_linger_ms)
    except ValueError as e:
        raise CommandLineError(str(e).splitlines()[-1] if "validation error" in str(e) else str(e)) from None


def load_inputs(paths: list[str], market: str | None, columns: str | None = None):
    from engine.sources.columns import parse_column_map
    from engine.sources.files import load_any

    mapping = parse_column_map(columns)
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
    from engine.pipeline import build_operators
    build_operators("indicators", config)
    build_operators("signals", config)
