"""Flushing: group commit releases many waiters per fsync; a slow disk gives FLUSH_DISK_TIMEOUT.

The group commit tests run with kernel AIO and with the thread that stands in where it is missing.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import threading

import pytest

from rmqkit.server.store import FileMessageStore, PutStatus, disk_sync
from rmqkit.server.store.disk_sync import KernelAioSync
from rmqkit.server.store.flush import GroupCommitService
from rmqkit.testing import check_for

from .conftest import hold_syncs, msg


@pytest.fixture(params=["kernel AIO", "a thread"])
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each group commit test runs on both ways of syncing: the thread where AIO is missing."""
    if request.param == "a thread":
        monkeypatch.setattr(disk_sync, "linux_aio", None)
    elif disk_sync.linux_aio is None:
        pytest.skip("kernel AIO is Linux only")
    return str(request.param)


def _sync_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name == GroupCommitService.name)


def _group_commit(s: FileMessageStore) -> GroupCommitService:
    assert s._group_commit is not None
    return s._group_commit


async def test_group_commit_releases_many_appends_per_fsync(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    gc = _group_commit(s)
    assert gc.disk_sync is not None and gc.disk_sync.name == engine
    # 200 records of ~600 bytes cross the 64 KiB segments: rounds sync two files at once.
    results = await asyncio.gather(
        *(s.put_message(msg(queue_id=i % 4, body=b"x" * 500)) for i in range(200))
    )
    assert all(r.status is PutStatus.OK for r in results)
    assert s.commit_log.queue.flushed_offset == s.max_physical_offset
    assert len(s.commit_log.queue.files) > 1
    assert 0 < gc.groups < 200
    await s.stop()


async def test_each_acknowledged_append_is_on_disk(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    """One writer, one append at a time: each put returns only once its bytes are synced."""
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    for i in range(50):
        r = await s.put_message(msg(queue_id=i % 4))
        assert r.status is PutStatus.OK
        assert s.commit_log.queue.flushed_offset >= r.physical_offset + r.size
    assert _group_commit(s).groups >= 50
    await s.stop()


async def test_no_wait_messages_skip_the_flush_wait(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    m = msg()
    m.wait_store_ok = False
    assert (await s.put_message(m)).status is PutStatus.OK
    await s.stop()


async def test_put_each_waits_once_for_the_run(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    gc = _group_commit(s)
    before = gc.groups
    results = await s.put_each([msg(queue_id=i % 4, body=b"y" * 300) for i in range(40)])
    assert [r.status for r in results] == [PutStatus.OK] * 40
    assert s.commit_log.queue.flushed_offset >= results[-1].physical_offset + results[-1].size
    assert gc.groups - before == 1  # one flush round for the forty
    await s.stop()


async def test_one_round_takes_every_append_of_a_loop_turn(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    # As a network read of several batch sends: each is stored and waits on its own, all in
    # one turn of the loop, and one sync covers them all.
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    gc = _group_commit(s)
    before = gc.groups
    batches = [[msg(queue_id=q, body=b"z" * 200) for _ in range(5)] for q in range(4)]
    puts = [asyncio.ensure_future(s.put_messages(b)) for b in batches]
    results = await asyncio.gather(*puts)
    assert [r.status for r in results] == [PutStatus.OK] * 4
    assert gc.groups - before == 1
    await s.stop()


async def test_the_round_starts_before_its_records_are_dispatched(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    # Dispatch (ConsumeQueue, index) costs the event loop far more than starting a sync: the
    # sync goes first and runs on the disk meanwhile.
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    gc = _group_commit(s)
    assert (await s.put_message(msg())).ok  # the services' first turns are behind us
    syncing_at_dispatch: list[bool] = []
    s.add_dispatch_listener(lambda run: syncing_at_dispatch.append(gc._round is not None))
    for batch in (False, True):
        m = [msg(), msg()]
        r = await (s.put_messages(m) if batch else s.put_each(m))
        assert r.status is PutStatus.OK if batch else [x.status for x in r] == [PutStatus.OK] * 2
    assert syncing_at_dispatch == [True, True]
    await s.stop()


async def test_stop_answers_every_waiter_and_ends_the_engine(make_store, engine: str) -> None:  # type: ignore[no-untyped-def]
    threads = _sync_threads()
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    gc = _group_commit(s)
    puts = [asyncio.ensure_future(s.put_message(msg())) for _ in range(20)]
    await asyncio.sleep(0)  # the puts have appended and wait for the disk
    await s.stop()
    assert [(await p).status for p in puts] == [PutStatus.OK] * 20
    assert s.commit_log.queue.flushed_offset == s.max_physical_offset
    assert not gc.running
    assert gc.request(1 << 40).result() is PutStatus.SERVICE_NOT_AVAILABLE
    assert _sync_threads() == threads


async def test_slow_disk_answers_flush_disk_timeout_and_keeps_the_message(
    make_store, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    # The thread's fdatasync is held up; the kernel's cannot be, and the timeout is the same code.
    monkeypatch.setattr(disk_sync, "linux_aio", None)
    s = make_store(flush_disk_type="SYNC_FLUSH", sync_flush_timeout_ms=50)
    await s.start()
    release = hold_syncs(monkeypatch)
    r = await s.put_message(msg(body=b"slow"))
    assert r.status is PutStatus.FLUSH_DISK_TIMEOUT
    assert s.look_message_by_offset(r.physical_offset) is not None  # stored all the same
    # Stored together, the messages that wait time out; the one that does not wait is OK.
    no_wait = msg(body=b"fire and forget")
    no_wait.wait_store_ok = False
    results = await s.put_each([msg(body=b"a"), no_wait, msg(topic="bad topic!"), msg(body=b"b")])
    assert [r.status for r in results] == [
        PutStatus.FLUSH_DISK_TIMEOUT, PutStatus.OK, PutStatus.MESSAGE_ILLEGAL,
        PutStatus.FLUSH_DISK_TIMEOUT,
    ]  # fmt: skip
    assert all(s.look_message_by_offset(results[i].physical_offset) for i in (0, 1, 3))
    release()
    await check_for(lambda: s.commit_log.queue.flushed_offset == s.max_physical_offset)
    assert (await s.put_message(msg())).status is PutStatus.OK
    await s.stop()


class _RefusingContext:
    """Stands in for a kernel whose file system takes no AIO syncs (io_submit: EINVAL)."""

    def __init__(self, real: object) -> None:
        self.fileno = real.fileno  # type: ignore[attr-defined]
        self.real = real

    def submit(self, *ops: object) -> int:
        raise ValueError("the operation specified is invalid for the file descriptor [EINVAL]")


async def test_a_refused_kernel_sync_falls_back_to_a_thread(
    make_store, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    if disk_sync.linux_aio is None:
        pytest.skip("kernel AIO is Linux only")
    caplog.set_level(logging.INFO, logger="rmqkit.store.flush")
    threads = _sync_threads()
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    aio = _group_commit(s).disk_sync
    assert isinstance(aio, KernelAioSync)
    aio._ctx = _RefusingContext(aio._ctx)
    for _ in range(3):
        assert (await s.put_message(msg())).status is PutStatus.OK
    assert s.commit_log.queue.flushed_offset == s.max_physical_offset
    assert "kernel AIO refused a sync" in caplog.text
    assert _sync_threads() == threads + 1
    await s.stop()
    assert _sync_threads() == threads


async def test_an_aio_round_reports_its_first_error_once_all_syncs_complete() -> None:
    """What the kernel's completions (0, or a negated errno) make of a round of two files."""
    if disk_sync.linux_aio is None:
        pytest.skip("kernel AIO is Linux only")
    aio = KernelAioSync(asyncio.get_running_loop(), "test")
    results: list[BaseException | None] = []
    state: list[object] = [2, None]
    aio._completed(state, results.append, -errno.EIO)
    assert results == []  # one of the two still in flight
    aio._completed(state, results.append, 0)
    [error] = results
    assert isinstance(error, OSError) and error.errno == errno.EIO
    await aio.close()


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
