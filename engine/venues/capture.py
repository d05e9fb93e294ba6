"""Reader for recorded venue sessions (the format of ``tests/data/wire``).

Line 1 is ``URL <-> TS`` (connection opened). Later lines are ``URL <- TS: FRAME`` (sent by the
client), ``TS: FRAME`` (received) or, in REST captures, ``URL -> TS: BODY`` (response to a GET).
A ``name: value`` line is a recorder's note.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from schemas.errors import InputError

OPEN, SENT, RECEIVED, RESPONSE, META = "open", "sent", "received", "response", "meta"


class CaptureError(InputError):
    """A capture line that does not follow the format."""


@dataclass(frozen=True)
class CaptureLine:
    kind: str  # open | sent | received | response | meta (a recorder's ``name: value`` note)
    ts: float  # local wall-clock seconds when recorded
    url: str  # empty for received frames
    payload: str  # the frame or body, unchanged
    lineno: int


def parse_line(line: str, lineno: int = 0) -> CaptureLine:
    line = line.rstrip("\r\n")
    if " <-> " in line and ": " not in line.split(" <-> ", 1)[1]:
        url, ts = line.split(" <-> ", 1)
        return CaptureLine(OPEN, float(ts), url, "", lineno)
    head, sep, payload = line.partition(": ")
    if not sep:
        raise CaptureError(f"line {lineno}: no ': ' separator")
    try:
        if " <- " in head:
            url, ts = head.rsplit(" <- ", 1)
            return CaptureLine(SENT, float(ts), url, payload, lineno)
        if " -> " in head:
            url, ts = head.rsplit(" -> ", 1)
            return CaptureLine(RESPONSE, float(ts), url, payload, lineno)
        if head.isidentifier():
            return CaptureLine(META, 0.0, head, payload, lineno)
        return CaptureLine(RECEIVED, float(head), "", payload, lineno)
    except ValueError as e:
        raise CaptureError(f"line {lineno}: bad timestamp in {head[:80]!r}") from e


def read_capture(path: str | Path) -> Iterator[CaptureLine]:
    """Every line of a capture file, in order; blank lines are skipped."""
    with open(path, encoding="utf-8") as f:
        try:
            for n, line in enumerate(f, 1):
                if line.strip():
                    yield parse_line(line, n)
        except UnicodeDecodeError as e:
            raise CaptureError(f"not UTF-8 text (byte 0x{e.object[e.start]:02x} cannot be decoded)") from None


def received_frames(path: str | Path) -> list[str]:
    """Just the frames the venue sent, in order."""
    return [c.payload for c in read_capture(path) if c.kind == RECEIVED]
