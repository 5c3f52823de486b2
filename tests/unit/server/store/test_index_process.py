"""The index builder process: what it indexes, what it records, and what happens when it dies.

`test_index.py` runs its query tests both ways (builder and event loop); these are about the
builder alone: its files against the event loop's, read-your-writes with no dispatch between,
the checkpoint's mark, retention, a builder that dies or does not start, and a CommitLog that
ends inside a record (a slave's, mid-replication).
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from rmqkit.errors import StoreError
from rmqkit.server.store import FileMessageStore, index_process, store_index
from rmqkit.server.store.checkpoint import CheckpointFile
from rmqkit.server.store.dispatch import DispatchRequest, dispatch_request
from rmqkit.server.store.index_builder import RUN, CommitLogTail
from rmqkit.server.store.index_file import Entry
from rmqkit.testing import check_for

from .conftest import msg, small_settings

FAR = 2**62
T0 = 1_763_800_000_000


def _store(root: Path, *, process: bool = True) -> FileMessageStore:
    settings = small_settings(root, message_index_process=process)
    return FileMessageStore(settings, clock_ms=lambda: T0)  # the same records in every store


async def _fill(store: FileMessageStore, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        keys = f"order-{i % 7} extra-{i}" if i % 3 else f"order-{i % 7}"
        await store.put_message(msg(queue_id=i % 4, KEYS=keys, UNIQ_KEY=f"U{i:05d}"))


async def test_the_builder_writes_the_files_the_event_loop_writes(tmp_path: Path) -> None:
    files: dict[bool, list[bytes]] = {}
    for process in (True, False):
        s = _store(tmp_path / str(process), process=process)
        await s.start()
        assert (s.index.process is not None) is process
        await _fill(s, 700)  # 199 keys a file: several files, the last one part full
        await s.stop()
        files[process] = [p.read_bytes() for p in sorted(s.settings.index_dir.iterdir())]
    assert len(files[True]) >= 5
    assert files[True] == files[False]


async def test_a_query_finds_what_was_stored_just_before_it(tmp_path: Path) -> None:
    s = _store(tmp_path)
    await s.start()
    try:
        for i in range(40):
            await s.put_message(msg(KEYS=f"k{i}"))
            assert len((await s.query_message("T", f"k{i}", 4, 0, FAR)).records) == 1, i
        r = await s.put_messages([msg(queue_id=1, KEYS=f"b{i}") for i in range(30)])
        assert r.stored
        for i in range(30):
            assert len((await s.query_message("T", f"b{i}", 4, 0, FAR)).records) == 1, i
    finally:
        await s.stop()


async def test_small_runs_are_announced_together_and_a_large_one_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One send at a time wakes the builder once per ANNOUNCE_AFTER_S, not once per send;
    ANNOUNCE_AT_BYTES waiting go on the loop's next turn. (No builder: the lines it would get.)"""
    p = index_process.IndexProcess(small_settings(tmp_path), whole_end=lambda: 0)
    lines: list[bytes] = []
    monkeypatch.setattr(p, "_write", lines.append)
    monkeypatch.setattr(index_process, "ANNOUNCE_AFTER_S", 0.05)

    def run(offset: int, size: int) -> list[DispatchRequest]:
        return [dispatch_request("T", 0, offset, size, T0, 0, 0, 0, "")]

    for i in range(100):
        p.dispatch(run(i * 1000, 1000))
        await asyncio.sleep(0)  # a turn of the loop between sends
    assert lines == []
    await check_for(lambda: lines, message="the small runs were never announced")
    assert lines == [b'["u",100000]\n']

    p.dispatch(run(100_000, index_process.ANNOUNCE_AT_BYTES))
    await asyncio.sleep(0)
    assert lines[1:] == [b'["u",%d]\n' % (100_000 + index_process.ANNOUNCE_AT_BYTES)]

    p.dispatch(run(500_000, 1000))
    assert p._announcing is not None  # a timer
    p._announce()  # as a query does first: the timer goes with it
    assert p._announcing is None
    assert lines[2:] == [b'["u",501000]\n']


async def test_the_checkpoint_records_how_far_the_builder_got(tmp_path: Path) -> None:
    s = _store(tmp_path)
    await s.start()
    try:
        await _fill(s, 100)
        await s.query_message("T", "order-1", 1, 0, FAR)  # the builder is at the log's end
        await s.flush_logics()
        cp = CheckpointFile(s.settings.checkpoint_path).read()
        assert cp is not None and cp.index is not None
        assert cp.index.until == s.commit_log.max_offset
        newest = max(int(p.name) for p in s.settings.index_dir.iterdir())
        assert cp.index.file_stamp == newest and cp.index.header[5] > 1
        await _fill(s, 10, start=100)
        end = s.commit_log.max_offset
    finally:
        await s.stop()
    cp = CheckpointFile(s.settings.checkpoint_path).read()
    assert cp is not None and cp.index is not None and cp.index.until == end  # all, at a stop


async def test_a_dead_builder_fails_queries_and_the_next_start_rebuilds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store stops while it waits to start another builder."""
    monkeypatch.setattr(store_index, "RESTART_DELAYS_S", (3600.0,))
    s = _store(tmp_path)
    await s.start()
    await _fill(s, 300)
    await s.flush_logics()  # a mark to go back to
    kept = s.index.kept
    process = s.index.process
    assert process is not None and process.proc is not None and kept is not None
    process.proc.send_signal(signal.SIGKILL)
    await check_for(lambda: process.gone is not None, message="the builder's death unnoticed")
    refused = r"index builder is not running: exited with code -9 .*another one is being started"
    with pytest.raises(StoreError, match=refused):
        await s.query_message("T", "order-1", 4, 0, FAR)
    await _fill(s, 50, start=300)  # the store goes on
    await s.flush_logics()
    cp = CheckpointFile(s.settings.checkpoint_path).read()
    assert cp is not None and cp.index == kept  # the last mark the builder synced
    await s.stop()
    assert s.settings.abort_path.exists()  # the index needs recovery

    again = _store(tmp_path)
    await again.start()
    try:
        assert again.recovery is not None and again.recovery.crashed
        for i in range(350):
            r = await again.query_message("T", f"U{i:05d}", 4, 0, FAR)
            assert len(r.records) == 1, i
    finally:
        await again.stop()


async def test_a_dead_builder_is_replaced_and_the_new_one_catches_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed in the middle of a run of sends: another builder puts the files back to the last
    checkpoint's mark and indexes the rest, also what was sent while none ran."""
    monkeypatch.setattr(store_index, "RESTART_DELAYS_S", (0.2,))
    s = _store(tmp_path)
    await s.start()
    try:
        await _fill(s, 200)
        await s.flush_logics()  # the mark the files go back to
        await _fill(s, 100, start=200)  # indexed past the mark, not synced
        await s.query_message("T", "order-1", 1, 0, FAR)
        process = s.index.process
        assert process is not None and process.proc is not None
        first = process.proc.pid
        process.proc.send_signal(signal.SIGKILL)
        await check_for(lambda: process.gone is not None, message="the builder's death unnoticed")
        await _fill(s, 50, start=300)  # while none runs
        await check_for(lambda: process.gone is None, message="no new builder", timeout=30)
        assert s.index.process is process and process.proc.pid != first
        for i in range(350):
            assert len((await s.query_message("T", f"U{i:05d}", 4, 0, FAR)).records) == 1, i
        assert len((await s.query_message("T", "order-3", 400, 0, FAR)).records) == 50
        await _fill(s, 10, start=350)  # and it goes on
        assert len((await s.query_message("T", "U00359", 4, 0, FAR)).records) == 1
    finally:
        await s.stop()
    assert not s.settings.abort_path.exists()  # the new builder stopped cleanly

    again = _store(tmp_path)
    await again.start()
    try:
        assert again.recovery is not None and not again.recovery.crashed
        assert len((await again.query_message("T", "order-3", 400, 0, FAR)).records) == 51
    finally:
        await again.stop()


async def test_a_builder_that_keeps_dying_is_started_less_and_less_often(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(store_index, "RESTART_DELAYS_S", (0.01, 0.02, 3600.0))
    s = _store(tmp_path)
    await s.start()
    await _fill(s, 20)
    process = s.index.process
    assert process is not None and process.proc is not None
    monkeypatch.setattr(index_process, "MODULE", "rmqkit.no_such_module")  # the next ones fail
    process.proc.send_signal(signal.SIGKILL)
    waits = "it starts in 3600 s"
    await check_for(lambda: waits in caplog.text, message="no third wait", timeout=30)
    assert caplog.text.count("the index builder did not start") == 2
    assert "it starts in 0 s" in caplog.text  # the first two waits, rounded
    with pytest.raises(StoreError, match=r"not running: did not start .*another one is being"):
        await s.query_message("T", "order-1", 4, 0, FAR)
    await s.stop()  # does not wait the hour
    assert s.settings.abort_path.exists()


async def test_retention_deletes_the_builders_old_files(tmp_path: Path) -> None:
    s = _store(tmp_path)
    await s.start()
    try:
        await _fill(s, 400)
        await s.query_message("T", "order-1", 1, 0, FAR)
        index_dir = s.settings.index_dir
        assert len(list(index_dir.iterdir())) >= 4
        s.index.delete_below(s.commit_log.max_offset)  # what retention asks
        await check_for(lambda: len(list(index_dir.iterdir())) == 1, message="files kept")
        assert len((await s.query_message("T", "U00399", 4, 0, FAR)).records) == 1
    finally:
        await s.stop()


async def test_a_builder_that_cannot_start_stops_the_store_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(index_process, "MODULE", "rmqkit.no_such_module")
    s = _store(tmp_path)
    with pytest.raises(StoreError, match="the index builder did not start"):
        await s.start()


def _phys(entries: list[Entry]) -> list[int]:
    return sorted(set(phy for _, phy, _ in entries))


async def test_the_tail_reads_whole_records_only(tmp_path: Path) -> None:
    s = _store(tmp_path, process=False)
    await s.start()
    await _fill(s, 5)
    end = s.commit_log.max_offset
    await s.stop()
    directory, segment = s.settings.commit_log_dir, s.settings.mapped_file_size_commit_log_bytes
    whole = CommitLogTail(directory, segment, 0)
    entries: list[Entry] = []
    assert whole.read(end, RUN, 0, entries) == 5 and whole.next_offset == end
    starts = _phys(entries)
    assert len(starts) == 5 and len(entries) == 5 + 5 + 3  # UNIQ_KEY, KEYS (two in 3 of them)
    whole.close()
    tail = CommitLogTail(directory, segment, 0)
    cut = starts[2] + 10  # a slave's log that ends inside the third record
    entries = []
    assert tail.read(cut, RUN, 0, entries) == 2 and _phys(entries) == starts[:2]
    assert tail.next_offset == starts[2]
    assert tail.read(cut, RUN, 0, entries) == 0  # the third record is there in part only
    entries = []
    assert tail.read(end, RUN, starts[3], entries) == 3  # read, but the third is skipped
    assert _phys(entries) == starts[3:]
    tail.close()
