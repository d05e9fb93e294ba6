"""Pytest fixtures for a real local Ethereum node; tests/chain/conftest.py exposes them, other folders import them.

Without Node.js or the npm packages (``npm ci --prefix tests/chain/node``) the tests skip, or fail when
the environment variable ``CI`` is set (a CI run must not pass by skipping).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chain.compile import Artifact, CompileError, compile_contracts
from tests.chain.node import LocalNode, NodeError, missing_reason
from tests.services import unavailable


@pytest.fixture(scope="session")
def chain_artifacts() -> dict[str, Artifact]:
    """ABI and bytecode of tests/chain/contracts by contract name (no node needed: for decoding tests)."""
    reason = missing_reason()
    if reason:
        unavailable(reason)
    try:
        return compile_contracts()
    except CompileError as e:
        pytest.fail(f"tests/chain/contracts do not compile: {e}")


@pytest.fixture(scope="session")
def local_node(chain_artifacts: dict[str, Artifact]) -> Iterator[LocalNode]:
    """One Hardhat node for the whole session (starting it costs ~2 s); stopped at the end."""
    node = LocalNode()
    try:
        node.start()
    except NodeError as e:
        unavailable(f"local Ethereum node did not start: {e}")
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture
def chain_node(local_node: LocalNode) -> Iterator[LocalNode]:
    """The session node, rolled back after the test: chain, state, mining mode and proxy as before it."""
    base = local_node.snapshot()
    yield local_node
    local_node.accept_websockets()
    if not local_node.automine:
        local_node.set_automine(True)
    if local_node.interval_ms:
        local_node.set_interval_mining(0)
    local_node.revert(base)
