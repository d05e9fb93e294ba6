"""``crypto-intel venues``: parse a recorded capture, check connectivity to venues."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from app import flags
from engine.venues.capture import RECEIVED, CaptureError, read_capture
from engine.venues.frames import FrameOutput, parse_frame
from engine.venues.registry import VENUES, make_venue
from schemas.errors import ConfigError


def add_venues_parser(sub: argparse._SubParsersAction) -> None:
    v = sub.add_parser("venues", help="exchange adapters: parse captures, check connectivity",
                       description="Parse recorded venue sessions, or check that venues answer.")
    vsub = v.add_subparsers(dest="venues_command", required=True, metavar="VENUES_COMMAND")
    p = vsub.add_parser("parse", help="parse a recorded WebSocket capture into ticks (JSON Lines)")
    p.add_argument("--venue", required=True, choices=list(VENUES), help="venue whose wire format the capture is in")
    p.add_argument("--input", required=True, help="capture file (lines 'TS: FRAME', as in tests/data/wire)")
    p.add_argument("--out", required=True, help="JSON Lines file of trades (and book updates, bars, marks)")
    p.set_defaults(func=cmd_parse)
    c = vsub.add_parser("check", help="connect to each venue, wait for data, call its REST API; print status")
    c.add_argument("--source", action="append", metavar="VENUE:SYMBOLS",
                   help="venues and symbols to check (default: binance:BTCUSDT)")
    c.add_argument("--venue-url", action="append", metavar="VENUE.ws|rest=URL", help="base URL overrides")
    c.add_argument("--timeout-s", type=flags.positive_float, default=10.0, help="seconds to wait for a first frame (default 10)")
    c.set_defaults(func=cmd_check)


def cmd_parse(args: argparse.Namespace) -> int:
    venue = make_venue(args.venue)
    parser, out = venue.parser(), FrameOutput()
    frames = 0
    n = {"trades": 0, "books": 0, "candles": 0, "marks": 0}
    path = Path(args.input)
    if not path.is_file():
        raise FileNotFoundError(f"no capture at {path}")
    flags.check_out_file("--out", args.out, make_parents=False)
    with open(args.out, "w", encoding="utf-8") as f:
        try:
            for line in read_capture(path):
                if line.kind != RECEIVED:
                    continue
                frames += 1
                parse_frame(parser, line.payload, out)
                trades, books, candles, marks, _ = out.drain()
                for rec in trades.to_records():
                    f.write(json.dumps({"type": "trade", **rec.model_dump()}) + "\n")
                for kind, recs in (("book", books), ("candle", candles), ("mark", marks)):
                    for rec in recs:
                        f.write(json.dumps({"type": kind, **rec.model_dump()}) + "\n")
                n["trades"] += len(trades)
                n["books"] += len(books)
                n["candles"] += len(candles)
                n["marks"] += len(marks)
        except CaptureError as e:
            raise ConfigError(f"{path}: not a capture file: {e}") from None
    rejected = sum(out.rejects.values())
    print(f"{frames:,} frames: {n['trades']:,} trades, {n['books']:,} book updates, {n['candles']:,} closed bars, "
          f"{n['marks']:,} mark prices; {rejected:,} rejected"
          + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(out.rejects.items()))}; last: {out.last_error})"
             if rejected else "") + f" -> {args.out}", file=sys.stderr)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from engine.venues.sources import build_sources
    specs = build_sources(args.source or ["binance:BTCUSDT"], args.venue_url or [])
    results = asyncio.run(_check_all(specs, args.timeout_s))
    ok = True
    for r in results:
        ok &= r["ws"] == "ok" and r["rest"] in ("ok", "n/a")
        print(f"{r['venue']:16s} ws {r['ws']:<40s} first frame {r['first_frame_ms']:>8} ms   rest {r['rest']}"
              f"   clock skew {r['skew_ms']} ms", file=sys.stdout)
    return 0 if ok else 1


async def _check_all(specs, timeout_s: float) -> list[dict]:
    return await asyncio.gather(*(_check(s, timeout_s) for s in specs))


async def _check(spec, timeout_s: float) -> dict:
    import aiohttp

    from connectors.venues.rest import RestError, VenueRest
    venue = make_venue(spec.venue, spec.channels)
    ws_base, rest_base = spec.ws_url or venue.ws_url, spec.rest_url or venue.rest_url
    res = {"venue": venue.name, "ws": "failed", "first_frame_ms": "-", "rest": "n/a", "skew_ms": "-"}
    async with aiohttp.ClientSession() as session:
        t0 = time.monotonic()
        try:
            url = venue.connect_url(ws_base, list(spec.symbols))
            async with session.ws_connect(url, timeout=aiohttp.ClientWSTimeout(ws_close=2)) as ws:
                for frame in venue.subscribe_frames(list(spec.symbols)):
                    await ws.send_str(frame)
                out = FrameOutput()
                deadline = t0 + timeout_s
                while time.monotonic() < deadline:
                    msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                    if msg.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                        res["ws"] = f"closed ({msg.type.name})"
                        break
                    if res["first_frame_ms"] == "-":
                        res["first_frame_ms"] = f"{(time.monotonic() - t0) * 1e3:.0f}"
                        res["ws"] = "ok"
                    parse_frame(venue.parser(), msg.data, out)
                    if out.trade_count:
                        res["skew_ms"] = f"{(time.time_ns() - out.ts[-1]) / 1e6:.0f}"
                        break
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as e:
            res["ws"] = f"failed: {type(e).__name__}: {e}"[:60]
        req = venue.book_snapshot_request(spec.symbols[0]) or venue.trades_request(spec.symbols[0], 0, 1)
        if req:
            try:
                await VenueRest(session, rest_base, attempts=2, timeout_s=timeout_s).get(*req)
                res["rest"] = "ok"
            except RestError as e:
                res["rest"] = f"failed: {e}"[:80]
    return res
