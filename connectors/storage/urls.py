"""Service URLs in logs and errors: never with their password."""

from __future__ import annotations

from urllib.parse import urlsplit


def redact(url: str) -> str:
    """``scheme://user@host:port/path`` of a URL, dropping any password and query."""
    p = urlsplit(url)
    host = f"{p.hostname}:{p.port}" if p.port else str(p.hostname)
    return f"{p.scheme}://{p.username + '@' if p.username else ''}{host}{p.path}"
