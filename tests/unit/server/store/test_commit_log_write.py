"""How records reach the CommitLog's files: packed into a writable mapping (ASYNC_FLUSH), or
encoded into a buffer and copied in with `pwrite` through a read-only mapping (SYNC_FLUSH)."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmqkit.errors import DiskFullError, StoreError
from rmqkit.protocol.record import decode_record, pack_host
from rmqkit.server.store import FileMessageStore, MessageToStore, PutStatus, mapped_file
from rmqkit.server.store.commit_log import SCRATCH_BYTES, CommitLog
from rmqkit.server.store.mapped_file import MappedFile, MappedFileQueue

from .conftest import failing_pwrite, msg

SEGMENT = 64 * 1024
HOST = pack_host("127.0.0.1", 10911)


def open_log(root: Path, *, mapped_writable: bool) -> CommitLog:
    queue = MappedFileQueue(root, SEGMENT, mapped_writable=mapped_writable)
    queue.load()
    return CommitLog(queue, HOST)


def messages() -> list[MessageToStore]:
    return [
        msg(queue_id=i % 3, body=bytes([i]) * (50 + 97 * i), KEYS=f"k{i}", TAGS="A")
        for i in range(40)
    ]


def log_bytes(log: CommitLog) -> bytes:
    return b"".join(bytes(mf.mm[: mf.write_pos]) for mf in log.queue.files)


def test_both_ways_write_the_same_bytes(tmp_path: Path) -> None:
    logs = [open_log(tmp_path / name, mapped_writable=w) for name, w in (("m", True), ("p", False))]
    ms = messages()
    for log in logs:
        for i, m in enumerate(ms[:20]):
            log.append(m, 1_000 + i)
        log.append_batch(ms[20:30], 2_000)
        log.append_batch(ms[30:], 3_000)  # crosses into the second segment
    mapped, written = logs
    assert len(written.queue.files) == 2
    assert log_bytes(mapped) == log_bytes(written)
    assert mapped.queue_offsets == written.queue_offsets
    assert list(mapped.fresh) == list(written.fresh)
    for log in logs:
        log.close()


def test_the_written_file_is_mapped_read_only_and_takes_no_prefault(tmp_path: Path) -> None:
    log = open_log(tmp_path, mapped_writable=False)
    a = log.append(msg(), 1)
    mf = log.queue.files[0]
    with pytest.raises(TypeError):
        mf.mm[0:1] = b"x"
    assert mf.ahead >= a.size  # no MADV_POPULATE_WRITE on a read-only mapping
    rec = log.read_record(a.physical_offset)
    assert rec is not None and decode_record(rec, check_crc=True).body == b"x" * 100
    log.close()


def test_a_batch_larger_than_the_scratch_buffer_grows_it(tmp_path: Path) -> None:
    log = open_log(tmp_path, mapped_writable=False)
    log.queue.file_size = 4 * SCRATCH_BYTES  # room for the batch in one segment
    big = [msg(body=os.urandom(8 * 1024)) for _ in range(SCRATCH_BYTES // (8 * 1024) + 4)]
    out = log.append_batch(big, 5)
    assert sum(a.size for a in out) > SCRATCH_BYTES
    for a, m in zip(out, big, strict=True):
        rec = log.read_record(a.physical_offset)
        assert rec is not None and decode_record(rec, check_crc=True).body == m.body
    log.close()


def test_short_writes_are_finished(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.pwrite

    def at_most_100(fd: int, data: Any, pos: int) -> int:
        return real(fd, memoryview(data)[:100], pos)

    log = open_log(tmp_path, mapped_writable=False)
    monkeypatch.setattr(mapped_file.os, "pwrite", at_most_100)
    a = log.append(msg(body=b"y" * 1000), 1)
    monkeypatch.undo()
    rec = log.read_record(a.physical_offset)
    assert rec is not None and decode_record(rec, check_crc=True).body == b"y" * 1000
    log.close()


@pytest.mark.parametrize(
    ("code", "error", "after"),
    [(errno.EIO, StoreError, 0), (errno.ENOSPC, DiskFullError, 0), (errno.EIO, StoreError, 1)],
)
def test_a_failed_write_gives_back_what_the_records_took(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    error: type[Exception],
    after: int,
) -> None:
    log = open_log(tmp_path, mapped_writable=False)
    first = log.append(msg(queue_id=1), 1)
    offsets, fresh = dict(log.queue_offsets), list(log.fresh)
    failing_pwrite(monkeypatch, log.queue, code, after)
    with pytest.raises(error, match=str(log.queue.files[0].path)):
        log.append_batch([msg(queue_id=1), msg(queue_id=2)], 2)
    with pytest.raises(error):
        log.append(msg(queue_id=1), 3)
    assert log.queue_offsets == offsets and list(log.fresh) == fresh
    assert log.max_offset == first.size
    monkeypatch.undo()
    again = log.append(msg(queue_id=1), 4)
    assert (again.physical_offset, again.queue_offset) == (first.size, 1)
    rec = log.read_record(again.physical_offset)
    assert rec is not None and decode_record(rec, check_crc=True).queue_offset == 1
    log.close()


@pytest.mark.parametrize(("flush", "writable"), [("ASYNC_FLUSH", True), ("SYNC_FLUSH", False)])
async def test_the_store_maps_the_commit_log_by_its_flush(
    make_store: Callable[..., FileMessageStore], flush: str, writable: bool
) -> None:
    s = make_store(flush_disk_type=flush)
    await s.start()
    try:
        assert (await s.put_message(msg())).ok
        files: list[MappedFile] = s.commit_log.queue.files
        assert [mf.mapped_writable for mf in files] == [writable]
    finally:
        await s.stop()


async def test_sync_flush_answers_disk_full_when_a_write_finds_no_room(
    make_store: Callable[..., FileMessageStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    try:
        ok = await s.put_message(msg())
        failing_pwrite(monkeypatch, s.commit_log.queue, errno.ENOSPC, 0)
        r = await s.put_message(msg())
        assert r.status is PutStatus.DISK_FULL and "no disk space" in r.remark
        monkeypatch.undo()
        again = await s.put_message(msg())
        assert again.ok and again.physical_offset == ok.physical_offset + ok.size
        assert again.queue_offset == 1
    finally:
        await s.stop()


async def test_an_io_error_refuses_only_the_sends_it_hit(
    make_store: Callable[..., FileMessageStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    s = make_store(flush_disk_type="SYNC_FLUSH")
    await s.start()
    try:
        body = b"b" * 10_000
        size = (await s.put_message(msg(body=body))).size
        seg = s.commit_log.file_size
        while seg - s.commit_log.max_offset >= 2 * size + 8:  # leave room for one more
            assert (await s.put_message(msg(body=body))).ok
        done = s.commit_log.queue_offsets[("T", 0)]
        # put_each writes a run per segment: the first send fills this one, the other two
        # open the next. The first run's two writes go through, then EIO (at the BLANK that
        # ends this segment).
        failing_pwrite(monkeypatch, s.commit_log.queue, errno.EIO, 2)
        results = await s.put_each([msg(body=body), msg(body=body), msg(body=body)])
        assert [r.status for r in results] == [
            PutStatus.OK,
            PutStatus.UNKNOWN_ERROR,
            PutStatus.UNKNOWN_ERROR,
        ]
        assert results[1] is not results[2]  # each send its own result
        assert str(s.commit_log.queue.files[0].path) in results[1].remark
        assert results[0].queue_offset == done
        monkeypatch.undo()
        again = await s.put_message(msg(body=body))
        assert again.ok and again.queue_offset == done + 1
        assert again.physical_offset == seg  # the next segment's first record
    finally:
        await s.stop()


@pytest.mark.parametrize("writable", [True, False])
def test_append_each_writes_what_appends_one_by_one_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writable: bool
) -> None:
    one, each = (open_log(tmp_path / n, mapped_writable=writable) for n in ("one", "each"))
    ms = messages()
    for i, m in enumerate(ms[:5]):
        one.append(m, 1_000 + i)
        each.append(m, 1_000 + i)
    one_by_one = [one.append(m, 2_000) for m in ms[5:]]
    real = os.pwrite
    calls = [0]

    def counting(fd: int, data: Any, pos: int) -> int:
        calls[0] += 1
        return real(fd, data, pos)

    monkeypatch.setattr(mapped_file.os, "pwrite", counting)
    out, error = each.append_each(ms[5:], 2_000)  # crosses into the second segment
    monkeypatch.undo()
    assert error is None and len(each.queue.files) == 2
    assert log_bytes(one) == log_bytes(each)
    assert one.queue_offsets == each.queue_offsets and list(one.fresh) == list(each.fresh)
    assert out == one_by_one
    assert calls[0] == (0 if writable else 5)  # two per segment's run, and the BLANK
    for log in (one, each):
        log.close()


def test_append_each_stops_at_a_failed_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = open_log(tmp_path, mapped_writable=False)
    ms = messages()
    failing_pwrite(monkeypatch, log.queue, errno.ENOSPC, 2)
    out, error = log.append_each(ms, 7)  # the first segment's run is written, the next fails
    monkeypatch.undo()
    assert isinstance(error, DiskFullError)
    assert 0 < len(out) < len(ms) and log.max_offset == sum(a.size for a in out)
    assert sum(log.queue_offsets.values()) == len(out) and len(log.fresh) == len(out)
    again = log.append(ms[len(out)], 8)
    assert again.physical_offset == SEGMENT  # the failed run's place is taken again
    rec = log.read_record(again.physical_offset)
    assert rec is not None and decode_record(rec, check_crc=True).body == ms[len(out)].body
    log.close()
