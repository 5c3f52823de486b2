"""SqliteIdempotencyStore's group commit: one transaction per event-loop turn on the loop's own
connection, the worker thread for locks held elsewhere, and checkpoints off the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.starter.idempotency import Claim, SqliteIdempotencyStore
from rmqkit.starter.idempotency import sqlite as sqlite_module
from rmqkit.starter.idempotency.sqlite import TABLE
from rmqkit.testing.polling import check_for

from .contract import LEASE, RETENTION, FakeClock


def _rows(db: Path) -> list[tuple[str, str, str]]:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"SELECT scope, key, state FROM {TABLE} ORDER BY key").fetchall()
    finally:
        conn.close()


def _state(db: Path, key: str) -> str | None:
    conn = sqlite3.connect(db)
    try:
        row = conn.execute(f"SELECT state FROM {TABLE} WHERE key = ?", (key,)).fetchone()
    finally:
        conn.close()
    return None if row is None else str(row[0])


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteIdempotencyStore]:
    s = SqliteIdempotencyStore(tmp_path / "idem.db", clock=FakeClock())
    # The first call opens the file on the worker thread; the later ones run on the loop.
    await s.complete("warm-up", "w", retention_s=RETENTION)
    yield s
    await s.close()


async def test_an_acquire_answers_without_suspending_its_caller(
    store: SqliteIdempotencyStore,
) -> None:
    coro = store.acquire("g", "k", lease_s=LEASE)
    with pytest.raises(StopIteration) as finished:
        coro.send(None)  # a coroutine that suspended would yield its future here instead
    assert finished.value.value is Claim.ACQUIRED


async def test_a_lease_completed_in_its_own_turn_is_written_once_as_done(
    store: SqliteIdempotencyStore,
) -> None:
    # No await suspends between these calls: they all belong to one turn.
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.BUSY
    store.complete_soon("g", "k", retention_s=RETENTION)
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.DONE

    await check_for(lambda: ("g", "k", "done") in _rows(store.path))
    assert [r for r in _rows(store.path) if r[0] == "g"] == [("g", "k", "done")]


async def test_leases_of_a_turn_are_committed_at_its_end(store: SqliteIdempotencyStore) -> None:
    assert await store.acquire("g", "k1", lease_s=LEASE) is Claim.ACQUIRED
    assert await store.acquire("g", "k2", lease_s=LEASE) is Claim.ACQUIRED
    await check_for(lambda: len(_rows(store.path)) == 3)
    assert _rows(store.path)[:2] == [("g", "k1", "processing"), ("g", "k2", "processing")]


async def test_calls_wait_on_the_worker_while_another_process_holds_the_lock(
    store: SqliteIdempotencyStore,
) -> None:
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock, as another process would hold it
        acquire = asyncio.create_task(store.acquire("g", "k", lease_s=LEASE))
        # The loop keeps running (this test does) while the claim waits for the lock.
        done, _ = await asyncio.wait([acquire], timeout=0.2)
        assert not done
        other.execute("COMMIT")
        assert await acquire is Claim.ACQUIRED
        assert await store.acquire("g", "k", lease_s=LEASE) is Claim.BUSY
    finally:
        other.close()


async def test_completions_blocked_by_another_writer_are_written_once_it_lets_go(
    store: SqliteIdempotencyStore,
) -> None:
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
    await check_for(lambda: ("g", "k", "processing") in _rows(store.path))
    other = sqlite3.connect(store.path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        store.complete_soon("g", "k", retention_s=RETENTION)
        # While the lock is held elsewhere the next calls queue behind the completion.
        waiting = asyncio.create_task(store.acquire("g", "k", lease_s=LEASE))
        done, _ = await asyncio.wait([waiting], timeout=0.2)
        assert not done
        other.execute("COMMIT")
        assert await waiting is Claim.DONE
    finally:
        other.close()
    assert ("g", "k", "done") in _rows(store.path)


async def test_checkpoints_run_on_the_worker_and_keep_the_wal_small(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "CHECKPOINT_FRAMES", 20)
    threads: list[str] = []
    checkpoint = SqliteIdempotencyStore._checkpoint_on_worker

    def recording(self: SqliteIdempotencyStore) -> int:
        threads.append(threading.current_thread().name)
        return checkpoint(self)

    monkeypatch.setattr(SqliteIdempotencyStore, "_checkpoint_on_worker", recording)
    store = SqliteIdempotencyStore(tmp_path / "idem.db", clock=FakeClock())
    try:
        for turn in range(60):
            keys = [f"k{turn:03}-{i:02}" for i in range(50)]
            for key in keys:
                assert await store.acquire("g", key, lease_s=LEASE) is Claim.ACQUIRED
                store.complete_soon("g", key, retention_s=RETENTION)
            last = keys[-1]
            await check_for(lambda: _state(store.path, last) == "done")  # noqa: B023 -- awaited at once
        # 3,000 keys write about 460 WAL pages; checkpoints let SQLite start the WAL over.
        wal_pages = (tmp_path / "idem.db-wal").stat().st_size // (4096 + 24)
    finally:
        await store.close()

    assert wal_pages < 100
    assert len(threads) >= 3
    assert {t.rsplit("_", 1)[0] for t in threads} == {"rmqkit-idempotency-sqlite"}
    assert len(_rows(tmp_path / "idem.db")) == 3000
