"""Retry timing shared by every connector: exponential backoff with jitter, and ``Retry-After``."""

from __future__ import annotations

import email.utils
import random
import time

from schemas.errors import ConfigError


class Backoff:
    """Delays that double from ``initial_s`` up to ``max_s``, each with equal jitter.

    Equal jitter (half the step fixed, half random) never waits less than half the step, and keeps
    many processes from retrying in lockstep after a shared outage.
    """

    def __init__(self, initial_s: float, max_s: float) -> None:
        if initial_s < 0 or max_s < initial_s:
            raise ConfigError(f"backoff needs 0 <= initial_s <= max_s, got {initial_s} and {max_s}")
        self.initial_s, self.max_s = initial_s, max_s
        self.attempt = 0

    def base(self, attempt: int) -> float:
        """The delay before retry number ``attempt`` (1 for the first retry) without jitter."""
        return min(self.max_s, self.initial_s * 2 ** max(0, attempt - 1))

    def step(self, attempt: int) -> float:
        """The jittered delay before retry number ``attempt``: between half and all of :meth:`base`."""
        base = self.base(attempt)
        return base / 2 + random.random() * base / 2

    def next(self) -> float:
        """The delay before the next retry; each call doubles the step."""
        self.attempt += 1
        return self.step(self.attempt)

    def reset(self) -> None:
        """It worked: the next failure starts from ``initial_s`` again."""
        self.attempt = 0


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP-date); None if absent/unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds else None  # NaN is unreadable
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
