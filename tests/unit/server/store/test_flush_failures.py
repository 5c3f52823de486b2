"""A sync that fails: what it was to write is written again for the next one, or the store stops
taking writes; the ConsumeQueue and index position in the checkpoint stays at the last good sync.

A failed fdatasync leaves the pages it could not write clean (Linux), so the next one succeeds
without them: these tests check that the store never counts on such a success.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path
from typing import Any

import pytest

from rmqkit.protocol.record import decode_record
from rmqkit.server.store import FileMessageStore, PutStatus, disk_sync, mapped_file
from rmqkit.server.store.flush import FAILED_SYNCS_MAX, redirty
from rmqkit.server.store.mapped_file import MappedFile, MappedFileQueue, mark_synced
from rmqkit.testing import check_for

from .conftest import failing_pwrite, msg

_REAL_SYNC = MappedFile.sync


def _fail_syncs(monkeypatch: pytest.MonkeyPatch, under: Path | None = None) -> None:
    """Every `MappedFile.sync` fails with EIO (only of files below `under`, when given)."""

    def sync(self: MappedFile) -> None:
        if under is None or under in self.path.parents:
            raise OSError(errno.EIO, "Input/output error")
        _REAL_SYNC(self)

    monkeypatch.setattr(MappedFile, "sync", sync)


def _heal_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(MappedFile, "sync", _REAL_SYNC)


async def _sync_flush_store(make_store: Any, monkeypatch: pytest.MonkeyPatch) -> FileMessageStore:
    monkeypatch.setattr(disk_sync, "linux_aio", None)  # a thread's fdatasync, which we can fail
    s: FileMessageStore = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    assert (await s.put_message(msg())).status is PutStatus.OK
    return s


async def _failing_commit_log(
    make_store: Any, monkeypatch: pytest.MonkeyPatch
) -> tuple[FileMessageStore, MappedFileQueue, int]:
    """A SYNC_FLUSH store holding one synced message, whose CommitLog syncs fail from now on;
    with its CommitLog's files and the offset synced so far."""
    s = await _sync_flush_store(make_store, monkeypatch)
    _fail_syncs(monkeypatch, under=s.settings.commit_log_dir)
    return s, s.commit_log.queue, s.commit_log.queue.flushed_offset


async def _stop_and_recover(
    s: FileMessageStore, make_store: Any, before: int, stored: list[int], **settings: Any
) -> None:
    """After the store gave bytes up: its stop leaves the abort file and a checkpoint at
    `before`, and the next start checks the CommitLog from there, keeps what the page cache
    held (the records at `stored`), and takes writes again."""
    await s.stop()
    assert s.settings.abort_path.exists()
    cp = s.checkpoint_file.read()
    assert cp is not None and cp.commit_log_flushed == before
    again = make_store(**settings)
    await again.start()
    assert again.recovery is not None and again.recovery.crashed
    assert all(again.look_message_by_offset(o) is not None for o in stored)
    assert (await again.put_message(msg())).status is PutStatus.OK
    await again.stop()


async def test_a_failed_group_commit_writes_its_bytes_again_for_the_next(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    s = await _sync_flush_store(make_store, monkeypatch)
    q = s.commit_log.queue
    before = q.flushed_offset
    writes: list[tuple[int, int, bytes]] = []
    real_pwrite = os.pwrite

    def spy(fd: int, data: Any, pos: int) -> int:
        if any(mf.fd == fd for mf in q.files):
            writes.append((fd, pos, bytes(data)))
        return real_pwrite(fd, data, pos)

    monkeypatch.setattr(mapped_file.os, "pwrite", spy)
    _fail_syncs(monkeypatch, under=s.settings.commit_log_dir)
    r = await s.put_message(msg(body=b"y" * 300))
    assert r.status is PutStatus.FLUSH_DISK_TIMEOUT and r.stored
    assert "syncing the CommitLog failed" in caplog.text and "Input/output error" in caplog.text
    assert q.flushed_offset == before
    # After the append's own writes, everything the failed sync covered, unchanged.
    mf = q.find(before)
    assert mf is not None
    fd, pos, data = writes[-1]
    assert (fd, pos) == (mf.fd, before - mf.start)
    assert len(data) == r.physical_offset + r.size - before
    assert data == bytes(mf.view(pos, len(data)))
    assert s.look_message_by_offset(r.physical_offset) is not None

    _heal_syncs(monkeypatch)
    assert (await s.put_message(msg())).status is PutStatus.OK
    assert q.flushed_offset == s.max_physical_offset
    await s.stop()
    assert not s.settings.abort_path.exists()


async def test_bytes_that_cannot_be_written_again_stop_the_store_taking_writes(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    s, q, before = await _failing_commit_log(make_store, monkeypatch)
    failing_pwrite(monkeypatch, q, errno.EIO, 2)  # the append's two writes pass, then EIO
    r = await s.put_message(msg(body=b"lost?"))
    assert r.status is PutStatus.FLUSH_DISK_TIMEOUT
    assert q.sync_lost is not None and "could not be written again" in caplog.text

    # The disk answers again; the store does not trust it: syncs do not count, writes refused.
    monkeypatch.undo()
    monkeypatch.setattr(disk_sync, "linux_aio", None)
    refused = await s.put_message(msg())
    assert refused.status is PutStatus.SERVICE_NOT_AVAILABLE
    assert "not writeable" in refused.remark and str(q.files[-1].path) in refused.remark
    assert [x.status for x in await s.put_each([msg(), msg()])] == [
        PutStatus.SERVICE_NOT_AVAILABLE
    ] * 2
    assert q.flushed_offset == before
    await _stop_and_recover(
        s, make_store, before, [r.physical_offset], flush_disk_type="SYNC_FLUSH"
    )


def _errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR and text in r.getMessage()]


async def test_syncs_that_keep_failing_stop_the_store_taking_writes(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    s, q, before = await _failing_commit_log(make_store, monkeypatch)
    stored = []
    for _ in range(FAILED_SYNCS_MAX):
        assert q.sync_lost is None
        r = await s.put_message(msg())
        assert r.status is PutStatus.FLUSH_DISK_TIMEOUT
        stored.append(r.physical_offset)
    assert q.sync_lost is not None and f"{FAILED_SYNCS_MAX} syncs in a row failed" in q.sync_lost
    refused = await s.put_message(msg())
    assert refused.status is PutStatus.SERVICE_NOT_AVAILABLE
    assert "Input/output error" in refused.remark and "restart the broker" in refused.remark
    # A line for each failed round and one for giving up; no new round, so no more lines.
    assert len(_errors(caplog, "syncing the CommitLog failed")) == FAILED_SYNCS_MAX
    assert len(_errors(caplog, "no more writes are taken")) == 1
    assert q.dirty_targets() == [] and q.flushed_offset == before
    _heal_syncs(monkeypatch)
    await _stop_and_recover(s, make_store, before, stored, flush_disk_type="SYNC_FLUSH")


async def test_a_sync_that_succeeds_starts_the_count_of_failures_again(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    s = await _sync_flush_store(make_store, monkeypatch)
    for _ in range(3):
        # Only the CommitLog's: a failed ConsumeQueue sync rightly leaves the abort file.
        _fail_syncs(monkeypatch, under=s.settings.commit_log_dir)
        for _ in range(FAILED_SYNCS_MAX - 1):
            assert (await s.put_message(msg())).status is PutStatus.FLUSH_DISK_TIMEOUT
        _heal_syncs(monkeypatch)
        assert (await s.put_message(msg())).status is PutStatus.OK
    assert s.commit_log.queue.sync_lost is None
    assert caplog.text.count(f"works again, after {FAILED_SYNCS_MAX - 1} failed tries") == 3
    await s.stop()
    assert not s.settings.abort_path.exists()


async def test_an_async_flush_that_keeps_failing_logs_a_line_a_try_then_stops_writes(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_commit_log_least_pages=0)
    await s.start()
    q = s.commit_log.queue
    before = q.flushed_offset
    _fail_syncs(monkeypatch, under=s.settings.commit_log_dir)
    r = await s.put_message(msg())
    assert r.status is PutStatus.OK  # ASYNC_FLUSH answers before the flush
    await check_for(lambda: q.sync_lost is not None)
    lines = _errors(caplog, "flush: syncing the CommitLog failed")
    assert len(lines) == FAILED_SYNCS_MAX and not any(x.exc_info for x in lines)
    assert "tried again in the next flush" not in lines[-1].getMessage()
    assert (await s.put_message(msg())).status is PutStatus.SERVICE_NOT_AVAILABLE
    assert q.dirty_targets() == []  # nothing left for the flusher to try
    _heal_syncs(monkeypatch)
    await _stop_and_recover(
        s, make_store, before, [r.physical_offset], flush_commit_log_least_pages=0
    )


async def test_async_flush_writes_a_failed_range_again_and_counts_it_synced_only_later(
    make_store, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    s = make_store(flush_commit_log_least_pages=0)
    await s.start()
    q = s.commit_log.queue
    await s.put_message(msg())
    await check_for(lambda: q.flushed_offset == s.max_physical_offset)
    before = q.flushed_offset
    rewritten: list[tuple[int, int]] = []
    real_redirty = MappedFile.redirty

    def spy(self: MappedFile, start: int, end: int) -> None:
        rewritten.append((self.start + start, self.start + end))
        real_redirty(self, start, end)

    monkeypatch.setattr(MappedFile, "redirty", spy)
    _fail_syncs(monkeypatch, under=s.settings.commit_log_dir)
    r = await s.put_message(msg(body=b"z" * 200))
    await check_for(lambda: rewritten)
    assert rewritten[0] == (before, r.physical_offset + r.size)
    assert q.flushed_offset == before
    _heal_syncs(monkeypatch)
    await check_for(lambda: q.flushed_offset == s.max_physical_offset)
    assert q.sync_lost is None
    await s.stop()


async def test_a_failed_consume_queue_sync_keeps_the_checkpoint_at_the_last_good_one(
    make_store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.ERROR, logger="rmqkit.store")
    s = make_store(flush_commit_log_least_pages=0)
    await s.start()
    for _ in range(10):
        await s.put_message(msg())

    def checkpoint_at(offset: int) -> bool:
        cp = s.checkpoint_file.read()
        return cp is not None and cp.logics_flushed == offset

    good = s.max_physical_offset
    await check_for(lambda: checkpoint_at(good))
    _fail_syncs(monkeypatch, under=s.settings.consume_queue_dir)
    for _ in range(10):
        await s.put_message(msg())
    await check_for(lambda: "syncing the ConsumeQueue and index files failed" in caplog.text)
    _heal_syncs(monkeypatch)
    for _ in range(10):
        await s.put_message(msg())
    end = s.max_physical_offset

    def commit_log_checkpointed() -> bool:
        cp = s.checkpoint_file.read()
        return cp is not None and cp.commit_log_flushed == end

    await check_for(commit_log_checkpointed)  # checkpoints go on, the logics position stays
    assert checkpoint_at(good)
    await s.stop()
    assert checkpoint_at(good) and s.settings.abort_path.exists()

    again = make_store(flush_commit_log_least_pages=0)
    await again.start()
    assert again.recovery is not None and again.recovery.redispatch_from == good
    assert again.get_max_offset("T", 0) == 30
    got = again.get_message("T", 0, 0, 32)
    assert [decode_record(r).body for r in got.records] == [b"x" * 100] * 30
    await again.stop()
    assert not again.settings.abort_path.exists()


def test_a_file_closed_before_its_bytes_are_written_again_counts_as_lost(tmp_path: Path) -> None:
    """`redirty` runs in the group commit's completion: it must not raise out of it."""
    q = MappedFileQueue(tmp_path, 4096, mapped_writable=False)
    mf = q.create(0)
    mf.write(0, b"r" * 100)
    mf.mark_written(100)
    targets = q.dirty_targets()
    mf.close()
    redirty(q, targets)
    assert q.sync_lost is not None and mf.sync_lost == q.sync_lost
    mark_synced(targets)
    assert mf.flushed_pos == 0
