"""``crypto-intel run --source VENUE:SYMBOLS``: live venue data through the sharded pipeline on Ray.

One source actor per venue keeps its connections supervised; this driver drains them every
``--linger-ms`` (default 50 ms), sends the trades on, records venue events (``venue-events.jsonl``,
Postgres ``venue_events``, the ``alerts`` channel), tells the sink which bars are degraded, and
publishes bars rebuilt by late repairs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import ray

from app.services import StoreSettings, job_out_dir, run_job, save_checkpoint, start_outputs
from connectors.venues.supervisor import SupervisorConfig
from engine.config import PipelineConfig
from engine.venues.quality import DataQuality
from engine.venues.sources import SourceSpec

LOUD = ("gap", "repair", "degraded", "unrepaired", "resync")


def run_venues(args: argparse.Namespace, config: PipelineConfig, specs: list[SourceSpec]) -> int:
    """Follow live venues until --max-seconds, Ctrl-C or SIGTERM; signals go to --out-dir."""
    from app.inputs import check_strategy

    check_strategy(config)
    out_dir = job_out_dir(args)
    return run_job(args, config, out_dir, lambda services, _url: _follow_venues(args, config, specs, out_dir, services))


def _follow_venues(args: argparse.Namespace, config: PipelineConfig, specs: list[SourceSpec], out_dir: Path,
                   services: StoreSettings) -> int:
    from actors.venue_source import VenueSourceActor

    signals_path = out_dir / "signals.jsonl"
    for s in specs:
        print(f"source {s.venue}: {', '.join(s.symbols)}"
              f"{' (ws ' + s.ws_url + ')' if s.ws_url else ''}{' (rest ' + s.rest_url + ')' if s.rest_url else ''}",
              file=sys.stderr)
    outputs = start_outputs(args, config, services, out_dir)
    pipe, checkpoints, store = outputs.pipe, outputs.checkpoints, outputs.store
    sink = pipe.topology.sink
    sources = [VenueSourceActor.remote(s, SupervisorConfig(hold_s=args.repair_hold_s)) for s in specs]
    ray.get([a.start.remote() for a in sources])
    quality = DataQuality(list(config.timeframes))
    linger_s = max(config.linger_ms, 5.0) / 1e3
    t0 = last = last_checkpoint = time.monotonic()
    stopped = "time limit"
    counts = {"trades": 0, "events": 0, "repaired_bars": 0}
    events_file = open(out_dir / "venue-events.jsonl", "a", encoding="utf-8")
    try:
        while True:
            outs = ray.get([a.drain.remote(linger_s) for a in sources])
            for out in outs:
                windows_before = dict(quality.windows)
                for ev in out.events:
                    quality.on_event(ev)
                    events_file.write(ev.model_dump_json() + "\n")
                    if ev.kind in LOUD:
                        print(f"\n{ev.venue} {ev.market} {ev.kind}: {ev.detail} "
                              f"(ids {ev.from_id}..{ev.to_id})", file=sys.stderr)
                counts["events"] += len(out.events)
                if quality.windows != windows_before:  # before the trades that follow the hole reach the bars
                    ray.get(sink.set_degraded_windows.remote(quality.windows))
                if len(out.trades):
                    quality.on_trades(out.trades)
                    pipe.send(out.trades, {"venues": time.time_ns()})
                    counts["trades"] += len(out.trades)
                if len(out.late_trades):
                    for ev in out.events:
                        if ev.kind == "repair" and ev.detail.startswith("late"):
                            bars = quality.on_late_repair(ev, out.late_trades)
                            counts["repaired_bars"] += len(bars)
                            ray.get(sink.publish_repaired.remote(bars))
                    ray.get(sink.set_degraded_windows.remote(quality.windows))
                    pipe.send(out.late_trades, {"venues": time.time_ns()})  # bars still forming take them
                if out.events and store is not None:
                    store.venue_events.remote(out.events)
            events_file.flush()
            now = time.monotonic()
            if config.linger_ms:
                pipe.tick()
            if now - last >= 1.0:
                last = now
                st = pipe.status()
                venues = ray.get([a.status.remote() for a in sources])
                line = "  ".join(f"{m['venue']} {m['state']} {m['messages_per_s']:.0f} msg/s gaps {m['gaps']} "
                                 f"reconnects {m['reconnects']}" for m in venues)
                print(f"{now - t0:6.1f}s  {counts['trades']:,} trades  {st['candles']:,} candles  "
                      f"{st['signals']:,} signals  {line}", file=sys.stderr, flush=True)
            if checkpoints is not None and now - last_checkpoint >= args.checkpoint_s:
                save_checkpoint(checkpoints, pipe)
                last_checkpoint = now
            if args.max_seconds is not None and now - t0 >= args.max_seconds:
                break
    except KeyboardInterrupt:
        stopped = "interrupted"
    finally:
        events_file.close()
        try:
            final = []
            for a in sources:  # one dead source must not keep the others from stopping or the store from flushing
                try:
                    final.append(ray.get(a.stop.remote()))
                except ray.exceptions.RayError as e:
                    print(f"a venue source did not stop cleanly: {str(e).splitlines()[0]}", file=sys.stderr)
            pipe.finish()
            st = pipe.status()
            print(f"stopped ({stopped}) after {time.monotonic() - t0:.1f}s: {counts['trades']:,} trades, "
                  f"{st['candles']:,} candles, {st['signals']:,} signals, {counts['repaired_bars']} bars rebuilt "
                  f"-> {signals_path}", file=sys.stderr)
            (out_dir / "venue-status.json").write_text(json.dumps(final, indent=1, default=str))
            for m in final:
                print(f"  {m['venue']}: {m['messages']:,} messages, {m['trades']:,} trades, {m['reconnects']} "
                      f"reconnects, {m['gaps']} gaps ({m['recovered']} trades recovered, {m['degraded']} degraded), "
                      f"{sum(m['rejects'].values())} rejected", file=sys.stderr)
            outputs.close(services)
        finally:
            pipe.shutdown()
    return 0
