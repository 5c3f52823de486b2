"""A master store and a slave store side by side in tmp_path, 64 KiB segments."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from rmqkit.server.store import FileMessageStore
from rmqkit.server.store.settings import BrokerRole
from tests.unit.server.store.conftest import msg, small_settings

MakeStore = Callable[..., FileMessageStore]


@pytest.fixture
def make_store(tmp_path: Path) -> MakeStore:
    def make(name: str, role: BrokerRole = "ASYNC_MASTER", **overrides: Any) -> FileMessageStore:
        return FileMessageStore(small_settings(tmp_path / name, **overrides), role=role)

    return make


@pytest.fixture
async def master(make_store: MakeStore) -> AsyncIterator[FileMessageStore]:
    s = make_store("master")
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
async def slave(make_store: MakeStore) -> AsyncIterator[FileMessageStore]:
    s = make_store("slave", "SLAVE")
    await s.start()
    yield s
    await s.stop()


async def fill(store: FileMessageStore, n: int, *, size: int = 900, queues: int = 4) -> None:
    """`n` messages of about `size` bytes spread over `queues` queues of topic T."""
    for i in range(n):
        body = bytes([i % 251]) * (size + (i * 37) % 200)
        r = await store.put_message(msg(queue_id=i % queues, body=body, KEYS=f"k{i}"))
        assert r.ok, r


__all__ = ["MakeStore", "fill", "msg"]
