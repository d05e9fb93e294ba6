"""Compile tests/chain/contracts offline with the npm ``solc`` package; results cached in tests/chain/build/.

Run ``python -m tests.chain.compile`` to (re)build the cache by hand; tests call :func:`compile_contracts`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHAIN_DIR = Path(__file__).resolve().parent
CONTRACTS_DIR = CHAIN_DIR / "contracts"
NODE_DIR = CHAIN_DIR / "node"
BUILD_DIR = CHAIN_DIR / "build"
SOLCJS = NODE_DIR / "node_modules" / "solc" / "solc.js"
# what CI runs (from the repository root) to install Hardhat and solc from package-lock.json
INSTALL_COMMAND = "npm ci --prefix tests/chain/node"

# part of the cache key: a settings change must not reuse old bytecode
SETTINGS: dict[str, Any] = {
    "optimizer": {"enabled": True, "runs": 200},
    "evmVersion": "cancun",
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}


class CompileError(RuntimeError):
    """solc reported errors (or could not be run)."""


@dataclass(frozen=True)
class Artifact:
    """ABI and creation bytecode of one contract."""

    name: str
    abi: list[dict[str, Any]]
    bytecode: str
    deployed_bytecode: str


def sources() -> dict[str, str]:
    """Every ``*.sol`` under contracts/, by file name."""
    return {p.name: p.read_text() for p in sorted(CONTRACTS_DIR.glob("*.sol"))}


def solc_version() -> str:
    """Version of the installed npm solc package (part of the cache key)."""
    return json.loads((SOLCJS.parent / "package.json").read_text())["version"]


def source_hash(srcs: dict[str, str]) -> str:
    """Key of a build: sources, compiler version and settings."""
    blob = json.dumps({"sources": srcs, "solc": solc_version(), "settings": SETTINGS}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _run_solc(srcs: dict[str, str]) -> dict[str, Any]:
    node = shutil.which("node")
    if node is None or not SOLCJS.is_file():
        raise CompileError(f"needs node and {SOLCJS} (run: {INSTALL_COMMAND})")
    request = {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in srcs.items()},
        "settings": SETTINGS,
    }
    proc = subprocess.run(
        [node, str(SOLCJS), "--standard-json"],
        input=json.dumps(request), capture_output=True, text=True, timeout=120, check=False,
    )
    if proc.returncode != 0:
        raise CompileError(f"solcjs exited {proc.returncode}: {proc.stderr.strip()[:2000]}")
    # solcjs may print a warning line before the JSON document
    out = json.loads(proc.stdout[proc.stdout.index("{"):])
    errors = [e for e in out.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    return out


def _artifacts(output: dict[str, Any]) -> dict[str, Artifact]:
    found: dict[str, Artifact] = {}
    for contracts in output["contracts"].values():
        for name, c in contracts.items():
            bytecode = c["evm"]["bytecode"]["object"]
            if not bytecode:  # interfaces have no code
                continue
            found[name] = Artifact(name, c["abi"], "0x" + bytecode, "0x" + c["evm"]["deployedBytecode"]["object"])
    return found


def compile_contracts(build_dir: Path = BUILD_DIR) -> dict[str, Artifact]:
    """All contracts by name, from the cache when the sources are unchanged, else compiled now."""
    srcs = sources()
    path = build_dir / f"contracts-{source_hash(srcs)}.json"
    if path.is_file():
        return {name: Artifact(**a) for name, a in json.loads(path.read_text()).items()}
    found = _artifacts(_run_solc(srcs))
    build_dir.mkdir(parents=True, exist_ok=True)
    # write-then-rename: a concurrent test process never reads a half-written cache file
    fd, tmp = tempfile.mkstemp(dir=build_dir, suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump({name: a.__dict__ for name, a in found.items()}, f)
    os.replace(tmp, path)
    return found


if __name__ == "__main__":
    built = compile_contracts()
    for art in built.values():
        print(f"{art.name}: {len(art.bytecode) // 2 - 1} bytes")
