"""Idempotent, bounded, loss-free batch writer into Postgres (asyncpg, binary COPY).

Rows accumulate per table until ``batch_rows`` or ``linger_s``; sealed batches go to a queue that
a few connections drain. Each batch is written with one binary COPY straight into the table; if
any row is already there (a replay, a retried batch whose commit was not acknowledged), the
batch is written again through a temporary staging table with ``INSERT ... ON CONFLICT DO
NOTHING``. Either way the table ends up with every row exactly once.

While Postgres is down or slow the batch in hand is retried with backoff; memory holds at most
``max_buffer_rows`` rows, and batches beyond that are parked on disk (``SpillDir``) and replayed,
oldest first, once writes succeed again. ``write`` never blocks on the database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np
import pyarrow as pa

from connectors.retry import Backoff
from connectors.storage import pgcopy
from connectors.storage.spill import SpillDir
from connectors.storage.tables import TableSpec, table

log = logging.getLogger(__name__)
MAX_NEW_PARTITIONS = 24  # per batch; more distinct months than this is almost surely bad data
# SQLSTATE classes that mean the batch itself can never be written: data exceptions, integrity
# violations (unique ones are merged, not raised), syntax or missing objects, privileges
_PERMANENT_CLASSES = ("22", "23", "42", "2B", "28")


@dataclass
class _Batch:
    spec: TableSpec
    data: pa.Table
    created: float = field(default_factory=time.monotonic)
    spill: object | None = None  # the SpillFile it came from, deleted once committed


def is_permanent(exc: BaseException) -> bool:
    """True only when Postgres refused the batch's content or the schema is missing. Anything
    else (lost connections, restarts, overload, a client library caught mid-teardown) is retried:
    setting rows aside must never be the answer to a flaky connection."""
    if isinstance(exc, pgcopy.EncodeError):
        return True
    state = getattr(exc, "sqlstate", None) or ""
    return isinstance(exc, asyncpg.PostgresError) and state[:2] in _PERMANENT_CLASSES


async def _chunks(payload: bytes, size: int = 1 << 20):
    # an async source keeps asyncpg from reading the payload through a thread pool
    view = memoryview(payload)
    for start in range(0, len(view), size):
        yield view[start:start + size]


class PgWriter:
    """Batches rows per table and writes them idempotently with a few connections."""

    def __init__(self, dsn: str, spill_dir: str | Path, *, connections: int = 2, batch_rows: int = 50_000,
                 linger_s: float = 0.5, max_buffer_rows: int = 1_000_000, retry_initial_s: float = 0.1,
                 retry_max_s: float = 5.0, connect_timeout_s: float = 5.0, call_timeout_s: float = 60.0) -> None:
        self.dsn = dsn
        self.spill = SpillDir(spill_dir)
        self.connections = max(1, connections)
        self.batch_rows = batch_rows
        self.linger_s = linger_s
        self.max_buffer_rows = max_buffer_rows
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.connect_timeout_s = connect_timeout_s
        self.call_timeout_s = call_timeout_s  # a call the network left hanging is retried, never waited on forever
        self._pending: dict[str, list[pa.Table]] = {}
        self._pending_rows: dict[str, int] = {}
        self._pending_since: dict[str, float] = {}
        self._queue: deque[_Batch] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._in_memory = 0  # rows pending, queued or being written
        self._in_flight = 0
        self._partitioned: set[str] | None = None
        self._months: dict[str, set[int]] = {}
        self._claimed: set[int] = set()  # parked batches a worker is writing
        self._tasks: list[asyncio.Task] = []
        self._closing = False
        self._last_commit_lag = 0.0
        self.counters = dict(rows_written=0, batches_written=0, merge_batches=0, rows_spilled=0,
                             batches_spilled=0, rows_replayed=0, retries=0, reconnects=0, rows_rejected=0,
                             batches_rejected=0)
        self.last_error = ""

    # -- public API -------------------------------------------------------------------------------

    async def start(self) -> "PgWriter":
        """Start the connection workers and the linger timer; the database may still be down."""
        self._tasks = [asyncio.create_task(self._worker(i), name=f"pg-writer-{i}") for i in range(self.connections)]
        self._tasks.append(asyncio.create_task(self._ticker(), name="pg-writer-linger"))
        return self

    def write(self, table_name: str, data: pa.Table) -> None:
        """Queue rows for a table (an Arrow table with its columns); returns at once."""
        if data.num_rows == 0:
            return
        spec = table(table_name)
        self._pending.setdefault(spec.name, []).append(data)
        self._pending_rows[spec.name] = self._pending_rows.get(spec.name, 0) + data.num_rows
        self._pending_since.setdefault(spec.name, time.monotonic())
        self._in_memory += data.num_rows
        self._idle.clear()
        if self._pending_rows[spec.name] >= self.batch_rows:
            self._seal(spec.name)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every row written so far, including parked ones, is committed."""
        for name in list(self._pending):
            self._seal(name)
        self._wake.set()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while self._in_memory or self.spill.files():
            self._idle.clear()
            self._wake.set()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError(f"Postgres writer still holds {self._in_memory} rows in memory and "
                                   f"{len(self.spill.files())} parked batches ({self.last_error or 'no error'})")
            try:
                await asyncio.wait_for(self._idle.wait(), timeout=min(left or 1.0, 1.0))
            except asyncio.TimeoutError:
                pass

    async def close(self, timeout_s: float | None = 30.0) -> None:
        """Flush what can be flushed in ``timeout_s``, park the rest on disk, stop the workers."""
        try:
            await self.flush(timeout_s)
        except TimeoutError:
            self._park_all()
        finally:
            self._closing = True
            self._wake.set()
            for t in self._tasks:
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            self._park_all()

    def stats(self) -> dict:
        """Counters plus buffer depth (rows in memory, parked files) and write lag in seconds."""
        oldest = min([b.created for b in self._queue] + list(self._pending_since.values()), default=None)
        return {**self.counters, "rows_in_memory": self._in_memory, "queued_batches": len(self._queue),
                "spill_files": len(self.spill.files()),
                "write_lag_s": 0.0 if oldest is None else time.monotonic() - oldest,
                "last_commit_lag_s": self._last_commit_lag, "last_error": self.last_error}

    # -- batching ---------------------------------------------------------------------------------

    def _seal(self, name: str) -> None:
        parts = self._pending.pop(name, [])
        self._pending_rows.pop(name, None)
        since = self._pending_since.pop(name, time.monotonic())
        if not parts:
            return
        data = pa.concat_tables([p.select(table(name).names) for p in parts], promote_options="permissive") \
            if len(parts) > 1 else parts[0].select(table(name).names)
        batch = _Batch(table(name), data, since)
        if self._in_memory > self.max_buffer_rows:
            self._park(batch)  # over the memory bound: straight to disk, replayed later
        else:
            self._queue.append(batch)
        self._wake.set()

    def _park(self, batch: _Batch) -> None:
        self.spill.put(batch.spec.name, batch.data)
        self._in_memory -= batch.data.num_rows
        self.counters["rows_spilled"] += batch.data.num_rows
        self.counters["batches_spilled"] += 1

    def _park_all(self) -> None:
        for name in list(self._pending):
            self._seal(name)
        while self._queue:
            self._park(self._queue.popleft())

    async def _ticker(self) -> None:
        while not self._closing:
            await asyncio.sleep(min(self.linger_s, 0.25) or 0.05)
            now = time.monotonic()
            for name, since in list(self._pending_since.items()):
                if now - since >= self.linger_s:
                    self._seal(name)

    # -- writing ----------------------------------------------------------------------------------

    def _next_batch(self) -> _Batch | None:
        if self._queue:
            return self._queue.popleft()
        # nothing fresher waits: replay the oldest parked batch; its file goes once committed
        for f in self.spill.files():
            if f.seq not in self._claimed:
                self._claimed.add(f.seq)
                data = SpillDir.read(f)
                self._in_memory += data.num_rows
                return _Batch(table(f.table), data, spill=f)
        return None

    async def _worker(self, index: int) -> None:
        conn: asyncpg.Connection | None = None
        backoff = Backoff(self.retry_initial_s, self.retry_max_s)
        while not self._closing:
            batch = self._next_batch()
            if batch is None:
                if not self._in_flight and not self._queue and not self._pending:
                    self._idle.set()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=0.5)
                except asyncio.TimeoutError:
                    pass
                continue
            self._in_flight += 1
            try:
                while True:
                    try:
                        if conn is None or conn.is_closed():
                            conn = await asyncpg.connect(self.dsn, timeout=self.connect_timeout_s)
                            self.counters["reconnects"] += 1
                        await self._guarded_write(conn, batch)
                        self.last_error = ""
                        backoff.reset()
                        break
                    except asyncio.CancelledError:
                        self._requeue(batch)  # closing: the batch gets parked, not lost
                        raise
                    except Exception as e:  # noqa: BLE001 - classified below, never dropped
                        self.last_error = f"{type(e).__name__}: {e}"
                        if isinstance(e, (asyncpg.UndefinedTableError, asyncpg.UndefinedFunctionError)):
                            self.last_error += " (run `crypto-intel db migrate` against this database)"
                        if is_permanent(e):
                            self._reject(batch, e)
                            break
                        self.counters["retries"] += 1
                        delay = backoff.next()
                        log.warning("Postgres write of %d %s rows failed (%s); retrying in %.1fs",
                                    batch.data.num_rows, batch.spec.name, self.last_error, delay)
                        if conn is not None:
                            conn.terminate()
                            conn = None
                        # while we wait, later batches beyond the memory bound go to disk
                        await asyncio.sleep(delay)
            finally:
                self._in_flight -= 1
        if conn is not None:
            conn.terminate()

    def _requeue(self, batch: _Batch) -> None:
        if batch.spill is None:
            self._queue.appendleft(batch)
        else:  # its file is still on disk
            self._claimed.discard(batch.spill.seq)
            self._in_memory -= batch.data.num_rows

    def _done_with(self, batch: _Batch) -> None:
        self._in_memory -= batch.data.num_rows
        if batch.spill is not None:
            SpillDir.remove(batch.spill)
            self._claimed.discard(batch.spill.seq)

    def _reject(self, batch: _Batch, exc: Exception) -> None:
        path = self.spill.reject(batch.spec.name, batch.data, self.last_error or f"{type(exc).__name__}: {exc}")
        self._done_with(batch)
        self.counters["rows_rejected"] += batch.data.num_rows
        self.counters["batches_rejected"] += 1
        log.error("Postgres refused %d %s rows (%s); set aside in %s", batch.data.num_rows, batch.spec.name, exc, path)

    async def _guarded_write(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        """One batch with a hard deadline. A connection killed at the wrong moment can leave a
        driver call (a COMMIT, a cancellation) waiting forever; past the deadline the socket is
        closed under it, which fails every pending call, and the batch is retried elsewhere."""
        task = asyncio.ensure_future(self._write_batch(conn, batch))
        done, _ = await asyncio.wait({task}, timeout=self.call_timeout_s * 2)
        if task in done:
            return task.result()
        conn.terminate()
        task.cancel()
        await asyncio.wait({task}, timeout=1.0)
        if task.done() and not task.cancelled() and task.exception() is None:
            return  # it finished after all (and did its own bookkeeping)
        raise TimeoutError(f"writing {batch.data.num_rows} {batch.spec.name} rows took over "
                           f"{self.call_timeout_s * 2:.0f}s; connection dropped")

    async def _write_batch(self, conn: asyncpg.Connection, batch: _Batch) -> None:
        spec, data = batch.spec, batch.data
        payload = pgcopy.encode(spec, data)
        await self._ensure_partitions(conn, spec, data)
        cols = spec.names
        timeout = self.call_timeout_s
        try:
            async with conn.transaction():
                await conn.copy_to_table(spec.name, source=_chunks(payload), columns=cols, format="binary",
                                         timeout=timeout)
        except asyncpg.UniqueViolationError:
            # some rows are already there: merge through a staging table, skipping the duplicates
            stage = f"ci_stage_{spec.name}"
            col_list = ", ".join(f'"{c}"' for c in cols)
            async with conn.transaction():
                await conn.execute(f'CREATE TEMP TABLE IF NOT EXISTS {stage} (LIKE "{spec.name}") ON COMMIT DELETE ROWS',
                                   timeout=timeout)
                await conn.copy_to_table(stage, source=_chunks(payload), columns=cols, format="binary", timeout=timeout)
                await conn.execute(f'INSERT INTO "{spec.name}" ({col_list}) SELECT {col_list} FROM {stage} '
                                   "ON CONFLICT DO NOTHING", timeout=timeout)
            self.counters["merge_batches"] += 1
        self._done_with(batch)
        self.counters["rows_written"] += data.num_rows
        self.counters["batches_written"] += 1
        if batch.spill is not None:
            self.counters["rows_replayed"] += data.num_rows
        self._last_commit_lag = time.monotonic() - batch.created

    async def _ensure_partitions(self, conn: asyncpg.Connection, spec: TableSpec, data: pa.Table) -> None:
        if spec.time is None:
            return
        if self._partitioned is None:
            rows = await conn.fetch("SELECT name FROM ci_time_tables WHERE kind = 'partitioned'",
                                    timeout=self.call_timeout_s)
            self._partitioned = {r["name"] for r in rows}
        if spec.name not in self._partitioned:
            return
        ts = data.column(spec.time).to_numpy()
        # only the months that hold rows: one stray far-future timestamp must not create years of partitions
        months = set(np.unique(ts.astype("datetime64[ns]").astype("datetime64[M]")).astype(np.int64).tolist())
        known = self._months.setdefault(spec.name, set())
        new = sorted(months - known)
        if len(new) > MAX_NEW_PARTITIONS:
            log.warning("%s batch spans %d new months; rows outside the first %d go to the default partition",
                        spec.name, len(new), MAX_NEW_PARTITIONS)
            new = new[:MAX_NEW_PARTITIONS]
        for month in new:
            start = np.datetime64(month, "M").astype("datetime64[ns]").astype(np.int64)
            await conn.fetchval("SELECT ci_ensure_partitions($1, to_timestamp($2::float8 / 1e9), to_timestamp($2::float8 / 1e9))",
                                spec.name, float(start), timeout=self.call_timeout_s)
            known.add(month)

