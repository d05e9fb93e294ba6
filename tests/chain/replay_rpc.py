"""A local Ethereum JSON-RPC node that answers from recorded responses (ethereum-etl's test resources).

A call ``(method, params)`` is answered from ``web3_response.<method>_<params>.json`` in the case
directories (see :func:`response_file`); a call without a file gets JSON-RPC error -32601 "method not
found", so a client's fallbacks run (``eth_getLogs`` -> filters, ``eth_getBlockReceipts`` -> one receipt
per transaction). JSON-RPC batches are answered item by item. Faults can be injected per method:
truncated or non-JSON bodies, a missing ``result``, wrong types, numbers over 256 bits, 5xx and 429.
Use ``async with`` inside a running loop, or ``with`` to serve from a background thread (for code
that starts its own loop, such as the CLI).
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from aiohttp import web
from aiohttp.test_utils import TestServer

Mutator = Callable[[dict[str, Any]], dict[str, Any]]
BODY_FAULTS = ("truncate", "not_json", "http500", "http429", "huge_json_number")
ITEM_FAULTS = ("no_result", "wrong_type", "huge_hex", "error", "drop")


def _param_text(param: Any) -> str:
    if isinstance(param, dict):
        return "_".join(f"{k}_{_param_text(param[k])}" for k in sorted(param))
    if isinstance(param, list):
        return "_".join(_param_text(p) for p in param)
    return str(param).lower()  # True -> "true", as the recorded file names have it


def response_file(method: str, params: list[Any]) -> str:
    """The recorded file name of a call: ``web3_response.<method>_<params joined by _>.json``."""
    return f"web3_response.{method}_{'_'.join(_param_text(p) for p in params)}.json"


@dataclass
class _Fault:
    method: str  # "*" matches every method
    kind: str | Mutator
    times: int


def _wrong_type(result: Any) -> Any:
    if isinstance(result, dict):
        return ["not", "an", "object"]
    if isinstance(result, list):
        return {"not": "a list"}
    return 12345


def _huge_hex(result: Any) -> Any:
    huge = "0x" + "f" * 80  # 320 bits: no uint256
    if isinstance(result, dict):
        return {k: (huge if k in ("number", "timestamp", "gasUsed", "cumulativeGasUsed") else v)
                for k, v in result.items()}
    if isinstance(result, list):
        return [_huge_hex(r) for r in result]
    return huge


class ReplayRpc:
    """JSON-RPC over HTTP on 127.0.0.1 (a free port), answering from recorded files."""

    def __init__(self, *case_dirs: Path, extra: dict[str, Any] | None = None, batches: bool = True) -> None:
        self.case_dirs = [Path(d) for d in case_dirs]
        self.extra = dict(extra or {})  # file name -> recorded response, beside the directories' files
        self.batches = batches  # False: answer a batch with one error object, as nodes without batches do
        self.calls: list[tuple[str, list[Any]]] = []
        self.http_requests = 0
        self.unanswered: list[str] = []  # files asked for that do not exist
        self._faults: list[_Fault] = []
        self._server: TestServer | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------------------------------ control

    def fault(self, method: str, kind: str | Mutator, times: int = 1) -> Self:
        """Spoil the next ``times`` answers to ``method`` ("*": any): a named kind or a function of the response."""
        if isinstance(kind, str) and kind not in BODY_FAULTS + ITEM_FAULTS:
            raise ValueError(f"unknown fault {kind!r}")
        self._faults.append(_Fault(method, kind, times))
        return self

    def methods(self) -> list[str]:
        """The methods called, in order."""
        return [m for m, _ in self.calls]

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        return str(self._server.make_url("/"))

    async def __aenter__(self) -> Self:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._server = TestServer(app, host="127.0.0.1", port=0)
        await self._server.start_server()
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._server is not None:
            await self._server.close()

    def __enter__(self) -> Self:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="replay-rpc", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.__aenter__(), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._loop is not None and self._thread is not None
        asyncio.run_coroutine_threadsafe(self.__aexit__(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    # ------------------------------------------------------------------------------------------ answers

    def _take_fault(self, method: str, kinds: tuple[str, ...] | None) -> str | Mutator | None:
        for f in self._faults:
            named_ok = kinds is None or (isinstance(f.kind, str) and f.kind in kinds)
            if f.times > 0 and f.method in ("*", method) and named_ok:
                if kinds is None and isinstance(f.kind, str) and f.kind in BODY_FAULTS:
                    continue
                f.times -= 1
                return f.kind
        return None

    def _recorded(self, name: str) -> dict[str, Any] | None:
        if name in self.extra:
            return self.extra[name]
        for d in self.case_dirs:
            path = d / name
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def _answer(self, call: Any) -> dict[str, Any] | None:
        if not isinstance(call, dict) or not isinstance(call.get("method"), str):
            return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
        method, params, call_id = call["method"], call.get("params") or [], call.get("id")
        self.calls.append((method, params))
        name = response_file(method, params)
        recorded = self._recorded(name)
        if recorded is None:
            self.unanswered.append(name)
            return {"jsonrpc": "2.0", "id": call_id,
                    "error": {"code": -32601, "message": f"the method {method} does not exist/is not available"}}
        response: dict[str, Any] = {"jsonrpc": "2.0", "id": call_id}
        if "error" in recorded:
            response["error"] = recorded["error"]
        else:
            response["result"] = recorded.get("result")
        fault = self._take_fault(method, None)
        if fault is None:
            return response
        if callable(fault):
            return fault(response)
        if fault == "drop":
            return None
        if fault == "no_result":
            response.pop("result", None)
        elif fault == "wrong_type":
            response["result"] = _wrong_type(response.get("result"))
        elif fault == "huge_hex":
            response["result"] = _huge_hex(response.get("result"))
        elif fault == "error":
            response.pop("result", None)
            response["error"] = {"code": -32000, "message": "injected failure"}
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        self.http_requests += 1
        try:
            payload = json.loads(await request.read())
        except ValueError:
            return web.json_response({"jsonrpc": "2.0", "id": None,
                                      "error": {"code": -32700, "message": "parse error"}})
        methods = [c.get("method", "") for c in payload if isinstance(c, dict)] if isinstance(payload, list) \
            else [payload.get("method", "") if isinstance(payload, dict) else ""]
        for m in methods:  # a body-level fault spoils the whole HTTP answer, batch or not
            fault = self._take_fault(m, BODY_FAULTS)
            if fault is not None:
                return self._body_fault(fault, payload)
        if isinstance(payload, list) and not self.batches:
            return web.json_response({"jsonrpc": "2.0", "id": None,
                                      "error": {"code": -32600, "message": "batch requests are not supported"}})
        if isinstance(payload, list):
            answers = [a for a in (self._answer(c) for c in payload) if a is not None]
            return web.Response(body=json.dumps(answers).encode(), content_type="application/json")
        answer = self._answer(payload)
        return web.Response(body=json.dumps(answer).encode(), content_type="application/json")

    def _body_fault(self, fault: str | Mutator, payload: Any) -> web.Response:
        if fault == "http500":
            return web.Response(status=500, text="internal error")
        if fault == "http429":
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if fault == "not_json":
            return web.Response(body=b"<html><body>502 Bad Gateway</body></html>", content_type="text/html")
        first = payload[0] if isinstance(payload, list) and payload else payload
        call_id = first.get("id") if isinstance(first, dict) else None
        if fault == "huge_json_number":  # a bare JSON integer no 64-bit parser holds (and no uint256 quantity)
            text = f'{{"jsonrpc": "2.0", "id": {json.dumps(call_id)}, "result": {2**300}}}'
            return web.Response(body=text.encode(), content_type="application/json")
        answers = [self._answer(c) for c in payload] if isinstance(payload, list) else self._answer(payload)
        body = json.dumps(answers).encode()
        return web.Response(body=body[: len(body) // 2], content_type="application/json")  # truncate
