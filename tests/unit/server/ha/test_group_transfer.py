"""SYNC_MASTER waits: released by slave acknowledgements in offset order, or timed out."""

from __future__ import annotations

import asyncio

import pytest

from rmqkit.server.store import FileMessageStore, PutStatus, disk_sync
from rmqkit.server.store.flush import GroupTransfer
from rmqkit.testing import check_for

from ..store.conftest import hold_syncs
from .conftest import MakeStore, msg


async def test_no_slave_means_slave_not_available_at_once() -> None:
    t = GroupTransfer(timeout_ms=10_000, fallbehind_max_bytes=1000)
    assert t.request(10).result() is PutStatus.SLAVE_NOT_AVAILABLE


async def test_a_slave_too_far_behind_means_slave_not_available() -> None:
    t = GroupTransfer(timeout_ms=10_000, fallbehind_max_bytes=1000)
    t.slave_count = 1
    t.ack(500)
    assert t.request(1500).result() is PutStatus.SLAVE_NOT_AVAILABLE
    fut = t.request(1499)
    assert not fut.done()
    t.close()


async def test_acks_release_waiters_in_offset_order_and_only_those_covered() -> None:
    t = GroupTransfer(timeout_ms=10_000, fallbehind_max_bytes=10**9)
    t.slave_count = 1
    futs = {end: t.request(end) for end in (300, 100, 200, 400)}
    released: list[int] = []
    for end, f in futs.items():
        f.add_done_callback(lambda _, e=end: released.append(e))
    t.ack(250)
    await asyncio.sleep(0)
    assert released == [100, 200] and t.waiting == 2
    assert futs[100].result() is futs[200].result() is PutStatus.OK
    t.ack(50)  # an older report never takes an acknowledgement back
    assert t.acked == 250 and t.request(250).result() is PutStatus.OK
    t.ack(400)
    await asyncio.sleep(0)
    assert released == [100, 200, 300, 400] and t.waiting == 0


async def test_an_unacknowledged_waiter_times_out_with_flush_slave_timeout() -> None:
    t = GroupTransfer(timeout_ms=30, fallbehind_max_bytes=10**9)
    t.slave_count = 1
    early, late = t.request(100), t.request(200)
    t.ack(100)
    assert await late is PutStatus.FLUSH_SLAVE_TIMEOUT
    assert early.result() is PutStatus.OK and t.waiting == 0


async def test_close_releases_everyone_with_flush_slave_timeout() -> None:
    t = GroupTransfer(timeout_ms=60_000, fallbehind_max_bytes=10**9)
    t.slave_count = 1
    f = t.request(10)
    t.close()
    assert f.result() is PutStatus.FLUSH_SLAVE_TIMEOUT
    assert t.request(1).result() is PutStatus.FLUSH_SLAVE_TIMEOUT


async def test_a_sync_master_store_waits_for_the_ack_and_fills_the_offsets(
    make_store: MakeStore,
) -> None:
    s: FileMessageStore = make_store("m", "SYNC_MASTER", sync_flush_timeout_ms=60_000)
    await s.start()
    try:
        alone = await s.put_message(msg())
        assert alone.status is PutStatus.SLAVE_NOT_AVAILABLE and alone.stored
        assert (alone.physical_offset, alone.queue_offset) == (0, 0) and alone.msg_id
        assert s.transfer is not None
        s.transfer.slave_count = 1
        put = asyncio.ensure_future(s.put_message(msg()))
        await check_for(lambda: s.transfer is not None and s.transfer.waiting == 1)
        s.transfer.ack(s.max_physical_offset)
        r = await put
        assert r.status is PutStatus.OK and r.queue_offset == 1
        no_wait = msg()
        no_wait.wait_store_ok = False
        assert (await s.put_message(no_wait)).status is PutStatus.OK
    finally:
        await s.stop()


async def test_an_async_master_never_waits(make_store: MakeStore) -> None:
    s: FileMessageStore = make_store("m", "ASYNC_MASTER")
    await s.start()
    try:
        assert s.transfer is None
        assert (await s.put_messages([msg(), msg()])).status is PutStatus.OK
    finally:
        await s.stop()


async def test_sync_flush_and_sync_master_report_the_disk_first(
    make_store: MakeStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(disk_sync, "linux_aio", None)  # a thread's fdatasync can be held up
    s: FileMessageStore = make_store(
        "m", "SYNC_MASTER", flush_disk_type="SYNC_FLUSH", sync_flush_timeout_ms=50
    )
    await s.start()
    release = hold_syncs(monkeypatch)
    try:
        r = await s.put_message(msg())  # no slave either: the disk is reported
        assert r.status is PutStatus.FLUSH_DISK_TIMEOUT and r.stored
        release()
        r = await s.put_message(msg())
        assert r.status is PutStatus.SLAVE_NOT_AVAILABLE
        assert s.commit_log.queue.flushed_offset == s.max_physical_offset
    finally:
        release()
        await s.stop()
