"""MemoryIdempotencyStore beyond the shared contract: what it keeps, and when it forgets."""

from __future__ import annotations

from rmqkit.starter.idempotency import Claim, MemoryIdempotencyStore

from .contract import LEASE, RETENTION, FakeClock


async def test_an_expired_record_is_replaced_in_place() -> None:
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock=clock)
    await store.acquire("g", "k", lease_s=LEASE)
    await store.complete("g", "k", retention_s=RETENTION)
    clock.now += RETENTION + 1
    assert len(store) == 1  # expired but not yet purged
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
    assert len(store) == 1  # the lazy purge reused the record's slot
    assert await store.purge_expired() == 0


async def test_release_drops_the_record_and_purge_empties_the_store() -> None:
    clock = FakeClock()
    store = MemoryIdempotencyStore(clock=clock)
    await store.acquire("g", "a", lease_s=LEASE)
    await store.acquire("g", "b", lease_s=LEASE)
    await store.release("g", "a")
    assert len(store) == 1
    clock.now += LEASE
    assert await store.purge_expired() == 1  # a lease ending exactly now has run out
    assert len(store) == 0


async def test_complete_without_acquire_still_marks_done() -> None:
    # A handler that ran under another store instance (or before a restart) may still complete.
    store = MemoryIdempotencyStore(clock=FakeClock())
    await store.complete("g", "k", retention_s=RETENTION)
    assert await store.acquire("g", "k", lease_s=LEASE) is Claim.DONE


async def test_close_forgets_everything() -> None:
    store = MemoryIdempotencyStore(clock=FakeClock())
    await store.complete("g", "k", retention_s=RETENTION)
    await store.close()
    assert len(store) == 0
