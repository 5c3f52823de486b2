"""Flushing: group commit releases many waiters per fsync; a slow disk gives FLUSH_DISK_TIMEOUT."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rmqkit.server.store import PutStatus
from rmqkit.server.store.mapped_file import MappedFile
from rmqkit.testing import check_for

from .conftest import msg


async def test_group_commit_releases_many_appends_per_fsync(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    results = await asyncio.gather(*(s.put_message(msg(queue_id=i % 4)) for i in range(200)))
    assert all(r.status is PutStatus.OK for r in results)
    assert s.commit_log.queue.flushed_offset == s.max_physical_offset
    assert s._group_commit is not None and s._group_commit.groups < 200
    await s.stop()


async def test_no_wait_messages_skip_the_flush_wait(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    m = msg()
    m.wait_store_ok = False
    assert (await s.put_message(m)).status is PutStatus.OK
    await s.stop()


async def test_slow_disk_answers_flush_disk_timeout_and_keeps_the_message(
    make_store, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH", sync_flush_timeout_ms=50)
    await s.start()
    gate = threading.Event()
    real_sync = MappedFile.sync

    def stuck_sync(self: MappedFile) -> None:
        gate.wait(5)
        real_sync(self)

    monkeypatch.setattr(MappedFile, "sync", stuck_sync)
    r = await s.put_message(msg(body=b"slow"))
    assert r.status is PutStatus.FLUSH_DISK_TIMEOUT
    assert s.look_message_by_offset(r.physical_offset) is not None  # stored all the same
    gate.set()
    monkeypatch.setattr(MappedFile, "sync", real_sync)
    await check_for(lambda: s.commit_log.queue.flushed_offset == s.max_physical_offset)
    assert (await s.put_message(msg())).status is PutStatus.OK
    await s.stop()


async def test_async_flush_reaches_the_disk_on_its_interval(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_commit_log_least_pages=0)
    await s.start()
    for _ in range(20):
        assert (await s.put_message(msg())).ok
    await check_for(lambda: s.commit_log.queue.flushed_offset == s.max_physical_offset)
    cp = s.checkpoint_file.read()
    await check_for(
        lambda: (c := s.checkpoint_file.read()) and c.logics_flushed == s.max_physical_offset
    )
    assert cp is not None
    await s.stop()
