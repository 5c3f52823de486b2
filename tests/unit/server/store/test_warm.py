"""CommitLogWarmer: zero-fills (or reads) ahead of the writer, never over what the writer wrote."""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from rmqkit.protocol.record import decode_record
from rmqkit.server.store import FileMessageStore
from rmqkit.server.store.mapped_file import PREFAULT_BYTES, MappedFile
from rmqkit.server.store.warm import CommitLogWarmer, chunk_bytes_for
from rmqkit.testing import check_for

from .conftest import msg


def warmer_of(store: FileMessageStore) -> CommitLogWarmer:
    w = store.warmer
    assert w is not None
    return w


async def put_bodies(store: FileMessageStore, n: int, size: int = 200) -> list[tuple[int, bytes]]:
    out = []
    for i in range(n):
        body = bytes([i % 251 + 1]) * size
        r = await store.put_message(msg(body=body))
        assert r.ok, r
        out.append((r.physical_offset, body))
    return out


def assert_readable(store: FileMessageStore, written: list[tuple[int, bytes]]) -> None:
    for offset, body in written:
        rec = store.look_message_by_offset(offset)
        assert rec is not None, offset
        assert decode_record(rec, check_crc=True).body == body


def _bytes_dirtied_by(tid: int) -> int:
    """`write_bytes` of one thread of this process: the bytes of the pages it dirtied."""
    for line in Path(f"/proc/self/task/{tid}/io").read_text().splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    raise AssertionError(f"no write_bytes in /proc/self/task/{tid}/io")


def test_chunks_are_whole_pages_and_a_sixteenth_of_a_file_at_most() -> None:
    assert chunk_bytes_for(1 << 30) == 16 << 20
    assert chunk_bytes_for(64 * 1024) == 4096
    assert chunk_bytes_for(100_000) == 4096
    assert chunk_bytes_for(1000) == 4096  # never less than a page


async def test_fills_ahead_of_the_writer_across_files(
    make_store: Callable[..., FileMessageStore],
) -> None:
    s = make_store()
    await s.start()
    w = warmer_of(s)
    written = await put_bodies(s, 700)  # about 150 KiB: three 64 KiB files
    await check_for(lambda: w.filled_bytes > 0, message="the warmer filled nothing")
    assert len(s.commit_log.queue.files) >= 3
    assert_readable(s, written)
    last = s.commit_log.queue.last()
    assert last is not None and last.warmer is w
    assert all(mf.warmer is None for mf in s.commit_log.queue.files[:-1])
    await s.stop()
    assert not w.running
    again = make_store()
    await again.start()
    assert_readable(again, written)
    await again.stop()


async def test_the_writer_waits_for_a_fill_where_it_is_going(
    make_store: Callable[..., FileMessageStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fill held up in the kernel must not write its zeros over records written meanwhile."""
    s = make_store()
    await s.start()
    w = warmer_of(s)
    held = threading.Event()
    release = threading.Event()
    real_fill = w._fill

    def slow_fill(mf: MappedFile, start: int, end: int) -> None:
        if not held.is_set():
            held.set()
            release.wait(10)
        real_fill(mf, start, end)

    monkeypatch.setattr(w, "_fill", slow_fill)
    written = await put_bodies(s, 30)  # fills start once the writer has written a window
    await check_for(held.is_set, message="no fill started")

    def release_once_the_writer_waits() -> None:
        deadline = time.monotonic() + 5
        while w.writer_waits == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        release.set()

    releaser = threading.Thread(target=release_once_the_writer_waits)
    releaser.start()
    try:
        # A chunk is 4 KiB here: 60 records of about 330 bytes run through the held fill.
        written += await put_bodies(s, 60)
    finally:
        release.set()
        releaser.join()
    await check_for(lambda: w.filled_bytes > 0, message="the held fill never finished")
    assert_readable(s, written)  # no zeros over a record
    assert w.writer_waits >= 1
    await s.stop()


@pytest.mark.parametrize(
    ("flush", "how"), [("ASYNC_FLUSH", "zero-filling"), ("SYNC_FLUSH", "reading ahead")]
)
async def test_a_failing_fill_stops_warming_that_file_and_nothing_else(
    make_store: Callable[..., FileMessageStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    flush: str,
    how: str,
) -> None:
    s = make_store(flush_disk_type=flush)
    await s.start()
    w = warmer_of(s)

    def full_disk(mf: MappedFile, start: int, end: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(w, "_fill", full_disk)
    written: list[tuple[int, bytes]] = []

    async def warned() -> bool:  # writes on until the warmer has tried (and failed) a fill
        written.extend(await put_bodies(s, 10))
        return f"{how} at" in caplog.text

    with caplog.at_level(logging.WARNING, logger="rmqkit.store.warm"):
        await check_for(warned, message="no warning logged")
        written += await put_bodies(s, 70)
    assert "No space left on device" in caplog.text
    assert w.filled_bytes == 0
    first = s.commit_log.queue.files[0]
    assert first.warmer is None  # the writer went back to its own page faults
    assert_readable(s, written)
    await s.stop()


async def test_a_warmer_that_breaks_leaves_the_writer_going(
    make_store: Callable[..., FileMessageStore],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A fault of the warmer's own (not an OSError) while the writer waits for its fill: the
    writer must not wait forever (it holds the event loop), and warms its own pages after."""
    s = make_store()
    await s.start()
    w = warmer_of(s)

    started = threading.Event()

    def broken_fill(mf: MappedFile, start: int, end: int) -> None:
        started.set()
        deadline = time.monotonic() + 5
        while w.writer_waits == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        raise RuntimeError("a bug in the warmer")

    monkeypatch.setattr(w, "_fill", broken_fill)
    with caplog.at_level(logging.ERROR, logger="rmqkit.store.warm"):
        written = await put_bodies(s, 30)  # fills start once the writer has written a window
        await check_for(started.is_set, message="no fill started")
        # A chunk is 4 KiB here: 60 records of about 330 bytes run into the broken fill.
        written += await put_bodies(s, 60)
    assert w.writer_waits >= 1  # it did wait for the fill that failed
    assert "the CommitLog warmer stopped" in caplog.text
    assert "a bug in the warmer" in caplog.text
    assert not w.running
    written += await put_bodies(s, 30)
    assert all(mf.warmer is None for mf in s.commit_log.queue.files)
    assert_readable(s, written)
    await s.stop()


async def test_a_quiet_writer_gets_a_small_lead(
    make_store: Callable[..., FileMessageStore],
) -> None:
    """The lead grows with what the writer wrote: about 1 MB written, not 64 MiB filled ahead."""
    s = make_store(mapped_file_size_commit_log_bytes=1 << 30)  # 16 MiB chunks, 64 MiB lead
    await s.start()
    w = warmer_of(s)
    written = await put_bodies(s, 3000)
    await check_for(lambda: w.filled_bytes > 0, message="the warmer filled nothing")
    await check_for(lambda: w._filling_to == w._warmed, message="a fill never finished")
    last = s.commit_log.queue.last()
    assert last is not None
    assert w._warmed - last.write_pos <= last.write_pos + 256 * 1024
    assert w.filled_bytes < 4 << 20
    assert_readable(s, written)
    await s.stop()


@pytest.mark.parametrize("flush", ["ASYNC_FLUSH", "SYNC_FLUSH"])
async def test_no_warmer_unless_asked(
    make_store: Callable[..., FileMessageStore], flush: str
) -> None:
    s = make_store(warm_mapped_file_enable=False, flush_disk_type=flush)
    await s.start()
    assert s.warmer is None
    written = await put_bodies(s, 400)
    assert all(mf.warmer is None for mf in s.commit_log.queue.files)
    assert_readable(s, written)
    await s.stop()


async def test_a_slave_does_not_warm(make_store: Callable[..., FileMessageStore]) -> None:
    s = make_store()
    s.role = "SLAVE"
    await s.start()
    assert s.warmer is None
    await s.stop()


async def test_under_sync_flush_it_reads_ahead_and_dirties_nothing(
    make_store: Callable[..., FileMessageStore],
) -> None:
    """Allocated and read, not zero-filled: the pages ahead stay clean, so no group commit
    writes them."""
    s = make_store(flush_disk_type="SYNC_FLUSH", mapped_file_size_commit_log_bytes=1 << 30)
    await s.start()
    w = warmer_of(s)
    assert not w.zero_fill
    written = await put_bodies(s, 500, size=4000)  # about 2 MB: a lead of about as much
    await check_for(lambda: w.filled_bytes > 1 << 20, message="the warmer read little")
    await check_for(lambda: w._filling_to == w._warmed, message="a read never finished")
    last = s.commit_log.queue.last()
    assert last is not None
    assert w._warmed - last.write_pos > 2 * PREFAULT_BYTES  # well past the writer's own window
    # Linux counts a page as written by the thread that dirties it. The warmer dirtied none of
    # the megabytes it warmed (zero-filling would have dirtied them all): at most a few pages
    # of file-system metadata (block bitmaps, extent tree) that `posix_fallocate` changes.
    assert w._thread is not None and w._thread.native_id is not None
    assert _bytes_dirtied_by(w._thread.native_id) <= 64 * 1024 < w.filled_bytes // 16
    # Its blocks are allocated all the same: a full disk refuses a send, it cannot SIGBUS.
    assert os.stat(last.path).st_blocks * 512 >= w._warmed
    assert_readable(s, written)
    await s.stop()
