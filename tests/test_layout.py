"""Layout rules, with no exception list.

Imports run one way: commands and jobs (app/) -> serve/, actors/, rl/ -> I/O connectors (connectors/) ->
pure logic (engine/) -> schemas/. The pure packages import no Ray, asyncio, network, database, process or
file-watching module; no top-level package cycle exists; no private name is imported from another package;
every exception the code defines derives from the one root error. The cluster config parses.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
# a package may import only packages of a strictly lower rank (and itself)
RANK = {"schemas": 0, "engine": 1, "connectors": 2, "actors": 3, "serve": 3, "rl": 3, "app": 4}
PURE = ("schemas", "engine")
# first-party folders outside the layers: nothing in a layer may import them
UNRANKED = ("tests", "benchmarks")
# what the pure packages may import besides the standard library and each other: computation only
PURE_THIRD_PARTY = {"numpy", "scipy", "pyarrow", "pydantic", "numba", "orjson", "xgboost"}
# standard-library modules that do I/O with the outside world, run processes or wait on events
STDLIB_IO = ("asyncio", "socket", "ssl", "selectors", "select", "subprocess", "multiprocessing", "concurrent",
             "http", "urllib.request", "ftplib", "smtplib", "poplib", "imaplib", "telnetlib", "socketserver",
             "xmlrpc", "sqlite3", "dbm", "shelve", "webbrowser", "signal", "mmap", "pty", "fcntl")


def _modules(root: Path, package: str) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def _imports(root: Path, path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) for every import in the file, lazy ones and ``import_module("...")`` included;
    relative imports resolved."""
    tree = ast.parse(path.read_text())
    here = path.relative_to(root).with_suffix("").parts
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in (
                "import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str) and not node.args[0].value.startswith("."):
            found.append((node.args[0].value, []))
        elif isinstance(node, ast.Import):
            found += [(a.name, []) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = here[:len(here) - node.level]
                module = ".".join([*base, module] if module else base)
            found.append((module, [a.name for a in node.names]))
    return found


def _top(module: str) -> str:
    return module.split(".")[0]


def layering_offenders(root: Path) -> list[str]:
    """Imports of a package of the same or a higher rank, or of tests/benchmarks."""
    return [f"{path.relative_to(root)} imports {module}"
            for package, rank in RANK.items() for path in _modules(root, package)
            for module, _ in _imports(root, path)
            if _top(module) in UNRANKED
            or (_top(module) in RANK and _top(module) != package and RANK[_top(module)] >= rank)]


def package_cycles(root: Path) -> list[str]:
    """Cycles in the graph of imports between top-level packages."""
    graph = {p: {_top(m) for path in _modules(root, p) for m, _ in _imports(root, path)
                 if _top(m) in RANK and _top(m) != p} for p in RANK}

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in sorted(graph[node]):
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen and (found := cycle_from(start, nxt, (*seen, nxt))):
                return found
        return None

    return [" -> ".join(c) for p in RANK if (c := cycle_from(p, p, (p,)))]


def io_offenders(root: Path) -> list[str]:
    """What the pure packages import beyond computation: standard-library I/O, or any third-party
    module not on the allowlist (Ray, asyncio, network, database and file-watching libraries among them)."""
    def allowed(module: str) -> bool:
        top = _top(module)
        if top in RANK:
            return True
        if top in sys.stdlib_module_names:
            return not any(module == m or module.startswith(m + ".") for m in STDLIB_IO)
        return top in PURE_THIRD_PARTY
    return [f"{path.relative_to(root)} imports {module}"
            for package in PURE for path in _modules(root, package) for module, _ in _imports(root, path)
            if not allowed(module)]


def private_offenders(root: Path) -> list[str]:
    """``from a.b import _x`` where ``a.b`` is not a module of the importer's own package directory."""
    offenders = []
    for package in RANK:
        for path in _modules(root, package):
            own = ".".join(path.relative_to(root).parent.parts)
            for module, names in _imports(root, path):
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                private += [part for part in module.split(".")[1:] if part.startswith("_") and not part.startswith("__")]
                if private and _top(module) in RANK and module.rsplit(".", 1)[0] != own and module != own:
                    offenders.append(f"{path.relative_to(root)} imports {private} from {module}")
    return offenders


def test_imports_run_one_way() -> None:
    offenders = layering_offenders(REPO)
    assert not offenders, "imports against the layering:\n" + "\n".join(offenders)


def test_no_cycle_between_top_level_packages() -> None:
    assert not package_cycles(REPO)


def test_pure_packages_do_no_io() -> None:
    offenders = io_offenders(REPO)
    assert not offenders, "pure logic importing Ray or I/O:\n" + "\n".join(offenders)


def test_no_private_name_crosses_a_package() -> None:
    offenders = private_offenders(REPO)
    assert not offenders, "private names imported across packages:\n" + "\n".join(offenders)


def test_the_checks_catch_violations(tmp_path) -> None:
    """Each check reports a planted violation, so a clean result above means something."""
    files = {
        "engine/ops.py": "import asyncio\nfrom connectors.storage.db import Pool\n",
        "engine/structure/swings.py": "from engine.signals.rules import _private\nfrom .events import _ok\n",
        "engine/structure/events.py": "def _ok(): pass\n",
        "connectors/db.py": "def lazy():\n    from app.cli import main\n",
        "schemas/records.py": "import ray.util\n",
        "schemas/arrow.py": "import sqlite3\nimport importlib\nimportlib.import_module('redis.asyncio')\n",
        "actors/shard.py": "from tests.helpers import fixture\nimport engine.signals._hidden\n",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert sorted(layering_offenders(tmp_path)) == ["actors/shard.py imports tests.helpers",
                                                     "connectors/db.py imports app.cli",
                                                     "engine/ops.py imports connectors.storage.db"]
    assert sorted(io_offenders(tmp_path)) == ["engine/ops.py imports asyncio", "schemas/arrow.py imports redis.asyncio",
                                              "schemas/arrow.py imports sqlite3", "schemas/records.py imports ray.util"]
    assert sorted(private_offenders(tmp_path)) == [
        "actors/shard.py imports ['_hidden'] from engine.signals._hidden",
        "engine/structure/swings.py imports ['_private'] from engine.signals.rules"]
    assert not package_cycles(tmp_path)  # upward imports, but no loop yet
    (tmp_path / "app").mkdir(exist_ok=True)
    (tmp_path / "app" / "cli.py").write_text("from engine.ops import thing\n")
    assert "engine -> connectors -> app -> engine" in package_cycles(tmp_path)


def _all_modules():
    for package in RANK:
        root = importlib.import_module(package)
        yield root
        for info in pkgutil.walk_packages(root.__path__, package + "."):
            yield importlib.import_module(info.name)


def test_every_exception_derives_from_the_root_error() -> None:
    from schemas.errors import CryptoIntelError

    offenders = []
    for module in _all_modules():
        for name, obj in vars(module).items():
            if (inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == module.__name__
                    and not issubclass(obj, CryptoIntelError)):
                offenders.append(f"{module.__name__}.{name}")
    assert not offenders, f"exceptions outside the CryptoIntelError hierarchy: {offenders}"


def test_top_level_layout() -> None:
    for name in ("app", "connectors", "engine", "actors", "serve", "rl", "schemas", "migrations", "deploy", "tests"):
        assert (REPO / name).is_dir(), name
    assert (REPO / "pyproject.toml").is_file()


def test_ray_cluster_yaml_parses() -> None:
    doc = yaml.safe_load((REPO / "ray_cluster.yaml").read_text())
    assert doc["cluster_name"] and doc["provider"]["type"] == "local"
    head = " ".join(doc["head_start_ray_commands"])
    assert "--head" in head and "--port=6379" not in head  # 6379 belongs to Redis
    assert doc["worker_start_ray_commands"]
