"""The embedded idempotency store: one SQLite file in WAL mode, shareable by several processes.

It plays the part of RocketMQ users' dedup table: consumers of one group on one host (or one
shared volume) share the file, and `BEGIN IMMEDIATE` makes acquire atomic across processes.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from rmqkit.errors import StoreClosedError
from rmqkit.starter.idempotency.base import (
    DEFAULT_CLOCK,
    DONE,
    PROCESSING,
    Claim,
    Clock,
    check_duration,
    check_key,
)

TABLE = "rmqkit_idempotency"
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another process's write lock before failing
SWEEP_EVERY = 1000  # completes between two sweeps of expired records, so the file stays bounded

_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} ("
    " scope TEXT NOT NULL,"
    " key TEXT NOT NULL,"
    " state TEXT NOT NULL,"  # 'processing' or 'done'
    " token TEXT NOT NULL,"  # who holds a lease; '' for done records
    " expires_at REAL NOT NULL,"  # epoch seconds: lease end or retention end
    " PRIMARY KEY (scope, key)) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {TABLE}_expires ON {TABLE} (expires_at)",
)
_SELECT = f"SELECT state, expires_at FROM {TABLE} WHERE scope = ? AND key = ?"
_UPSERT = (
    f"INSERT INTO {TABLE} (scope, key, state, token, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " state = excluded.state, token = excluded.token, expires_at = excluded.expires_at"
)
_RELEASE = f"DELETE FROM {TABLE} WHERE scope = ? AND key = ? AND state = ? AND token = ?"
_PURGE = f"DELETE FROM {TABLE} WHERE expires_at <= ?"
# One statement for the usual case (a new key, or an expired record): insert or take over, and
# say so with RETURNING (SQLite 3.35+); only a live record needs the second look, to tell DONE
# from BUSY.
_CLAIM = (
    f"INSERT INTO {TABLE} (scope, key, state, token, expires_at) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " state = excluded.state, token = excluded.token, expires_at = excluded.expires_at"
    f" WHERE {TABLE}.expires_at <= ? RETURNING 1"
)
_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
_ACQUIRE = "acquire"  # an operation of its own (a read, then maybe a write), not one statement
log = logging.getLogger("rmqkit.idempotency")


def _log_failed(fut: asyncio.Future[Claim | int]) -> None:
    if not fut.cancelled() and fut.exception() is not None:
        log.error("idempotency record not written: %r", fut.exception())


class SqliteIdempotencyStore:
    """Idempotency records in a SQLite file, used from one worker thread that owns the connection.

    Several processes may open the same file: acquire runs in a `BEGIN IMMEDIATE` transaction,
    which takes SQLite's write lock before reading, so two racing processes never both see a key
    as free. A release only drops a lease that this store instance took (a token is kept per
    lease), so a slow consumer whose lease ran out cannot free the lease of the one that took over.

    Args:
        path: the database file; its directory is created if missing.
        clock: epoch seconds; defaults to `time.time`. Processes sharing a file compare their
            clocks' readings, so their clocks should agree to well within a lease.
    """

    def __init__(self, path: str | Path, *, clock: Clock = DEFAULT_CLOCK) -> None:
        self.path = Path(path)
        self._clock = clock
        # One thread, so the sqlite3 connection is only ever used by the thread that opened it.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rmqkit-idempotency-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._leases: dict[tuple[str, str], str] = {}  # (scope, key) -> token of our lease
        self._completes = 0
        self._closed = False
        self._pending: list[tuple[str, tuple[object, ...], asyncio.Future[Claim | int]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def acquire(self, scope: str, key: str, *, lease_s: float) -> Claim:
        """Lease `key` for `lease_s` seconds unless it is done or leased by someone else.

        Returns:
            `Claim.ACQUIRED` (run the handler), `Claim.DONE` (skip it) or `Claim.BUSY` (retry).

        Raises:
            ConfigurationError: on an empty scope or key, or a lease that is not positive.
            StoreClosedError: after `close()`.
        """
        check_key(scope, key)
        check_duration("lease_s", lease_s)
        token = secrets.token_hex(8)
        claim = await self._submit(_ACQUIRE, scope, key, token, self._clock(), lease_s)
        assert isinstance(claim, Claim)
        if claim is Claim.ACQUIRED:
            self._leases[(scope, key)] = token
        return claim

    async def complete(self, scope: str, key: str, *, retention_s: float) -> None:
        """Mark `key` done for `retention_s` seconds: redeliveries within that time are skipped.

        Raises:
            ConfigurationError: on an empty scope or key, or a retention that is not positive.
            StoreClosedError: after `close()`.
        """
        check_key(scope, key)
        check_duration("retention_s", retention_s)
        self._leases.pop((scope, key), None)
        now = self._clock()
        self._completes += 1
        await self._submit(_UPSERT, scope, key, DONE, "", now + retention_s)
        if self._completes % SWEEP_EVERY == 0:
            await self._submit(_PURGE, now)

    def complete_soon(self, scope: str, key: str, *, retention_s: float) -> None:
        """`complete` without waiting: the record joins the next group commit, which starts at
        once, and `close()` waits for it. A handler's message is acknowledged meanwhile; its
        offset reaches the broker seconds later, after this record is on disk, so a crash in
        between redelivers a message whose key is still leased, as with `complete` itself.

        Raises:
            ConfigurationError: on an empty scope or key, or a retention that is not positive.
            StoreClosedError: after `close()`.
        """
        check_key(scope, key)
        check_duration("retention_s", retention_s)
        self._check_open()
        self._leases.pop((scope, key), None)
        now = self._clock()
        self._completes += 1
        self._enqueue(_UPSERT, (scope, key, DONE, "", now + retention_s)).add_done_callback(
            _log_failed
        )
        if self._completes % SWEEP_EVERY == 0:
            self._enqueue(_PURGE, (now,)).add_done_callback(_log_failed)

    async def release(self, scope: str, key: str) -> None:
        """Drop this instance's lease on `key` so that a redelivery runs the handler again.

        Does nothing when the key is done, or leased by another instance (ours ran out and it
        took over), or was never acquired here.

        Raises:
            StoreClosedError: after `close()`.
        """
        token = self._leases.pop((scope, key), None)
        if token is None:
            self._check_open()
            return
        await self._submit(_RELEASE, scope, key, PROCESSING, token)

    async def purge_expired(self) -> int:
        """Delete every record whose lease or retention has run out.

        Returns:
            How many records were deleted.

        Raises:
            StoreClosedError: after `close()`.
        """
        count = await self._submit(_PURGE, self._clock())
        assert isinstance(count, int)
        return count

    async def close(self) -> None:
        """Close the connection and stop the worker thread. Closing twice is fine."""
        if self._closed:
            return
        self._closed = True
        self._leases.clear()
        if self._flusher is not None:
            await asyncio.shield(self._flusher)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._close_on_worker)
        self._worker.shutdown(wait=False)

    # --- group commit ---------------------------------------------------------------------------
    # Operations wait in a list; one flush at a time runs everything waiting in one transaction
    # on the worker thread (as the CommitLog's group commit batches fsyncs), so 20 handlers at
    # once cost one transaction and one thread hop, not 40.

    async def _submit(self, op: str, *args: object) -> Claim | int:
        self._check_open()
        return await self._enqueue(op, args)

    def _enqueue(self, op: str, args: tuple[object, ...]) -> asyncio.Future[Claim | int]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Claim | int] = loop.create_future()
        self._pending.append((op, args, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                ops = [(op, args) for op, args, _ in batch]
                try:
                    results = await loop.run_in_executor(self._worker, self._batch_on_worker, ops)
                except BaseException as exc:
                    for *_, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for (*_, fut), result in zip(batch, results, strict=True):
                    if not fut.done():
                        fut.set_result(result)
        finally:
            self._flusher = None

    # --- the worker thread ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"idempotency store {self.path} is closed")

    def _connection_on_worker(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit BEGINs; acquire writes its own BEGIN IMMEDIATE.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                # NORMAL in WAL mode survives a process crash; only a power loss can drop the
                # last commits, which at worst lets a redelivery run its handler once more.
                conn.execute("PRAGMA synchronous=NORMAL")
                for statement in _SCHEMA:
                    conn.execute(statement)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _batch_on_worker(self, ops: list[tuple[str, tuple[object, ...]]]) -> list[Claim | int]:
        conn = self._connection_on_worker()
        conn.execute("BEGIN IMMEDIATE")  # the write lock first, so no other process reads stale
        try:
            results = [
                self._acquire_locked(conn, *args) if op is _ACQUIRE
                else conn.execute(op, args).rowcount
                for op, args in ops
            ]  # fmt: skip
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return results

    @staticmethod
    def _acquire_locked(conn: sqlite3.Connection, *args: object) -> Claim:
        scope, key, token, now, lease_s = args
        assert isinstance(now, float | int) and isinstance(lease_s, float | int)
        if _RETURNING:
            claimed = conn.execute(_CLAIM, (scope, key, PROCESSING, token, now + lease_s, now))
            if claimed.fetchone() is not None:
                return Claim.ACQUIRED
        row = conn.execute(_SELECT, (scope, key)).fetchone()
        if row is not None and row[1] > now:
            return Claim.DONE if row[0] == DONE else Claim.BUSY
        conn.execute(_UPSERT, (scope, key, PROCESSING, token, now + lease_s))
        return Claim.ACQUIRED

    def _close_on_worker(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
