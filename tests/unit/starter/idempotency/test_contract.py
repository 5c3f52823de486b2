"""The idempotency store contract, run against the memory store and the SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.starter.idempotency import MemoryIdempotencyStore, SqliteIdempotencyStore

from .contract import FakeClock, Harness, PurgeableStore, SharedStoreContract, StoreContract


def _memory(tmp_path: Path, clock: FakeClock) -> Harness:
    async def advance(seconds: float) -> None:
        clock.now += seconds

    return Harness(MemoryIdempotencyStore(clock=clock), advance)


def _sqlite(tmp_path: Path, clock: FakeClock) -> Harness:
    async def advance(seconds: float) -> None:
        clock.now += seconds

    async def twin() -> PurgeableStore:
        return SqliteIdempotencyStore(tmp_path / "idem.db", clock=clock)

    return Harness(SqliteIdempotencyStore(tmp_path / "idem.db", clock=clock), advance, twin)


@pytest.fixture(params=[_memory, _sqlite], ids=["memory", "sqlite"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    h: Harness = request.param(tmp_path, FakeClock())
    yield h
    await h.store.close()


class TestStoreContract(StoreContract):
    pass


@pytest.fixture
async def shared_harness(tmp_path: Path) -> AsyncIterator[Harness]:
    h = _sqlite(tmp_path, FakeClock())
    yield h
    await h.store.close()


class TestSqliteSharedContract(SharedStoreContract):
    @pytest.fixture
    def harness(self, shared_harness: Harness) -> Harness:
        return shared_harness
