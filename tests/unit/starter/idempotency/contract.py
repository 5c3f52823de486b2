"""One contract for every idempotency store: memory, SQLite and Redis answer alike.

A test module subclasses `StoreContract` (and `SharedStoreContract` for stores that several
instances share) and gives it a `harness` fixture; the Redis run lives in tests/integration.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import pytest

from rmqkit.errors import ConfigurationError, StoreClosedError
from rmqkit.starter.idempotency import Claim, IdempotencyStore

START = 1_750_000_000.0  # a fixed epoch second for fake clocks
LEASE = 30.0
RETENTION = 3600.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class PurgeableStore(IdempotencyStore, Protocol):
    async def purge_expired(self) -> int: ...


@dataclass
class Harness:
    """A store under test and the means to move its time.

    `advance(seconds)` moves the store's time on; `twin()` opens another instance over the same
    records (another process's view), or is None for a store nobody shares; `expires_itself`
    says whether the back end drops expired records on its own (then purge finds none).
    """

    store: PurgeableStore
    advance: Callable[[float], Awaitable[None]]
    twin: Callable[[], Awaitable[PurgeableStore]] | None = None
    expires_itself: bool = False


class StoreContract:
    """Acquire, complete, release and purge, as every store must do them."""

    async def test_first_acquire_is_acquired(self, harness: Harness) -> None:
        assert await harness.store.acquire("g", "k1", lease_s=LEASE) is Claim.ACQUIRED

    async def test_second_acquire_while_leased_is_busy(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("g", "k1", lease_s=LEASE)
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.BUSY
        await harness.advance(LEASE - 1)
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.BUSY

    async def test_expired_lease_lets_a_redelivery_run(self, harness: Harness) -> None:
        s = harness.store
        assert await s.acquire("g", "crashed", lease_s=LEASE) is Claim.ACQUIRED
        # The holder crashed mid-handler: it neither completes nor releases.
        await harness.advance(LEASE + 1)
        assert await s.acquire("g", "crashed", lease_s=LEASE) is Claim.ACQUIRED
        assert await s.acquire("g", "crashed", lease_s=LEASE) is Claim.BUSY

    async def test_complete_then_acquire_is_done(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("g", "k1", lease_s=LEASE)
        await s.complete("g", "k1", retention_s=RETENTION)
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.DONE
        await harness.advance(LEASE * 2)  # past the lease, within the retention
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.DONE

    async def test_after_retention_a_key_runs_again(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("g", "k1", lease_s=LEASE)
        await s.complete("g", "k1", retention_s=RETENTION)
        await harness.advance(RETENTION + 1)
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.ACQUIRED

    async def test_release_lets_a_redelivery_run(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("g", "failed", lease_s=LEASE)
        await s.release("g", "failed")
        assert await s.acquire("g", "failed", lease_s=LEASE) is Claim.ACQUIRED
        assert await s.acquire("g", "failed", lease_s=LEASE) is Claim.BUSY

    async def test_release_after_complete_keeps_done(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("g", "k1", lease_s=LEASE)
        await s.complete("g", "k1", retention_s=RETENTION)
        await s.release("g", "k1")
        assert await s.acquire("g", "k1", lease_s=LEASE) is Claim.DONE

    async def test_release_of_an_unknown_key_is_harmless(self, harness: Harness) -> None:
        await harness.store.release("g", "never-acquired")
        assert await harness.store.acquire("g", "never-acquired", lease_s=LEASE) is Claim.ACQUIRED

    async def test_scopes_are_isolated(self, harness: Harness) -> None:
        s = harness.store
        await s.acquire("group-a", "k1", lease_s=LEASE)
        await s.complete("group-a", "k1", retention_s=RETENTION)
        assert await s.acquire("group-b", "k1", lease_s=LEASE) is Claim.ACQUIRED
        # Separator look-alikes: ("a:b", "c") and ("a", "b:c") are different records.
        assert await s.acquire("a:b", "c", lease_s=LEASE) is Claim.ACQUIRED
        assert await s.acquire("a", "b:c", lease_s=LEASE) is Claim.ACQUIRED
        await s.release("group-b", "k1")
        assert await s.acquire("group-a", "k1", lease_s=LEASE) is Claim.DONE

    async def test_purge_expired_counts_what_it_removed(self, harness: Harness) -> None:
        s = harness.store
        for key in ("d1", "d2", "d3"):
            await s.acquire("g", key, lease_s=LEASE)
            await s.complete("g", key, retention_s=RETENTION)
        await s.acquire("g", "crashed", lease_s=LEASE)
        await s.acquire("g", "kept", lease_s=LEASE)
        await s.complete("g", "kept", retention_s=RETENTION * 10)
        assert await s.purge_expired() == 0  # nothing has run out yet
        await harness.advance(RETENTION + 1)
        assert await s.purge_expired() == (0 if harness.expires_itself else 4)
        assert await s.purge_expired() == 0
        assert await s.acquire("g", "kept", lease_s=LEASE) is Claim.DONE
        assert await s.acquire("g", "d1", lease_s=LEASE) is Claim.ACQUIRED

    async def test_rejects_empty_keys_and_non_positive_times(self, harness: Harness) -> None:
        s = harness.store
        with pytest.raises(ConfigurationError):
            await s.acquire("g", "", lease_s=LEASE)
        with pytest.raises(ConfigurationError):
            await s.acquire("", "k", lease_s=LEASE)
        with pytest.raises(ConfigurationError):
            await s.acquire("g", "k", lease_s=0)
        with pytest.raises(ConfigurationError):
            await s.complete("g", "k", retention_s=-1)

    async def test_a_closed_store_refuses_calls(self, harness: Harness) -> None:
        s = harness.store
        await s.close()
        await s.close()  # twice is fine
        with pytest.raises(StoreClosedError):
            await s.acquire("g", "k", lease_s=LEASE)
        with pytest.raises(StoreClosedError):
            await s.complete("g", "k", retention_s=RETENTION)
        with pytest.raises(StoreClosedError):
            await s.release("g", "k")
        with pytest.raises(StoreClosedError):
            await s.purge_expired()


class SharedStoreContract:
    """For stores that several instances (processes, hosts) share through one back end."""

    async def test_a_twin_sees_the_lease_and_the_done_mark(self, harness: Harness) -> None:
        assert harness.twin is not None
        other = await harness.twin()
        try:
            assert await harness.store.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
            assert await other.acquire("g", "k", lease_s=LEASE) is Claim.BUSY
            await harness.store.complete("g", "k", retention_s=RETENTION)
            assert await other.acquire("g", "k", lease_s=LEASE) is Claim.DONE
        finally:
            await other.close()

    async def test_a_stale_release_keeps_the_successors_lease(self, harness: Harness) -> None:
        assert harness.twin is not None
        slow, successor = harness.store, await harness.twin()
        try:
            assert await slow.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
            await harness.advance(LEASE + 1)  # the slow handler outlives its lease...
            assert await successor.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
            await slow.release("g", "k")  # ...then fails: it must not free the successor's lease
            assert await slow.acquire("g", "k", lease_s=LEASE) is Claim.BUSY
            await successor.release("g", "k")
            assert await slow.acquire("g", "k", lease_s=LEASE) is Claim.ACQUIRED
        finally:
            await successor.close()
