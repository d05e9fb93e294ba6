"""Starting and stopping the local Ray instance the CLI and tests use."""

from __future__ import annotations

import logging
import os

import ray


def start_ray(num_cpus: int | None = None, dashboard: bool = True, dashboard_port: int = 8265,
              address: str | None = None) -> str | None:
    """Start (or join, with ``address``) Ray; return the dashboard URL.

    A fresh local instance is started by default (``address="local"``) so a stale cluster file
    from an earlier crash is never tried. The dashboard binds to 127.0.0.1 only.
    """
    if ray.is_initialized():
        return None
    address = address or os.environ.get("CRYPTO_INTEL_RAY_ADDRESS") or "local"
    kwargs: dict = {"address": address, "logging_level": logging.WARNING, "log_to_driver": True}
    if address == "local":
        kwargs.update(include_dashboard=dashboard, dashboard_host="127.0.0.1", dashboard_port=dashboard_port,
                      num_cpus=num_cpus)
    ctx = ray.init(**kwargs)
    url = getattr(ctx, "dashboard_url", None)
    return f"http://{url}" if url and not url.startswith("http") else url


def stop_ray() -> None:
    if ray.is_initialized():
        ray.shutdown()
