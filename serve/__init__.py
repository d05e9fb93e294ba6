"""Ray Serve deployments (HTTP API, models, WebSocket feed)."""
