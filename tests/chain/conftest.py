"""Fixtures of the on-chain tests: a session-wide Hardhat node and a per-test rolled-back view of it."""

from tests.chain.fixtures import chain_artifacts, chain_node, local_node

__all__ = ["chain_artifacts", "chain_node", "local_node"]
