"""The embedded idempotency store: one SQLite file in WAL mode, shareable by several processes.

It plays the part of RocketMQ users' dedup table: consumers of one group on one host (or one
shared volume) share the file, and `BEGIN IMMEDIATE` makes acquire atomic across processes.
Writes are group-committed, as the CommitLog's GroupCommitService batches its flushes: one
transaction per event-loop turn.
"""

from __future__ import annotations

import asyncio
import itertools
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
CHECKPOINT_FRAMES = 1000  # WAL pages between two checkpoints (SQLite's own auto-checkpoint figure)

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
# A claim on the worker: insert, or take over a record that has run out; the row count says
# whether it did (an upsert whose WHERE is false changes nothing). UPSERT needs SQLite 3.24.
_CLAIM = (
    f"INSERT INTO {TABLE} (scope, key, state, token, expires_at)"
    f" VALUES (?, ?, '{PROCESSING}', ?, ?)"
    " ON CONFLICT (scope, key) DO UPDATE SET"
    " state = excluded.state, token = excluded.token, expires_at = excluded.expires_at"
    f" WHERE {TABLE}.expires_at <= ?"
)
# Operations other than the statements above: acquire (a claim, then maybe a look) and complete
# (an upsert whose row count nobody needs).
_ACQUIRE = "acquire"
_COMPLETE = "complete"
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
log = logging.getLogger("rmqkit.idempotency")

Result = Claim | int | None
Op = tuple[str, tuple[object, ...]]
Row = tuple[object, ...]  # the parameters of _UPSERT
Waiter = asyncio.Future[Result] | None  # None: nobody waits (complete_soon)
_Waiting = tuple[str, tuple[object, ...], Waiter]


def _is_busy(exc: sqlite3.Error) -> bool:
    return getattr(exc, "sqlite_errorcode", 0) & 0xFF in _BUSY_CODES


class SqliteIdempotencyStore:
    """Idempotency records in a SQLite file, shared with other processes through its locks.

    Several processes may open the same file: every write runs in a `BEGIN IMMEDIATE`
    transaction, which takes SQLite's write lock before reading, so two racing processes never
    both see a key as free. A release only drops a lease that this store instance took (a token
    is kept per lease), so a slow consumer whose lease ran out cannot free the lease of the one
    that took over.

    One transaction per event-loop turn (group commit): the first call of a turn opens it on the
    loop's own connection and the turn ends with its COMMIT. An acquire looks its key up at once
    and answers without suspending its caller (a suspension, its future and the consumer's
    timeout cost more than the lookup); its lease is written with the turn's completions just
    before the COMMIT, and a key leased and completed in one turn is written once, as done.
    Until that COMMIT no other process can take the key, since we hold the write lock (so a turn
    that runs long keeps the other processes' writers waiting). A crash before it loses the
    turn's leases and completions; their messages, whose offsets were not committed either, are
    delivered again and find their keys free.

    The loop never waits for a lock: its connection gives up at once when another process holds
    it, and the calls then wait for it on a worker thread, which also opens the file and runs the
    WAL checkpoints (their fsyncs), so that neither stalls the loop.

    Args:
        path: the database file; its directory is created if missing.
        clock: epoch seconds; defaults to `time.time`. Processes sharing a file compare their
            clocks' readings, so their clocks should agree to well within a lease.
    """

    def __init__(self, path: str | Path, *, clock: Clock = DEFAULT_CLOCK) -> None:
        self.path = Path(path)
        self._clock = clock
        # One thread, so its sqlite3 connection is only ever used by the thread that opened it.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="rmqkit-idempotency-sqlite")
        self._conn: sqlite3.Connection | None = None  # the worker's
        self._inline: sqlite3.Connection | None = None  # the event loop's; never waits for locks
        self._in_txn = False  # the loop's connection holds this turn's transaction
        self._commit_handle: asyncio.Handle | None = None  # this turn's COMMIT, to come
        # This turn's leases and completions, written just before its COMMIT.
        self._turn_leases: dict[tuple[str, str], Row] = {}
        self._turn_done: dict[tuple[str, str], Row] = {}
        self._sweep_at: float | None = None  # a sweep of expired records due at that COMMIT
        self._at_commit: list[tuple[asyncio.Future[Result], Result]] = []  # callers waiting
        self._leases: dict[tuple[str, str], str] = {}  # (scope, key) -> token of our lease
        # A lease token: random per instance, then a counter (os.urandom per acquire cost more
        # than the rest of the acquire).
        self._token_prefix = secrets.token_hex(8) + "-"
        self._token_seq = itertools.count()
        self._completes = 0
        self._closed = False
        # Calls that could not run on the loop, in order, for the worker: until the first batch
        # has opened the file, while another process holds the lock, and during a checkpoint.
        self._pending: list[_Waiting] = []
        self._drain_handle: asyncio.Handle | None = None
        self._on_worker: asyncio.Task[None] | None = None
        self._writes = 0  # rows written on the loop since the last checkpoint
        self._checkpoint_every = 4 * CHECKPOINT_FRAMES  # rows; adjusted to the frames seen

    async def acquire(self, scope: str, key: str, *, lease_s: float) -> Claim:
        """Lease `key` for `lease_s` seconds unless it is done or leased by someone else.

        Returns:
            `Claim.ACQUIRED` (run the handler), `Claim.DONE` (skip it) or `Claim.BUSY` (retry).

        Raises:
            ConfigurationError: on an empty scope or key, or a lease that is not positive.
            StoreClosedError: after `close()`.
            sqlite3.Error: the database failed (not for a lock held elsewhere: that waits).
        """
        if not scope or not key or not lease_s > 0 or self._closed:
            check_key(scope, key)
            check_duration("lease_s", lease_s)
            self._check_open()
        token = f"{self._token_prefix}{next(self._token_seq):x}"
        conn = self._inline if self._in_txn else self._transaction()
        if conn is not None:
            return self._claim_in_turn(conn, scope, key, token, lease_s)
        claim = await self._enqueue(_ACQUIRE, (scope, key, token, lease_s))
        assert isinstance(claim, Claim)
        if claim is Claim.ACQUIRED:
            self._leases[(scope, key)] = token
        return claim

    async def complete(self, scope: str, key: str, *, retention_s: float) -> None:
        """Mark `key` done for `retention_s` seconds: redeliveries within that time are skipped.
        Returns once the record is committed.

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
        await self._write(_COMPLETE, (scope, key, DONE, "", now + retention_s))
        if self._completes % SWEEP_EVERY == 0:
            await self._write(_PURGE, (now,))

    def complete_soon(self, scope: str, key: str, *, retention_s: float) -> None:
        """`complete` without waiting for the COMMIT at the end of this event-loop turn;
        `close()` waits for it. A handler's message is acknowledged meanwhile; its offset
        reaches the broker seconds later, after this record is committed, so a crash in between
        redelivers a message whose key is still leased, as with `complete` itself. A record that
        cannot be written is logged.

        Raises:
            ConfigurationError: on an empty scope or key, or a retention that is not positive.
            StoreClosedError: after `close()`.
        """
        if not scope or not key or not retention_s > 0 or self._closed:
            check_key(scope, key)
            check_duration("retention_s", retention_s)
            self._check_open()
        record = (scope, key)
        self._leases.pop(record, None)
        now = self._clock()
        self._completes += 1
        sweep = self._completes % SWEEP_EVERY == 0
        row = (scope, key, DONE, "", now + retention_s)
        if not self._in_txn and (
            self._inline is None or self._pending or self._on_worker is not None
        ):
            self._append(_COMPLETE, row, None)  # behind the calls waiting for the worker
            if sweep:
                self._append(_PURGE, (now,), None)
            return
        self._turn_leases.pop(record, None)  # leased in this turn: written once, as done
        self._turn_done[record] = row
        if sweep:
            self._sweep_at = now
        if self._commit_handle is None:
            self._commit_handle = asyncio.get_running_loop().call_soon(self._commit)

    async def release(self, scope: str, key: str) -> None:
        """Drop this instance's lease on `key` so that a redelivery runs the handler again.

        Does nothing when the key is done, or leased by another instance (ours ran out and it
        took over), or was never acquired here.

        Raises:
            StoreClosedError: after `close()`.
        """
        self._check_open()
        token = self._leases.pop((scope, key), None)
        if token is not None:
            await self._write(_RELEASE, (scope, key, PROCESSING, token))

    async def purge_expired(self) -> int:
        """Delete every record whose lease or retention has run out.

        Returns:
            How many records were deleted.

        Raises:
            StoreClosedError: after `close()`.
        """
        self._check_open()
        count = await self._write(_PURGE, (self._clock(),))
        assert isinstance(count, int)
        return count

    async def close(self) -> None:
        """Commit what was written, close the connections and stop the worker thread. Closing
        twice is fine."""
        if self._closed:
            return
        self._closed = True
        self._leases.clear()
        self._commit()
        while self._on_worker is not None or self._pending:
            if self._on_worker is not None:
                await asyncio.shield(self._on_worker)
            else:
                self._drain()
        if self._inline is not None:
            self._inline.close()  # first: the last connection to close checkpoints, on the worker
            self._inline = None
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._worker, self._close_on_worker)
        self._worker.shutdown(wait=False)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"idempotency store {self.path} is closed")

    # --- this turn's transaction, on the event loop ---------------------------------------------
    # Invariant: while it is open, no call waits for the worker and the worker runs nothing.

    def _transaction(self) -> sqlite3.Connection | None:
        """The loop's connection inside this turn's transaction, or None when the call must go
        to the worker (the file is not open yet, calls wait there, or the lock is busy)."""
        if self._in_txn:
            return self._inline
        if self._inline is None or self._pending or self._on_worker is not None:
            return None
        try:
            self._inline.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            if _is_busy(exc):
                return None  # another process writes: wait for it on the worker
            raise
        self._in_txn = True
        if self._commit_handle is None:
            # call_soon runs after everything already ready in this turn: the other handlers'
            # calls join the same transaction.
            self._commit_handle = asyncio.get_running_loop().call_soon(self._commit)
        return self._inline

    def _claim_in_turn(
        self, conn: sqlite3.Connection, scope: str, key: str, token: str, lease_s: float
    ) -> Claim:
        record = (scope, key)
        # This turn's leases and completions are not in the table yet: look at them first.
        if record in self._turn_done:
            return Claim.DONE
        if record in self._turn_leases:
            return Claim.BUSY
        now = self._clock()
        try:
            row = conn.execute(_SELECT, record).fetchone()
        except sqlite3.Error:
            self._in_txn = conn.in_transaction  # SQLite rolls back on some errors
            raise
        if row is not None and row[1] > now:
            return Claim.DONE if row[0] == DONE else Claim.BUSY
        self._turn_leases[record] = (scope, key, PROCESSING, token, now + lease_s)
        self._leases[record] = token
        return Claim.ACQUIRED

    async def _write(self, op: str, args: tuple[object, ...]) -> Result:
        """A write whose caller waits for its COMMIT."""
        conn = self._transaction()
        if conn is None:
            return await self._enqueue(op, args)
        try:
            self._write_turn(conn)  # what was asked for before it, first
            result = _execute(conn, op, args)
        except sqlite3.Error:
            self._in_txn = conn.in_transaction  # SQLite rolls back on some errors
            raise
        self._writes += 1
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._at_commit.append((fut, result))
        return await fut

    def _write_turn(self, conn: sqlite3.Connection) -> None:
        for rows in (self._turn_leases, self._turn_done):
            if rows:
                conn.executemany(_UPSERT, rows.values())
                self._writes += len(rows)
                rows.clear()

    def _commit(self) -> None:
        """The end of the turn: its leases and completions, then COMMIT."""
        if self._commit_handle is not None:
            self._commit_handle.cancel()  # a no-op when it is the one running
            self._commit_handle = None
        waiting, self._at_commit = self._at_commit, []
        sweep_at, self._sweep_at = self._sweep_at, None
        done = len(self._turn_done)
        try:
            if not self._in_txn:
                if not done and sweep_at is None:
                    return
                if self._transaction() is None:
                    self._completions_to_worker(sweep_at)
                    return
            conn = self._inline
            assert conn is not None
            self._write_turn(conn)
            if sweep_at is not None:
                conn.execute(_PURGE, (sweep_at,))
            self._in_txn = False
            conn.execute("COMMIT")
        except BaseException as exc:
            self._in_txn = False
            self._turn_leases.clear()
            self._turn_done.clear()
            if self._inline is not None and self._inline.in_transaction:
                self._inline.execute("ROLLBACK")
            _fail([(_COMPLETE, (), fut) for fut, _ in waiting], exc, done)
            if not isinstance(exc, Exception):
                raise
            return
        for fut, result in waiting:
            if not fut.done():
                fut.set_result(result)
        if self._writes >= self._checkpoint_every and self._on_worker is None:
            written, self._writes = self._writes, 0
            self._on_worker = asyncio.get_running_loop().create_task(self._checkpoint(written))

    def _completions_to_worker(self, sweep_at: float | None) -> None:
        """The lock is busy: the worker writes this turn's completions, before anything that
        was asked for after them."""
        moved: list[_Waiting] = [(_COMPLETE, row, None) for row in self._turn_done.values()]
        self._turn_done.clear()
        if sweep_at is not None:
            moved.append((_PURGE, (sweep_at,), None))
        self._pending[:0] = moved
        self._drain()

    # --- calls that wait for the worker ---------------------------------------------------------

    def _enqueue(self, op: str, args: tuple[object, ...]) -> asyncio.Future[Result]:
        fut: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._append(op, args, fut)
        return fut

    def _append(self, op: str, args: tuple[object, ...], fut: Waiter) -> None:
        self._pending.append((op, args, fut))
        if self._drain_handle is None and self._on_worker is None:
            self._drain_handle = asyncio.get_running_loop().call_soon(self._drain)

    def _drain(self) -> None:
        if self._drain_handle is not None:
            self._drain_handle.cancel()  # a no-op when it is the one running
            self._drain_handle = None
        if self._pending and self._on_worker is None:
            batch, self._pending = self._pending, []
            self._on_worker = asyncio.get_running_loop().create_task(self._flush_on_worker(batch))

    async def _flush_on_worker(self, batch: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        ops = [(op, args) for op, args, _ in batch]
        try:
            now = self._clock()
            results = await loop.run_in_executor(self._worker, self._batch_on_worker, ops, now)
        except BaseException as exc:
            _fail(batch, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            _resolve(batch, results)
            if self._inline is None and not self._closed:
                self._inline = self._open_inline()
        finally:
            self._worker_done()

    def _worker_done(self) -> None:
        self._on_worker = None
        if self._pending and not self._closed:
            self._drain_handle = asyncio.get_running_loop().call_soon(self._drain)

    def _open_inline(self) -> sqlite3.Connection | None:
        """The loop's connection, once the worker has created the file and its schema."""
        try:
            # timeout=0: never wait for a lock here (busy calls go to the worker instead).
            conn = sqlite3.connect(self.path, timeout=0, isolation_level=None)
            conn.execute("PRAGMA synchronous=NORMAL")
            # The worker checkpoints; here a commit that crossed the threshold would fsync.
            conn.execute("PRAGMA wal_autocheckpoint=0")
        except sqlite3.Error as exc:
            log.warning("%s: every call waits for the worker thread (%r)", self.path, exc)
            return None
        return conn

    async def _checkpoint(self, written: int) -> None:
        """Copy the WAL into the database file on the worker (two fsyncs), with the loop's
        writes held back meanwhile: a checkpoint that runs beside a writer never backfills the
        last frames, and SQLite starts the WAL over only once every frame is backfilled, so
        without the pause it would grow for as long as messages flow (slowing every lookup)."""
        loop = asyncio.get_running_loop()
        try:
            frames = await loop.run_in_executor(self._worker, self._checkpoint_on_worker)
        except Exception as exc:
            log.warning("%s: WAL checkpoint failed: %r", self.path, exc)
        else:
            # Aim at CHECKPOINT_FRAMES pages a checkpoint: how many rows fill that depends on
            # how scattered the keys are (several a page when in order, two pages each when
            # random).
            every = written * CHECKPOINT_FRAMES // max(frames, 1)
            self._checkpoint_every = min(max(every, CHECKPOINT_FRAMES // 2), 50 * CHECKPOINT_FRAMES)
        finally:
            self._worker_done()

    # --- the worker thread ----------------------------------------------------------------------

    def _connection_on_worker(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit BEGINs; a batch writes its own BEGIN IMMEDIATE.
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

    def _batch_on_worker(self, ops: list[Op], now: float) -> list[Result]:
        return _run_batch(self._connection_on_worker(), ops, now)

    def _checkpoint_on_worker(self) -> int:
        """A PASSIVE checkpoint (it waits for nobody); returns the WAL's size in pages."""
        row = self._connection_on_worker().execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]) if row is not None else 0

    def _close_on_worker(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# --- the calls that waited for the worker: one transaction, on the worker thread ----------------


def _run_batch(conn: sqlite3.Connection, ops: list[Op], now: float) -> list[Result]:
    """One transaction for the calls, in the order they were made, with the write lock taken
    first (so no other process reads stale)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = [
            _claim(conn, *args, now=now) if op is _ACQUIRE else _execute(conn, op, args)
            for op, args in ops
        ]  # fmt: skip
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def _claim(conn: sqlite3.Connection, *args: object, now: float) -> Claim:
    """One claim of (scope, key, token, lease_s), inside the caller's transaction."""
    scope, key, token, lease_s = args
    assert isinstance(lease_s, float | int)
    if conn.execute(_CLAIM, (scope, key, token, now + lease_s, now)).rowcount:
        return Claim.ACQUIRED
    # The record is live (else the claim would have taken it over): done, or someone's lease.
    row = conn.execute(_SELECT, (scope, key)).fetchone()
    return Claim.DONE if row is not None and row[0] == DONE else Claim.BUSY


def _execute(conn: sqlite3.Connection, op: str, args: tuple[object, ...]) -> Result:
    """One write other than a claim, inside the caller's transaction."""
    if op is _COMPLETE:
        conn.execute(_UPSERT, args)
        return None
    return conn.execute(op, args).rowcount


def _resolve(batch: list[_Waiting], results: list[Result]) -> None:
    for (*_, fut), result in zip(batch, results, strict=True):
        if fut is not None and not fut.done():
            fut.set_result(result)


def _fail(batch: list[_Waiting], exc: BaseException, unwaited: int = 0) -> None:
    for *_, fut in batch:
        if fut is None:
            unwaited += 1
        elif not fut.done():
            fut.set_exception(exc)
    if unwaited:
        log.error("%d idempotency record(s) not written: %r", unwaited, exc)
