"""The embedded PostgreSQL and Redis: real servers from the pip-installed binaries, no mocks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import pytest
import redis

from connectors.embedded import EmbeddedServices, ServiceError
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
    copy = tmp_path / "data"
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


def test_start_use_stop_restart_keeps_data(data_dir) -> None:
    services = EmbeddedServices(data_dir)
    began = time.monotonic()
    urls = services.start()
    print(f"later start {time.monotonic() - began:.2f} s")
    assert urls.database_url.startswith("postgresql://postgres@127.0.0.1:") and urls.database_url.endswith("/crypto_intel")
    assert urls.redis_url.startswith("redis://127.0.0.1:") and urls.redis_url.endswith("/0")
    asyncio.run(_sql(urls.database_url, "CREATE TABLE trades (id int PRIMARY KEY, venue text)",
                     "INSERT INTO trades VALUES (1, 'binance')"))
    client = redis.Redis.from_url(urls.redis_url)
    entry = client.xadd("ticks", {"price": "101.5"})
    assert [e[0] for e in client.xrange("ticks")] == [entry]
    client.close()
    for port in (int(urls.database_url.rsplit(":", 1)[1].split("/")[0]), int(urls.redis_url.rsplit(":", 1)[1].split("/")[0])):
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


def test_watchdog_stops_servers_when_driver_is_killed(driver) -> None:
    proc, info = driver
    pids = info["pids"]
    assert all(process_alive(p) for p in pids.values())
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


def test_start_cleans_up_servers_of_a_dead_run(driver, data_dir) -> None:
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


def test_user_errors_are_service_errors(tmp_path) -> None:
    assert issubclass(ServiceError, CryptoIntelError)
    with pytest.raises(ServiceError, match="is missing or not executable"):
        EmbeddedServices(tmp_path / "d", postgres_bin=tmp_path / "nowhere").start()
    (tmp_path / "file").write_text("")
    with pytest.raises(ServiceError, match="is not a writable directory"):
        EmbeddedServices(tmp_path / "file").start()
    with pytest.raises(ServiceError, match="database name"):
        EmbeddedServices(tmp_path / "d", database="x; DROP")


def test_failed_start_reports_the_server_log(data_dir) -> None:
    with (data_dir / "postgres" / "postgresql.conf").open("a") as conf:
        conf.write("\nshared_buffers = 'nonsense'\n")
    with pytest.raises(ServiceError, match="PostgreSQL failed to start") as err:
        EmbeddedServices(data_dir, log=lambda m: None).start()
    assert "shared_buffers" in str(err.value)
    assert json.loads((data_dir / "services.json").read_text())["owner_pid"] is None
