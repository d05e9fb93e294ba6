"""The embedded PostgreSQL and Redis: real servers from the pip-installed binaries, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

import asyncpg
import pytest
import redis

from connectors.embedded import ROOT_SERVICE_USER, EmbeddedServices, ServiceError
from connectors.embedded_watchdog import process_alive
from schemas.errors import CryptoIntelError

REPO = Path(__file__).resolve().parent.parent

DRIVER = """
import json, sys, time
from pathlib import Path
from connectors.embedded import EmbeddedServices
services = EmbeddedServices(Path(sys.argv[1]), log=lambda m: None)
with services as urls:
    print(json.dumps({"pids": services.pids(), "database_url": urls.database_url, "redis_url": urls.redis_url}),
          flush=True)
    time.sleep(600)
"""


def _wait_gone(pids, timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(process_alive(p) for p in pids):
        time.sleep(0.05)
    return [p for p in pids if process_alive(p)]


def _listen_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def _secret(data_dir: Path) -> str:
    return (data_dir / "secret").read_text().strip()


def _redis_raw(port: int, *commands: tuple[str, ...]) -> bytes:
    """Replies to ``commands`` sent on a fresh connection (no client library, no retries)."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for command in commands:
            s.sendall(f"*{len(command)}\r\n".encode() + b"".join(f"${len(a)}\r\n{a}\r\n".encode() for a in command))
        reply = b""
        while reply.count(b"\r\n") < len(commands):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
    return reply


def _uid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/status").read_text().split("\nUid:")[1].split()[0])


def _hba_rules(data_dir: Path) -> list[str]:
    lines = (data_dir / "postgres" / "pg_hba.conf").read_text().splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


async def _sql(url: str, *statements: str):
    conn = await asyncpg.connect(url)
    try:
        result = None
        for sql in statements:
            result = await conn.fetch(sql)
        return result
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def initialized(tmp_path_factory) -> Path:
    """A data dir after one first start (initdb) and stop; tests copy it to skip initdb's seconds."""
    data = tmp_path_factory.mktemp("embedded-template")
    began = time.monotonic()
    with EmbeddedServices(data) as urls:
        first = time.monotonic() - began
        assert asyncio.run(_sql(urls.database_url, "SELECT current_database() AS db"))[0]["db"] == "crypto_intel"
    print(f"first start (initdb) {first:.2f} s")
    return data


@pytest.fixture
def data_dir(initialized, tmp_path) -> Path:
    copy = tmp_path / "data dir"  # a space in the path: the servers must still be told apart by it
    subprocess.run(["cp", "-a", str(initialized), str(copy)], check=True)  # -a keeps the postgres user's ownership
    return copy


@pytest.fixture
def driver(data_dir):
    """A separate driver process that has started the services on ``data_dir``; yields (process, info)."""
    # its own process group stands in for a terminal's foreground group
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(data_dir)], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, start_new_session=True)
    info = json.loads(proc.stdout.readline())
    yield proc, info
    proc.kill()
    proc.wait()
    assert not _wait_gone(list(info["pids"].values()), 15.0)


def _forget_pids(data_dir: Path) -> None:
    """services.json as a driver killed right after starting the servers, before recording them, left it."""
    state = json.loads((data_dir / "services.json").read_text())
    state["processes"], state["pids"] = {}, {}
    (data_dir / "services.json").write_text(json.dumps(state))


def test_start_use_stop_restart_keeps_data(data_dir) -> None:
    services = EmbeddedServices(data_dir)
    began = time.monotonic()
    urls = services.start()
    print(f"later start {time.monotonic() - began:.2f} s")
    secret = quote(_secret(data_dir), safe="")
    assert urls.database_url.startswith(f"postgresql://postgres:{secret}@127.0.0.1:")
    assert urls.database_url.endswith("/crypto_intel")
    assert urls.redis_url.startswith(f"redis://:{secret}@127.0.0.1:") and urls.redis_url.endswith("/0")
    asyncio.run(_sql(urls.database_url, "CREATE TABLE trades (id int PRIMARY KEY, venue text)",
                     "INSERT INTO trades VALUES (1, 'binance')"))
    client = redis.Redis.from_url(urls.redis_url)
    entry = client.xadd("ticks", {"price": "101.5"})
    assert [e[0] for e in client.xrange("ticks")] == [entry]
    client.close()
    for port in (_port(urls.database_url), _port(urls.redis_url)):
        assert _listen_addresses(port) == {"0100007F"}  # 127.0.0.1 only, no IPv6, no wildcard
    pids = list(services.pids().values())
    assert len(pids) == 3

    services.stop()
    assert not _wait_gone(pids, 0.5)
    services.stop()  # idempotent

    with EmbeddedServices(data_dir) as again:
        assert again == urls  # the previous run's ports are reused when free
        rows = asyncio.run(_sql(again.database_url, "SELECT id, venue FROM trades"))
        assert [tuple(r) for r in rows] == [(1, "binance")]
        client = redis.Redis.from_url(again.redis_url)
        assert [e[0] for e in client.xrange("ticks")] == [entry]
        client.close()


def test_servers_refuse_clients_without_the_secret(data_dir) -> None:
    messages = []
    services = EmbeddedServices(data_dir, log=messages.append)
    with services as urls:
        secret = _secret(data_dir)
        assert len(secret) >= 40
        assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600
        assert (data_dir / "secret").stat().st_uid == os.geteuid()
        assert stat.S_IMODE((data_dir / "redis" / "redis.conf").stat().st_mode) == 0o600  # it holds requirepass
        assert stat.S_IMODE((data_dir / "redis").stat().st_mode) == 0o700
        pg, rd = _port(urls.database_url), _port(urls.redis_url)

        for url in (f"postgresql://postgres@127.0.0.1:{pg}/crypto_intel",
                    f"postgresql://postgres:wrong@127.0.0.1:{pg}/postgres"):
            with pytest.raises(asyncpg.InvalidPasswordError):
                asyncio.run(_sql(url, "SELECT 1"))
        assert asyncio.run(_sql(urls.database_url, "SELECT current_user AS u"))[0]["u"] == "postgres"

        # the attack: CONFIG SET dir + SAVE writes a file wherever the server may write
        assert _redis_raw(rd, ("CONFIG", "SET", "dir", "/tmp")).startswith(b"-ERR unknown command")
        assert _redis_raw(rd, ("SET", "k", "v")).startswith(b"-NOAUTH")
        assert _redis_raw(rd, ("SAVE",)).startswith(b"-NOAUTH")
        assert _redis_raw(rd, ("AUTH", "wrong"), ("SAVE",)).startswith(b"-WRONGPASS")
        client = redis.Redis.from_url(urls.redis_url)
        assert client.ping()
        for command in (("CONFIG", "SET", "dir", "/tmp"), ("CONFIG", "GET", "dir"), ("DEBUG", "SLEEP", "0"),
                        ("MODULE", "LIST")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        client.close()

        pids = services.pids()
        if os.geteuid() == 0:  # neither server runs as root
            service_uid = pwd.getpwnam(os.environ.get("CRYPTO_INTEL_PG_USER", ROOT_SERVICE_USER)).pw_uid
            assert _uid(pids["postgres"]) == _uid(pids["redis"]) == service_uid
            assert (data_dir / "redis").stat().st_uid == service_uid
        assert (data_dir / "redis" / "redis.pid").read_text().strip() == str(pids["redis"])

    shown = [*messages, repr(urls), (data_dir / "services.json").read_text(),
             *(p.read_text(errors="replace") for p in (data_dir / "logs").iterdir())]
    assert not [text for text in shown if secret in text]


def test_trust_data_dir_of_an_older_version_gets_a_password(data_dir) -> None:
    hba = data_dir / "postgres" / "pg_hba.conf"
    hba.write_text(hba.read_text().replace("scram-sha-256", "trust"))  # as initdb --auth=trust wrote it
    (data_dir / "secret").unlink()
    if os.geteuid() == 0:  # older versions ran Redis as root, in a root-owned dir
        for path in [data_dir / "redis", *(data_dir / "redis").iterdir()]:
            os.chown(path, 0, 0)
        os.chmod(data_dir / "redis", 0o755)
    messages = []
    with EmbeddedServices(data_dir, log=messages.append) as urls:
        secret = _secret(data_dir)
        assert stat.S_IMODE((data_dir / "secret").stat().st_mode) == 0o600
        assert quote(secret, safe="") in urls.database_url
        assert _hba_rules(data_dir) and not [r for r in _hba_rules(data_dir) if "trust" in r.split()]
        with pytest.raises(asyncpg.InvalidPasswordError):
            asyncio.run(_sql(f"postgresql://postgres@127.0.0.1:{_port(urls.database_url)}/crypto_intel", "SELECT 1"))
        assert asyncio.run(_sql(urls.database_url, "SELECT 1 AS one"))[0]["one"] == 1
        assert redis.Redis.from_url(urls.redis_url).ping()
    assert any("now requires the password" in m for m in messages)
    assert not [m for m in messages if secret in m]


def test_a_password_data_dir_without_its_secret_is_refused(data_dir) -> None:
    (data_dir / "secret").unlink()
    with pytest.raises(ServiceError, match="is missing but .* requires a password"):
        EmbeddedServices(data_dir, log=lambda m: None).start()
    assert not (data_dir / "secret").exists()  # no new secret that could never match


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "pidfiles-only"])
def test_watchdog_stops_servers_when_driver_is_killed(driver, data_dir, recorded) -> None:
    proc, info = driver
    pids = info["pids"]
    assert all(process_alive(p) for p in pids.values())
    if not recorded:
        _forget_pids(data_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not _wait_gone(list(pids.values()), 10.0), "watchdog left servers running"


def test_ctrl_c_reaches_only_the_driver_which_stops_the_servers(driver, data_dir) -> None:
    proc, info = driver
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does to the terminal's foreground process group
    proc.wait(10)
    assert not _wait_gone(list(info["pids"].values()), 0.5)
    assert json.loads((data_dir / "services.json").read_text())["owner_pid"] is None  # a clean stop, not the watchdog
    assert not (data_dir / "logs" / "watchdog.log").read_text()


@pytest.mark.parametrize("recorded", [True, False], ids=["recorded", "pidfiles-only"])
def test_start_cleans_up_servers_of_a_dead_run(driver, data_dir, recorded) -> None:
    proc, info = driver
    pids = info["pids"]
    os.kill(pids["watchdog"], signal.SIGKILL)  # no watchdog: the servers outlive their driver
    proc.kill()
    proc.wait()
    assert not _wait_gone([pids["watchdog"]], 2.0)
    time.sleep(0.5)
    assert process_alive(pids["postgres"]) and process_alive(pids["redis"])
    state = json.loads((data_dir / "services.json").read_text())
    assert state["owner_pid"] == proc.pid and not process_alive(proc.pid)
    if not recorded:  # then only the servers' pidfiles name them
        _forget_pids(data_dir)

    messages = []
    with EmbeddedServices(data_dir, log=messages.append) as urls:
        assert not _wait_gone([pids["postgres"], pids["redis"]], 0.1)
        assert sum("stale" in m for m in messages) == 2
        assert asyncio.run(_sql(urls.database_url, "SELECT 1 AS one"))[0]["one"] == 1
        assert redis.Redis.from_url(urls.redis_url).ping()


def test_second_start_while_owner_alive_is_refused(driver, data_dir) -> None:
    proc, info = driver
    with pytest.raises(ServiceError, match=f"another run \\(pid {proc.pid}\\) uses the data dir"):
        EmbeddedServices(data_dir).start()
    assert all(process_alive(p) for p in info["pids"].values())  # the live run is untouched


def test_only_the_missing_server_is_started(data_dir) -> None:
    services = EmbeddedServices(data_dir, postgres=False, log=lambda m: None)
    with services as urls:
        assert urls.database_url is None and urls.redis_url
        assert set(services.pids()) == {"redis", "watchdog"}
        assert not (data_dir / "postgres" / "postmaster.pid").exists()
        assert redis.Redis.from_url(urls.redis_url).ping()
    services = EmbeddedServices(data_dir, redis=False, log=lambda m: None)
    with services as urls:
        assert urls.redis_url is None and urls.database_url
        assert set(services.pids()) == {"postgres", "watchdog"}
        assert not (data_dir / "redis" / "redis.pid").exists()
        assert asyncio.run(_sql(urls.database_url, "SELECT 1 AS one"))[0]["one"] == 1
    assert set(json.loads((data_dir / "services.json").read_text())["ports"]) == {"postgres", "redis"}


def test_stop_is_not_cut_short_by_signals(data_dir) -> None:
    services = EmbeddedServices(data_dir, log=lambda m: None)
    services.start()
    pids = services.pids()
    seen = {}

    def cut_short(signum, frame):
        raise RuntimeError(f"stop() was interrupted by signal {signum}")

    real_retire = services._retire_watchdog

    def retire() -> None:
        seen["servers alive"] = [process_alive(pids["postgres"]), process_alive(pids["redis"])]
        seen["watchdog alive"] = process_alive(pids["watchdog"])
        os.kill(os.getpid(), signal.SIGTERM)  # a second Ctrl-C / SIGTERM while stopping
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)
        real_retire()

    services._retire_watchdog = retire
    previous = {sig: signal.signal(sig, cut_short) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        services.stop()
        assert signal.getsignal(signal.SIGINT) is cut_short and signal.getsignal(signal.SIGTERM) is cut_short
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    assert seen == {"servers alive": [False, False], "watchdog alive": True}  # servers reaped before the watchdog
    assert not _wait_gone(list(pids.values()), 0.5)
    assert json.loads((data_dir / "services.json").read_text())["owner_pid"] is None


def test_start_waits_while_a_server_recovers(tmp_path) -> None:
    messages = []
    services = EmbeddedServices(tmp_path / "d", log=messages.append, start_timeout_s=0.3)
    services.RECOVERY_TIMEOUT_S, services.PROGRESS_EVERY_S = 5.0, 0.25
    log = tmp_path / "server.log"
    log.write_text("")
    proc = subprocess.Popen(["sleep", "60"])
    began = time.monotonic()
    # crash recovery past start_timeout_s: still waited for, with progress lines
    assert services._wait(proc, lambda: "ready" if time.monotonic() - began > 1.2 else "starting", "PostgreSQL",
                          log, 0, 5432)
    assert time.monotonic() - began >= 1.2 and proc.poll() is None
    assert sum("recovering its data" in m for m in messages) >= 3
    services.RECOVERY_TIMEOUT_S = 1.0
    began = time.monotonic()
    with pytest.raises(ServiceError, match="did not accept connections"):
        services._wait(proc, lambda: "loading", "Redis", log, 0, 6379)  # but not for ever
    assert 1.0 <= time.monotonic() - began < 4.0 and proc.poll() is not None
    proc = subprocess.Popen(["sleep", "60"])
    began = time.monotonic()
    with pytest.raises(ServiceError, match="did not accept connections"):
        services._wait(proc, lambda: None, "Redis", log, 0, 6379)  # no sign of progress: start_timeout_s
    assert time.monotonic() - began < 0.9 and proc.poll() is not None


def test_user_errors_are_service_errors(tmp_path) -> None:
    assert issubclass(ServiceError, CryptoIntelError)
    with pytest.raises(ServiceError, match="is missing or not executable"):
        EmbeddedServices(tmp_path / "d", postgres_bin=tmp_path / "nowhere").start()
    (tmp_path / "file").write_text("")
    with pytest.raises(ServiceError, match="is not a writable directory"):
        EmbeddedServices(tmp_path / "file").start()
    with pytest.raises(ServiceError, match="database name"):
        EmbeddedServices(tmp_path / "d", database="x; DROP")
    with pytest.raises(ServiceError, match="nothing to start"):
        EmbeddedServices(tmp_path / "d", postgres=False, redis=False)
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert EmbeddedServices(tmp_path / "link" / ".." / "link").data_dir == (tmp_path / "real").resolve()


def test_failed_start_reports_the_server_log(data_dir) -> None:
    with (data_dir / "postgres" / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'nonsense'\n")
    with pytest.raises(ServiceError, match="PostgreSQL failed to start") as err:
        EmbeddedServices(data_dir, log=lambda m: None).start()
    assert "shared_buffers" in str(err.value)
    state = json.loads((data_dir / "services.json").read_text())
    assert state["owner_pid"] is None and not state["processes"]
    assert not [p for p in state.get("pids", {}).values() if process_alive(p)]
