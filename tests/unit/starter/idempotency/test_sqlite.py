"""SqliteIdempotencyStore beyond the shared contract: the file, WAL, and two racing processes."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from rmqkit.starter.idempotency import Claim, SqliteIdempotencyStore
from rmqkit.starter.idempotency import sqlite as sqlite_module
from rmqkit.starter.idempotency.sqlite import TABLE
from rmqkit.testing.polling import check_for

from .contract import LEASE, RETENTION, FakeClock

RACE_KEYS = 400
RACE_WORKER = Path(__file__).with_name("race_worker.py")


async def test_the_file_is_in_wal_mode_and_survives_a_reopen(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "idem.db"
    store = SqliteIdempotencyStore(db, clock=FakeClock())
    await store.acquire("g", "k", lease_s=LEASE)
    await store.complete("g", "k", retention_s=RETENTION)
    await store.close()

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = conn.execute(f"SELECT scope, key, state FROM {TABLE}").fetchall()
    conn.close()
    assert rows == [("g", "k", "done")]

    reopened = SqliteIdempotencyStore(db, clock=FakeClock())
    assert await reopened.acquire("g", "k", lease_s=LEASE) is Claim.DONE
    await reopened.close()


async def test_a_lease_outlives_the_process_that_took_it(tmp_path: Path) -> None:
    clock = FakeClock()
    crashed = SqliteIdempotencyStore(tmp_path / "idem.db", clock=clock)
    assert await crashed.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
    await crashed.close()  # as a crash would: no release

    restarted = SqliteIdempotencyStore(tmp_path / "idem.db", clock=clock)
    assert await restarted.acquire("g", "k", lease_s=LEASE) is Claim.BUSY
    clock.now += LEASE
    assert await restarted.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
    await restarted.close()


async def test_every_call_runs_on_one_worker_thread(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idem.db", clock=FakeClock())
    await asyncio.gather(*(store.acquire("g", f"k{i}", lease_s=LEASE) for i in range(20)))
    await store.complete("g", "k0", retention_s=RETENTION)
    names = {t.name for t in threading.enumerate() if t.name.startswith("rmqkit-idempotency")}
    assert len(names) == 1
    await store.close()


async def test_concurrent_acquires_in_one_process_get_one_winner(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idem.db", clock=FakeClock())
    claims = await asyncio.gather(*(store.acquire("g", "k", lease_s=LEASE) for _ in range(10)))
    assert claims.count(Claim.ACQUIRED) == 1
    assert claims.count(Claim.BUSY) == 9
    await store.close()


async def _start_racer(db: Path, go: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(RACE_WORKER), str(db), str(go), str(RACE_KEYS),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    if line != b"ready\n":
        _, err = await proc.communicate()
        pytest.fail(f"racer did not start: {line!r} {err.decode(errors='replace')}")
    return proc


@pytest.mark.integration
async def test_two_processes_racing_for_the_same_keys_acquire_each_once(tmp_path: Path) -> None:
    db, go = tmp_path / "shared.db", tmp_path / "go"
    racers = [await _start_racer(db, go) for _ in range(2)]
    go.touch()
    results = []
    for proc in racers:
        out, err = await asyncio.wait_for(proc.communicate(), 100)
        assert proc.returncode == 0, err.decode(errors="replace")
        results.append(json.loads(out.decode().splitlines()[-1]))

    first, second = (set(r["acquired"]) for r in results)
    assert first.isdisjoint(second), f"acquired twice: {sorted(first & second)[:10]}"
    assert first | second == set(range(RACE_KEYS))
    # Every key one racer lost it saw as done (completed) or busy (still leased).
    for r in results:
        assert len(r["acquired"]) + r["busy"] + r["done"] == RACE_KEYS

    with sqlite3.connect(db) as conn:
        states = dict(conn.execute(f"SELECT state, count(*) FROM {TABLE} GROUP BY state"))
    conn.close()
    assert states == {"done": RACE_KEYS // 2, "processing": RACE_KEYS // 2 + 2}  # + 2 warm-ups


async def test_completes_sweep_expired_records_now_and_then(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_module, "SWEEP_EVERY", 2)
    clock = FakeClock()
    store = SqliteIdempotencyStore(tmp_path / "idem.db", clock=clock)
    await store.complete("g", "old", retention_s=LEASE)  # the first complete: no sweep
    await store.acquire("g", "crashed", lease_s=LEASE)
    clock.now += LEASE + 1
    with sqlite3.connect(tmp_path / "idem.db") as conn:
        # The lease is committed at the end of the event-loop turn.
        await check_for(lambda: conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone() == (2,))
        await store.complete("g", "new", retention_s=RETENTION)  # the second: sweeps
        assert conn.execute(f"SELECT key FROM {TABLE}").fetchall() == [("new",)]
    conn.close()
    assert await store.purge_expired() == 0
    await store.close()


async def test_complete_soon_is_on_disk_after_close(tmp_path: Path) -> None:
    from rmqkit.starter.idempotency.base import Claim
    from rmqkit.starter.idempotency.sqlite import SqliteIdempotencyStore

    store = SqliteIdempotencyStore(tmp_path / "soon.db")
    assert await store.acquire("g", "k", lease_s=60) is Claim.ACQUIRED
    store.complete_soon("g", "k", retention_s=600)  # returns at once
    await store.close()  # waits for the group commit holding it
    again = SqliteIdempotencyStore(tmp_path / "soon.db")
    try:
        assert await again.acquire("g", "k", lease_s=60) is Claim.DONE
    finally:
        await again.close()
