"""The store's side of replication: reading whole records on a master, appending them on a slave."""

from __future__ import annotations

from pathlib import Path

import pytest

from rmqkit.protocol.codes import BLANK_MAGIC
from rmqkit.protocol.record import BLANK
from rmqkit.server.store import FileMessageStore, PutStatus
from rmqkit.server.store.commit_log import ReplicaMismatchError

from .conftest import MakeStore, fill, msg

SEGMENT = 64 * 1024


def copy(master: FileMessageStore, slave: FileMessageStore, batch: int) -> list[tuple[int, int]]:
    """Replicate everything `slave` lacks in chunks of at most `batch`; the (offset, size)s."""
    chunks = []
    offset = slave.max_physical_offset or master.min_physical_offset
    while offset < master.max_physical_offset:
        view = master.read_replica(offset, batch)
        assert view is not None and len(view), offset
        chunks.append((offset, len(view)))
        offset = slave.append_replicated(offset, bytes(view))
        view.release()
    return chunks


def segment_files(store: FileMessageStore) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.settings.commit_log_dir.iterdir())}


def queue_contents(store: FileMessageStore, queues: int = 4) -> dict[int, list[tuple[int, bytes]]]:
    assert store.reput is not None
    store.reput.drain()
    out = {}
    for q in range(queues):
        got = store.get_message("T", q, 0, 10_000)
        out[q] = list(zip(got.queue_offsets, [bytes(r) for r in got.records], strict=True))
    return out


async def test_a_copied_log_is_byte_identical_and_dispatched_on_the_slave(
    master: FileMessageStore, slave: FileMessageStore
) -> None:
    await fill(master, 250)
    assert len(master.commit_log.queue.files) >= 4
    copy(master, slave, 4096)
    assert slave.max_physical_offset == master.max_physical_offset
    assert segment_files(slave) == segment_files(master)
    assert queue_contents(slave) == queue_contents(master)
    assert (await slave.query_message("T", "k7", 5, 0, 2**62)).physical_offsets == [
        (await master.query_message("T", "k7", 5, 0, 2**62)).physical_offsets[0]
    ]


async def test_chunks_end_on_record_boundaries_and_never_cross_a_segment(
    master: FileMessageStore,
) -> None:
    await fill(master, 150)
    offset = 0
    while offset < master.max_physical_offset:
        view = master.read_replica(offset, 3000)
        assert view is not None
        data = bytes(view)
        view.release()
        assert offset // SEGMENT == (offset + len(data) - 1) // SEGMENT
        sizes = []
        pos = 0
        while pos < len(data):
            size, magic = BLANK.unpack_from(data, pos)
            if magic == BLANK_MAGIC:  # a blank tail reaches the segment end
                assert offset + pos + size == (offset // SEGMENT + 1) * SEGMENT
            sizes.append(size)
            pos += size
        assert pos == len(data)
        assert len(data) <= 3000 or len(sizes) == 1
        offset += len(data)


async def test_a_record_larger_than_the_batch_comes_alone(master: FileMessageStore) -> None:
    await fill(master, 20)
    offset = 0
    chunks = 0
    while offset < master.max_physical_offset:
        view = master.read_replica(offset, 100)
        assert view is not None
        assert BLANK.unpack_from(view, 0)[0] == len(view)
        offset += len(view)
        chunks += 1
        view.release()
    assert chunks == 20


async def test_reading_where_no_record_starts(master: FileMessageStore) -> None:
    await fill(master, 3)
    end = master.max_physical_offset
    assert master.read_replica(end, 4096) == memoryview(b"")
    assert master.read_replica(end + 1, 4096) is None
    assert master.read_replica(5, 4096) is None  # inside the first record


async def test_an_append_must_start_where_the_slave_log_ends(
    master: FileMessageStore, slave: FileMessageStore
) -> None:
    await fill(master, 10)
    copy(master, slave, 2000)
    await fill(master, 2)
    end = slave.max_physical_offset
    view = master.read_replica(end, 4096)
    assert view is not None
    with pytest.raises(ReplicaMismatchError, match=f"this CommitLog ends at {end}"):
        slave.append_replicated(end + 1, bytes(view))
    assert slave.max_physical_offset == end


async def test_an_empty_slave_starts_at_any_segment_start_of_the_master(
    master: FileMessageStore, make_store: MakeStore
) -> None:
    await fill(master, 200)
    start = 2 * SEGMENT
    late = make_store("late", "SLAVE")
    await late.start()
    try:
        copy_from = master.read_replica(start, 10**6)
        assert copy_from is not None
        late.append_replicated(start, bytes(copy_from))
        copy_from.release()
        copy(master, late, 8192)
        assert late.min_physical_offset == start
        assert segment_files(late) == {
            k: v for k, v in segment_files(master).items() if int(k) >= start
        }
    finally:
        await late.stop()


async def test_an_empty_slave_refuses_a_start_off_its_segment_grid(
    master: FileMessageStore, slave: FileMessageStore
) -> None:
    await fill(master, 3)
    first = master.read_replica(0, 10**6)
    assert first is not None
    with pytest.raises(ReplicaMismatchError, match="mappedFileSizeCommitLog"):
        slave.append_replicated(1024, bytes(first))
    first.release()


@pytest.mark.parametrize(("master_kib", "slave_kib"), [(64, 128), (128, 64)])
async def test_different_segment_sizes_are_named(
    make_store: MakeStore, master_kib: int, slave_kib: int
) -> None:
    m = make_store("m", mapped_file_size_commit_log_bytes=master_kib * 1024)
    s = make_store("s", "SLAVE", mapped_file_size_commit_log_bytes=slave_kib * 1024)
    await m.start()
    await s.start()
    try:
        await fill(m, 200)
        with pytest.raises(ReplicaMismatchError, match="mappedFileSizeCommitLog differs"):
            copy(m, s, 4096)
    finally:
        await s.stop()
        await m.stop()


async def test_a_corrupt_record_is_refused_and_nothing_of_its_chunk_kept(
    master: FileMessageStore, slave: FileMessageStore
) -> None:
    await fill(master, 10)
    view = master.read_replica(0, 100_000)
    assert view is not None
    data = bytearray(view)
    view.release()
    data[-50] ^= 0xFF  # inside the last record's body or properties
    with pytest.raises(ReplicaMismatchError, match="not valid"):
        slave.append_replicated(0, bytes(data))
    assert slave.max_physical_offset == 0


async def test_a_slave_store_refuses_ordinary_puts(slave: FileMessageStore) -> None:
    r = await slave.put_message(msg())
    assert r.status is PutStatus.SERVICE_NOT_AVAILABLE and "replication" in r.remark
    r = await slave.put_messages([msg(), msg()])
    assert r.status is PutStatus.SERVICE_NOT_AVAILABLE


async def test_a_torn_append_recovers_to_the_last_whole_chunk_and_resumes(
    master: FileMessageStore, make_store: MakeStore, tmp_path: Path
) -> None:
    await fill(master, 40)
    s = make_store("torn", "SLAVE")
    await s.start()
    chunks = copy(master, s, 2048)
    last_offset, _ = chunks[-1]
    # A slave killed inside the last copy leaves that part's first 8 bytes unwritten.
    mf = s.commit_log.queue.find(last_offset)
    assert mf is not None
    mf.mm[last_offset - mf.start : last_offset - mf.start + 8] = bytes(8)
    await s.stop()
    (tmp_path / "torn" / "checkpoint").unlink()
    (tmp_path / "torn" / "abort").touch()
    s = make_store("torn", "SLAVE")
    await s.start()
    try:
        assert s.recovery is not None and s.max_physical_offset == last_offset
        copy(master, s, 2048)
        assert segment_files(s) == segment_files(master)
        assert queue_contents(s) == queue_contents(master)
    finally:
        await s.stop()
