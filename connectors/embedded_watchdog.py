"""Watchdog for the embedded PostgreSQL and Redis: stops them when the driver process is gone.

Run as a script by :class:`connectors.embedded.EmbeddedServices` (by file path, so it needs nothing but
the standard library), before either server starts::

    python embedded_watchdog.py --owner PID --data-dir DIR

It polls its parent; once the owner (driver) has died, even by SIGKILL, it stops every server of DIR that
still runs and exits. The servers are found as :func:`find_leftovers` finds them: the pid and process start
time the driver records in ``services.json`` right after starting each one, and the servers' own pidfiles
(``postgres/postmaster.pid``, ``redis/redis.pid``) checked against the process's name and working directory,
so a server whose pid was never recorded, or a data dir whose path holds spaces, is matched as well.
SIGTERM ends it without touching the servers: that is how ``stop()`` retires it once they are stopped.

The process helpers here are also used by ``connectors.embedded``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import sys
import time
from pathlib import Path

POLL_S = 0.2
STATE_FILE = "services.json"
# the name the kernel gives each server process (/proc/PID/comm; a process title does not change it)
SERVER_COMM = {"postgres": "postgres", "redis": "redis-server"}
STOP_SIGNAL = {"watchdog": signal.SIGTERM, "postgres": signal.SIGINT, "redis": signal.SIGTERM}  # SIGINT: fast


def server_dir(data_dir: Path, name: str) -> Path:
    """The directory a server runs in (its working directory) and keeps its pidfile in."""
    return Path(data_dir) / name


def pidfile(data_dir: Path, name: str) -> Path:
    return server_dir(data_dir, name) / ("postmaster.pid" if name == "postgres" else "redis.pid")


def boot_id() -> str | None:
    """This boot's id: a pid and start time recorded in an earlier boot name another process."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/PID/stat from the state on (field 3); the command name before it may hold spaces."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    return raw[raw.rfind(b")") + 2 :].split()


def process_alive(pid: int | None) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    fields = _stat(pid)
    if fields:
        return fields[0] not in (b"Z", b"X", b"x")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_ticks(pid: int | None) -> int | None:
    """When ``pid`` started, in clock ticks since boot (field 22 of /proc/PID/stat); None if it is gone."""
    if not isinstance(pid, int) or pid <= 0:
        return None
    fields = _stat(pid)
    try:
        return int(fields[19]) if fields else None
    except (IndexError, ValueError):
        return None


def same_process(pid: object, started: object, boot: object) -> bool:
    """True if ``pid`` still runs and is the process that started at ``started`` ticks in boot ``boot``."""
    return (isinstance(pid, int) and isinstance(started, int) and boot == boot_id() and process_alive(pid)
            and start_ticks(pid) == started)


def _comm(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return None


def _cwd(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return None


def _cmdline(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().decode("utf-8", "replace").split("\0")
    except OSError:
        return []


def is_server(pid: int | None, name: str, data_dir: Path) -> bool:
    """True if ``pid`` runs the ``name`` server of ``data_dir``: its binary, working in its directory.

    Both servers chdir into their data directory, so this holds for any path, spaces included, without
    parsing a command line (Redis rewrites its own into one space-joined title)."""
    return (process_alive(pid) and _comm(pid) == SERVER_COMM[name]
            and _cwd(pid) == str(server_dir(data_dir, name)))


def is_watchdog(pid: int | None, data_dir: Path) -> bool:
    """True if ``pid`` is a watchdog (this script) watching ``data_dir``."""
    if not process_alive(pid):
        return False
    args = _cmdline(pid)
    return (any(Path(a).name == Path(__file__).name for a in args)
            and any(a == "--data-dir" and b == str(data_dir) for a, b in itertools.pairwise(args)))


def read_pid(path: Path) -> int | None:
    """The pid on the first line of a pidfile."""
    try:
        with open(path) as f:
            return int(f.readline().strip())
    except (OSError, ValueError):
        return None


def read_state(data_dir: Path) -> dict:
    try:
        with open(Path(data_dir) / STATE_FILE) as f:
            state = json.load(f)
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def find_leftovers(data_dir: Path, state: dict, skip: frozenset[int] = frozenset()) -> list[tuple[str, int, int]]:
    """(name, pid, stop signal) of every live process of a run on ``data_dir``: watchdog first, then servers.

    Sources, each verified so that a reused pid is never taken for a server: ``state["processes"]`` (pid and
    start time, recorded right after each start), ``state["pids"]`` (older state files, no start time), and the
    servers' pidfiles (a server that started but was never recorded)."""
    data_dir = Path(data_dir)
    found: dict[int, str] = {}

    def add(name: str, pid: int) -> None:
        if pid not in found and pid not in skip and name in STOP_SIGNAL:
            found[pid] = name

    for name, record in (state.get("processes") or {}).items():
        if isinstance(record, dict) and same_process(record.get("pid"), record.get("start"), state.get("boot_id")):
            add(name, record["pid"])
    for name, pid in (state.get("pids") or {}).items():
        if is_watchdog(pid, data_dir) if name == "watchdog" else name in SERVER_COMM and is_server(pid, name, data_dir):
            add(name, pid)
    for name in SERVER_COMM:
        pid = read_pid(pidfile(data_dir, name))
        if is_server(pid, name, data_dir):
            add(name, pid)
    order = {"watchdog": 0, "postgres": 1, "redis": 2}
    return sorted(((name, pid, STOP_SIGNAL[name]) for pid, name in found.items()), key=lambda t: order[t[0]])


def stop_processes(targets: list[tuple[int, int]], timeout_s: float = 20.0) -> list[int]:
    """Send each (pid, signal) at once, wait until all are gone, SIGKILL any left after ``timeout_s``.

    Returns the pids still running at the end (none, normally)."""
    for pid, sig in targets:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    pids = [pid for pid, _ in targets]
    for limit, kill in ((timeout_s, True), (5.0, False)):
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline and any(process_alive(p) for p in pids):
            time.sleep(0.02)
        left = [p for p in pids if process_alive(p)]
        if not left or not kill:
            return left
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return [p for p in pids if process_alive(p)]


def stop_process(pid: int, sig: int, timeout_s: float = 20.0) -> bool:
    """Send ``sig`` to ``pid`` and wait until it is gone; SIGKILL after ``timeout_s``. True if it is gone."""
    return not stop_processes([(pid, sig)], timeout_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--owner", type=int, required=True, help="pid of the driver process")
    parser.add_argument("--data-dir", required=True, help="the services' data dir")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    # The owner is our parent: once it exits we are re-parented at once, even while it is an unreaped zombie.
    while os.getppid() == args.owner and process_alive(args.owner):
        time.sleep(POLL_S)

    data_dir = Path(args.data_dir)
    found = find_leftovers(data_dir, read_state(data_dir), frozenset({os.getpid()}))
    leftovers = [(name, pid, sig) for name, pid, sig in found if name != "watchdog"]
    for name, pid, _ in leftovers:
        print(f"watchdog: owner {args.owner} is gone, stopping {name} (pid {pid}) of {data_dir}", flush=True)
    stop_processes([(pid, sig) for _, pid, sig in leftovers])
    return 0


if __name__ == "__main__":
    sys.exit(main())
