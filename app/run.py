"""``crypto-intel run``: the bundled real sample replayed live through the sharded pipeline on Ray."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from app.services import StoreSettings, job_out_dir, run_job, save_checkpoint, start_outputs
from engine.config import PipelineConfig
from engine.sources.align import align_starts, last_event_ts


def run_live(args: argparse.Namespace, config: PipelineConfig) -> int:
    """Run until --max-seconds, Ctrl-C or SIGTERM, printing a one-line status; signals go to --out-dir."""
    from app.inputs import check_strategy, load_inputs
    from engine.sources.sample import sample_paths

    check_strategy(config)
    if not args.no_models:  # feature rows live, scored by the registry's promoted model and policy
        from serve.models import registry_root
        config = config.model_copy(update={"features": True, "models_dir": str(registry_root(args.data_dir))})
    paths = args.input or [str(p) for p in sample_paths()]
    inputs = align_starts(load_inputs(paths, args.market, args.columns))
    out_dir = job_out_dir(args)
    return run_job(args, config, out_dir, lambda services, _url: _replay_live(args, config, inputs, out_dir, services))


def _replay_live(args: argparse.Namespace, config: PipelineConfig, inputs: list, out_dir: Path,
                 services: StoreSettings) -> int:
    from engine.sources.replay import Replay

    signals_path = out_dir / "signals.jsonl"
    print(f"replaying {len(inputs)} inputs at x{args.speed:g} real time; signals -> {signals_path}"
          f"{services.describe()}; Ctrl-C or SIGTERM stops", file=sys.stderr)
    outputs = start_outputs(args, config, services, out_dir)
    pipe, checkpoints = outputs.pipe, outputs.checkpoints
    last_checkpoint = time.monotonic()
    replay = Replay(inputs, batch_size=config.batch_size, speed=args.speed, loop=True, max_idle_s=1.0)
    t0 = last = time.monotonic()
    sent_at_last = 0
    source_ts = 0
    tty = sys.stderr.isatty()
    stopped = "time limit"
    try:
        for batch in replay:
            source_ts = max(source_ts, last_event_ts(batch))
            pipe.send(batch, {"replay": replay.offset})
            now = time.monotonic()
            if now - last >= 1.0:
                if config.linger_ms:
                    pipe.tick()  # lingering partial batches go out even when the source is quiet
                st = pipe.status()
                rate = (pipe.rows - sent_at_last) / (now - last)
                lag_s = (source_ts - st["last_event_ts"]) / 1e9 if st["last_event_ts"] else float("nan")
                line = (f"{now - t0:6.1f}s  {rate:,.0f} events/s  {st['candles']:,} candles  "
                        f"{st['signals']:,} signals  latency p50 {st['latency_p50_ms']:.1f} ms "
                        f"p99 {st['latency_p99_ms']:.1f} ms  event-time lag {lag_s:,.0f}s")
                print(("\r\x1b[2K" + line) if tty else line, end="" if tty else "\n", file=sys.stderr, flush=True)
                last, sent_at_last = now, pipe.rows
            if checkpoints is not None and now - last_checkpoint >= args.checkpoint_s:
                save_checkpoint(checkpoints, pipe)
                last_checkpoint = time.monotonic()
            if args.max_seconds is not None and now - t0 >= args.max_seconds:
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        if tty:
            print(file=sys.stderr)
        try:
            pipe.finish()
            st = pipe.status()
            print(f"stopped ({stopped}) after {time.monotonic() - t0:.1f}s: {pipe.rows:,} events, "
                  f"{st['candles']:,} candles, {st['signals']:,} signals -> {signals_path}", file=sys.stderr)
            outputs.close(services)
        finally:
            pipe.shutdown()
    return 0
