"""Training submitted as real Ray jobs: a Ray head started for the test, `ray job submit -- crypto-intel rl train`
and `... ml train` running as job drivers on it, their models registered where the test can serve them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.data_paths import REPO, SHARED_DATA
from tests.storage.test_run_persists import _free_port, _wait_for

pytestmark = [pytest.mark.ray, pytest.mark.slow]
CANDLES = str(SHARED_DATA / "candles" / "ADA_BTC-5m.feather")
BIN = Path(sys.executable).parent


def _ray(*args: str, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO)


def test_rl_and_ml_training_run_as_ray_jobs(tmp_path) -> None:
    from connectors.models.registry import Registry

    # a short temp dir: Ray's unix sockets live under it
    ray_tmp = tempfile.mkdtemp(prefix="rj", dir="/tmp")
    gcs, dash = _free_port(), _free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": str(REPO)}
    env.pop("RAY_ADDRESS", None)
    # --block: the head lives as long as this process, which the test ends by PID (never `ray stop`: it would
    # stop every Ray on the machine)
    head = subprocess.Popen([str(BIN / "ray"), "start", "--head", "--block", "--port", str(gcs), "--dashboard-host",
                             "127.0.0.1", "--dashboard-port", str(dash), "--num-cpus", "2", "--temp-dir", ray_tmp,
                             "--disable-usage-stats",
                             # ports of its own: a Ray already running here (the test session's) holds the defaults
                             *(x for flag in ("--dashboard-agent-listen-port", "--dashboard-agent-grpc-port",
                                              "--metrics-export-port", "--runtime-env-agent-port",
                                              "--ray-client-server-port")
                               for x in (flag, str(_free_port())))], env=env, cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    address = f"http://127.0.0.1:{dash}"
    registry = tmp_path / "models"
    try:
        _wait_for(lambda: head.poll() is not None or _up(f"{address}/api/version"), 120)
        assert head.poll() is None, head.stdout.read()
        rl = _submit(address, ["crypto-intel", "rl", "train", "--input", CANDLES, "--timesteps", "1024", "--n-steps",
                               "256", "--registry", str(registry), "--promote"], env)
        assert rl.returncode == 0, rl.stdout[-3000:] + rl.stderr[-3000:]
        assert "succeeded" in rl.stdout + rl.stderr and "buy_and_hold" in rl.stdout + rl.stderr
        ml = _submit(address, ["crypto-intel", "ml", "train", "--input", CANDLES, "--rounds", "30", "--folds", "2",
                               "--registry", str(registry), "--promote"], env)
        assert ml.returncode == 0, ml.stdout[-3000:] + ml.stderr[-3000:]
        assert "succeeded" in ml.stdout + ml.stderr
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # the head and what it started
        try:
            head.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
    reg = Registry(registry)
    policy, model = reg.production("policy"), reg.production("xgb")
    assert policy.kind == "rl_policy" and policy.metrics["held_out"]["rows"][1]["name"] == "buy_and_hold"
    assert model.kind == "xgboost" and model.metrics["holdout"]["rows"] > 0


def _submit(address: str, argv: list[str], env: dict) -> subprocess.CompletedProcess:
    """``ray job submit`` once the head's job agent takes jobs (the dashboard answers a little before it does)."""
    deadline = time.monotonic() + 180
    while True:
        out = _ray("job", "submit", "--address", address, "--", *argv, env=env)
        if out.returncode == 0 or "No available agent" not in out.stdout + out.stderr or time.monotonic() > deadline:
            return out
        time.sleep(2)


def _up(url: str) -> bool:
    import urllib.request
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False
