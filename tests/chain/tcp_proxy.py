"""The storage tests' TcpProxy on a private event loop in a daemon thread, so sync code can cut connections.

The proxy must keep forwarding while a test's own loop is busy (or while a sync test blocks), hence
its own loop and thread rather than the test's loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, Self

from tests.storage.tcp_proxy import TcpProxy

_CALL_TIMEOUT_S = 10.0


class ThreadedTcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``; ``cut()`` drops every connection, optionally refusing new ones."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._proxy = TcpProxy(target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="chain-tcp-proxy", daemon=True)
        self.accepting = False

    @property
    def port(self) -> int:
        return self._proxy.port

    @property
    def connections(self) -> int:
        """Connections accepted so far (a reconnecting client makes it grow)."""
        return self._proxy.connections

    def _call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(_CALL_TIMEOUT_S)

    def start(self) -> Self:
        """Start the thread and listen (on a free port the first time, the same port afterwards)."""
        if not self._thread.is_alive():
            self._thread.start()
        if not self.accepting:
            self._call(self._proxy.start())
            self.accepting = True
        return self

    def cut(self, refuse_new: bool = False) -> None:
        """Abort every open connection; keep refusing new ones if ``refuse_new`` (until :meth:`start`)."""
        self._call(self._proxy.stop())
        self.accepting = False
        if not refuse_new:
            self.start()

    async def _shutdown(self) -> None:
        await self._proxy.stop()
        # let the forwarding tasks end on their aborted sockets (cancelling them makes asyncio log errors);
        # closing the loop with them pending would warn
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2.0)
            for t in pending:
                t.cancel()

    def close(self) -> None:
        """Stop listening, drop connections and end the thread."""
        if not self._thread.is_alive():
            return
        self._call(self._shutdown())
        self.accepting = False
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(_CALL_TIMEOUT_S)
        self._loop.close()
