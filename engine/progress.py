"""A one-line progress/status display on stderr that rewrites itself."""

from __future__ import annotations

import sys
import time


class Progress:
    """Progress bar with rate for a known total, or a status line when total is None."""

    def __init__(self, total: int | None, label: str = "", stream=None, every_s: float = 0.25) -> None:
        stream = stream or sys.stderr  # looked up at call time: tests and tools swap sys.stderr
        self.total, self.label, self.stream, self.every_s = total, label, stream, every_s
        self.done = 0
        self.start = time.monotonic()
        self._last = 0.0
        self.enabled = stream.isatty() or total is None

    def advance(self, n: int) -> None:
        self.done += n
        now = time.monotonic()
        if now - self._last >= self.every_s:
            self._last = now
            self.draw()

    def draw(self, text: str | None = None) -> None:
        elapsed = max(time.monotonic() - self.start, 1e-9)
        if text is None:
            rate = self.done / elapsed
            if self.total:
                frac = min(self.done / self.total, 1.0)
                bar = "#" * int(frac * 30)
                text = f"{self.label} [{bar:<30}] {frac:6.1%} {self.done:,}/{self.total:,} {rate:,.0f}/s"
            else:
                text = f"{self.label} {self.done:,} {rate:,.0f}/s"
        if self.stream.isatty():
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.stream.isatty():
            self.stream.write("\n")
            self.stream.flush()
