"""The API on Serve's HAProxy ingress (throughput-optimised mode) answers as the API does anywhere else.

Ray reads the mode when it starts, so the Serve app runs in a process of its own with a fresh Ray."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import aiohttp

from serve.api import ApiSettings
from tests.serve.inprocess import api_server, filled  # noqa: F401 - fixture

_SERVER = textwrap.dedent("""
    import json, sys
    spec = json.loads(sys.argv[1])
    from serve.ingress_mode import use_serve_mode
    use_serve_mode(spec["mode"])
    from actors.runtime import start_ray
    start_ray(dashboard=False)
    from serve.api import ApiSettings
    from serve.app import start_api
    from tests.serve.api_fixtures import _free_port, _wait_ready
    url = start_api(ApiSettings(spec["db"], spec["redis"], spec["namespace"]), port=_free_port())
    _wait_ready(url)
    print("URL", url, flush=True)
    sys.stdin.read()
    from ray import serve
    serve.shutdown()
""")


async def test_haproxy_mode_serves_the_same_answers(filled):
    spec = {"mode": "haproxy", "db": filled.database_url, "redis": filled.redis_url, "namespace": filled.namespace}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, json.dumps(spec)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        url = None
        for line in proc.stdout:
            if line.startswith("URL "):
                url = line.split()[1]
                break
        assert url, f"the HAProxy-mode server did not start (exit {proc.poll()})"
        key = filled.keys["pro"]
        paths = ["/api/v1/signals?limit=50", "/api/v1/market/summary", f"/api/v1/markets/{filled.markets[0]}/candles"]
        async with api_server(ApiSettings(filled.database_url, filled.redis_url, filled.namespace,
                                          hot_reads=False)) as (local, _), aiohttp.ClientSession() as s:
            for path in paths:
                async with s.get(local + path, headers={"X-API-Key": key}) as r:
                    want = await r.read()
                for _ in range(2):  # computed, then from the replica's memory
                    async with s.get(url + path, headers={"X-API-Key": key}) as r:
                        assert r.status == 200 and await r.read() == want, path
                        assert r.headers.get("ETag"), path
            async with s.get(url + paths[0]) as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "unauthorized"
    finally:
        proc.stdin.close()
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
