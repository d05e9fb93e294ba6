"""Timeframe strings (``15s``, ``1m``, ``4h``, ``1d``) to and from nanoseconds."""

from __future__ import annotations

import re

from schemas.errors import ConfigError

NS_PER_SECOND = 1_000_000_000
_UNITS = {"s": NS_PER_SECOND, "m": 60 * NS_PER_SECOND, "h": 3600 * NS_PER_SECOND,
          "d": 86400 * NS_PER_SECOND, "w": 7 * 86400 * NS_PER_SECOND}
_PATTERN = re.compile(r"^(\d+)([smhdw])$")
# longest timeframe (or lateness): far below where nanosecond timestamps plus it overflow 64 bits
MAX_DAYS = 3650


def parse_timeframe(text: str) -> int:
    """Return the length of a timeframe such as ``5m`` in nanoseconds."""
    match = _PATTERN.match(text.strip())
    count = match.group(1).lstrip("0") if match else ""
    if not count:
        raise ConfigError(
            f"bad timeframe {text!r}: use a positive count and a unit s, m, h, d or w, e.g. 15s, 1m, 4h, 1d")
    if len(count) > 15 or int(count) * _UNITS[match.group(2)] > MAX_DAYS * _UNITS["d"]:
        raise ConfigError(f"bad timeframe {text!r}: too long; the longest is {MAX_DAYS}d (about 10 years)")
    return int(count) * _UNITS[match.group(2)]


def format_timeframe(ns: int) -> str:
    """Return the shortest label for a timeframe length, e.g. 300e9 -> ``5m``."""
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if ns % size == 0:
            return f"{ns // size}{unit}"
    raise ConfigError(f"timeframe of {ns} ns is not a whole number of seconds")


def bucket_start(ts_ns, tf_ns: int):
    """Start of the bucket holding ``ts_ns`` (scalar or numpy array); buckets align to the Unix epoch."""
    return ts_ns - ts_ns % tf_ns
