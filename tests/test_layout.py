"""Layout rules: engine/ never imports Ray; its operators stay pure (no asyncio, no network, no
database clients); only the storage adapters, venue connections, reference-data clients and the
CLIs talk to services. The cluster config parses."""

from __future__ import annotations

import ast
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
IO = {"asyncio", "aiohttp", "websockets", "socket", "asyncpg", "redis", "web3"}
LAYERS = {"ray", "actors", "serve"}
# the CLI is the one engine module allowed to start Ray (it imports actors lazily)
ALLOWED = {"engine/cli.py"}
# storage adapters (Postgres, Redis), venue connections, reference-data clients and their CLIs may do
# I/O, but never import Ray; parsers, books and sequencers beside them stay pure
IO_ALLOWED = ("engine/storage/", "engine/db_cli.py", "engine/refdata/", "engine/venues/supervisor.py",
              "engine/venues/rest.py", "engine/venues/check.py", "engine/venues/cli.py", "engine/chain/rpc.py",
              "engine/chain/export_job.py", "engine/chain/follower.py")


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_engine_is_pure() -> None:
    offenders = {}
    for path in (REPO / "engine").rglob("*.py"):
        rel = path.relative_to(REPO).as_posix()
        if rel in ALLOWED:
            continue
        forbidden = LAYERS if rel.startswith(IO_ALLOWED) else LAYERS | IO
        bad = _imports(path) & forbidden
        if bad:
            offenders[rel] = sorted(bad)
    assert not offenders, f"engine modules importing Ray/I/O layers: {offenders}"


def test_top_level_layout() -> None:
    for name in ("engine", "actors", "serve", "rl", "schemas", "migrations", "deploy", "tests"):
        assert (REPO / name).is_dir(), name
    assert (REPO / "pyproject.toml").is_file()


def test_ray_cluster_yaml_parses() -> None:
    doc = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    assert doc["cluster_name"] and doc["provider"]["type"] == "local"
    head = " ".join(doc["head_start_ray_commands"])
    assert "--head" in head and "--port=6379" not in head  # 6379 belongs to Redis
    assert doc["worker_start_ray_commands"]
