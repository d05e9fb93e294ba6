"""I/O connectors: everything that talks to the outside world (Postgres, Redis, venues, JSON-RPC, reference data)."""
