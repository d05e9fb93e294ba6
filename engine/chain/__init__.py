"""On-chain data: JSON-RPC decoding (pure), an async RPC client and the ``chain export`` job."""
