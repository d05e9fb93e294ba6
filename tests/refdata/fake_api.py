"""A local stand-in for CoinGecko and DexScreener: an aiohttp server on 127.0.0.1 that answers scripted
replies per path and records every request it saw (path, query, headers, arrival time)."""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def fixture_bytes(name: str) -> bytes:
    """Raw bytes of a fixture file."""
    return (FIXTURES / name).read_bytes()


def fixture(name: str) -> Any:
    """Decoded JSON of a fixture file."""
    return json.loads(fixture_bytes(name))


@dataclass
class Call:
    """One request as the server saw it."""

    path: str
    query: dict[str, str]
    headers: dict[str, str]
    at: float  # time.monotonic() on arrival


@dataclass
class Reply:
    """A canned answer: status, raw body, headers, and an optional delay before answering."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] | None = None
    delay_s: float = 0.0


def ok(body: Any) -> Reply:
    """A 200 JSON answer (bytes are sent as they are, anything else is JSON-encoded)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return Reply(200, raw, {"Content-Type": "application/json"})


def status(code: int, body: str = "", headers: dict[str, str] | None = None) -> Reply:
    """An error answer with a text body."""
    return Reply(code, (body or f"error {code}").encode(), headers)


Answer = Reply | Callable[[web.Request], Reply | Awaitable[Reply]]


class FakeApi:
    """Scripted replies per path: each request takes the next one, the last one repeats."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self._script: dict[str, list[Answer]] = {}
        self._server: TestServer | None = None

    def on(self, path: str, *answers: Answer) -> FakeApi:
        """Answer requests to ``path`` with ``answers`` in turn (the last repeats); replaces earlier ones."""
        self._script[path] = list(answers)
        return self

    def calls_to(self, path: str) -> list[Call]:
        """The requests that hit ``path``."""
        return [c for c in self.calls if c.path == path]

    @property
    def url(self) -> str:
        """Base URL of the running server, without a trailing slash."""
        assert self._server is not None
        return str(self._server.make_url("")).rstrip("/")

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        self._server = TestServer(app, host="127.0.0.1")
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        await self._server.close()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.calls.append(Call(request.path, dict(request.query), dict(request.headers), time.monotonic()))
        answers = self._script.get(request.path)
        if not answers:
            return web.Response(status=404, text=f"no route {request.path}")
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if not isinstance(answer, Reply):
            answer = answer(request)
            if inspect.isawaitable(answer):
                answer = await answer
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return web.Response(status=answer.status, body=answer.body, headers=answer.headers)
