"""Tests against a real local Ethereum node (Hardhat) and contracts compiled offline with solc."""
