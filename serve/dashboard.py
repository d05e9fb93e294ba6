"""The live dashboard: one static page (HTML, JS, CSS from ``serve/static``) served by the HTTP API.

The page itself needs no key: it holds no data. Its data calls (``/api/v1/...``) and the live feed
take the key the user gives the page. Assets come from a fixed allow-list, so no request path ever
reaches the file system.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).with_name("static")
PAGE = "dashboard.html"
# asset name -> media type; anything else is a 404 without touching the disk
ASSETS = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
# the page loads only its own assets and talks only to its own API and the feed (any ws: origin)
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


@lru_cache(maxsize=None)
def _read(name: str) -> bytes:
    return (STATIC / name).read_bytes()


def add_dashboard(app: FastAPI) -> None:
    """Register ``GET /dashboard`` and ``GET /dashboard/{asset}`` (outside the OpenAPI document)."""

    @app.get("/dashboard", include_in_schema=False)
    async def dashboard() -> Response:
        # no-referrer: the page URL may carry ?key=, which must not leak to other sites
        return Response(_read(PAGE), media_type="text/html; charset=utf-8",
                        headers={**HEADERS, "Content-Security-Policy": CSP})

    @app.get("/dashboard/{asset}", include_in_schema=False)
    async def dashboard_asset(asset: str) -> Response:
        media = ASSETS.get(asset)
        if media is None:
            raise HTTPException(404, f"no dashboard asset {asset!r}")
        return Response(_read(asset), media_type=media, headers=HEADERS)
