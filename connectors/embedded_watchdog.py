"""Watchdog for the embedded PostgreSQL and Redis: stops them when the driver process is gone.

Run as a script by :class:`connectors.embedded.EmbeddedServices` (by file path, so it needs nothing but
the standard library)::

    python embedded_watchdog.py --owner PID --process PID:SIGNAL:MARKER [--process ...]

It polls its parent; once the owner (driver) has died, even by SIGKILL, it stops every listed process that
is still the server it was started as (its command line holds MARKER, the server's data path) and exits.
SIGTERM ends it without touching the servers: that is how ``stop()`` retires it before stopping them itself.

The process helpers here are also used by ``connectors.embedded``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

POLL_S = 0.2


def process_alive(pid: int | None) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    if not pid or pid <= 0:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return False
    except OSError:
        stat = b""
    if stat:
        # the state is the first field after the parenthesised command name, which may itself hold spaces
        state = stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3]
        return state not in (b"Z", b"X", b"x")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_matches(pid: int, marker: str) -> bool:
    """True if ``pid`` runs and its command line names ``marker`` exactly (an argument, or a word of one)."""
    if not process_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return False
    for arg in raw.decode("utf-8", "replace").split("\0"):
        if arg == marker or marker in arg.split():
            return True
    return False


def stop_process(pid: int, sig: int, timeout_s: float = 20.0) -> bool:
    """Send ``sig`` to ``pid`` and wait until it is gone; SIGKILL after ``timeout_s``. True if it is gone."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    return not process_alive(pid)


def _parse_process(text: str) -> tuple[int, int, str]:
    pid, sig, marker = text.split(":", 2)
    return int(pid), int(getattr(signal, sig)), marker


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owner", type=int, required=True, help="pid of the driver process")
    parser.add_argument("--data-dir", help="the services' data dir (lets a later start recognise this watchdog)")
    parser.add_argument(
        "--process",
        action="append",
        default=[],
        type=_parse_process,
        help="PID:SIGNAL:MARKER of a server to stop, e.g. 123:SIGINT:/data/postgres",
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # The owner is our parent: once it exits we are re-parented at once, even while it is an unreaped zombie.
    while os.getppid() == args.owner and process_alive(args.owner):
        time.sleep(POLL_S)

    for pid, sig, marker in args.process:
        if process_matches(pid, marker):
            print(f"watchdog: owner {args.owner} is gone, stopping pid {pid} ({marker})", flush=True)
            stop_process(pid, sig)
    return 0


if __name__ == "__main__":
    sys.exit(main())
