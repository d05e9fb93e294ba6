"""Ethereum JSON-RPC client, the chain follower and the export job."""
