"""ConsumeQueue: entries, file roll, tag filtering, offsets by time, pull statuses."""

from __future__ import annotations

from pathlib import Path

from rmqkit.common.hashing import tags_code
from rmqkit.protocol.record import decode_records
from rmqkit.server.store import FileMessageStore, GetStatus, TagFilter
from rmqkit.server.store.consume_queue import CQ_ENTRY, ConsumeQueue

from .conftest import msg


def test_entry_layout_is_20_bytes() -> None:
    assert CQ_ENTRY.size == 20
    assert CQ_ENTRY.pack(1, 2, -3) == (1).to_bytes(8, "big") + (2).to_bytes(4, "big") + (
        -3
    ).to_bytes(8, "big", signed=True)


def test_put_rolls_files_and_recover_cuts_at_a_physical_offset(tmp_path: Path) -> None:
    cq = ConsumeQueue("T", 0, tmp_path / "T" / "0", file_entries=10)
    cq.load()
    for i in range(25):
        assert cq.put(i, i * 100, 100, 7)
    assert (cq.min_offset, cq.max_offset) == (0, 25)
    assert len(cq.files.files) == 3
    assert cq.put(24, 2400, 100, 7) is False  # same entry again: a no-op
    assert cq.entry(12) == (1200, 100, 7)
    cq.recover(keep_below_physical=1250)  # entries 0..11 end at or before 1200
    assert cq.max_offset == 12
    assert len(cq.files.files) == 2
    cq.close()
    again = ConsumeQueue("T", 0, tmp_path / "T" / "0", file_entries=10)
    again.load()
    again.recover(keep_below_physical=10**9)
    assert again.max_offset == 12 and again.entry(11) == (1100, 100, 7)
    again.close()


def test_a_queue_that_starts_late_treats_earlier_slots_as_holes(tmp_path: Path) -> None:
    cq = ConsumeQueue("T", 0, tmp_path / "q", file_entries=10)
    cq.load()
    cq.put(13, 500, 10, 0)
    assert (cq.min_offset, cq.max_offset) == (13, 14)
    cq.close()
    again = ConsumeQueue("T", 0, tmp_path / "q", file_entries=10)
    again.load()
    again.recover(10**9)
    assert (again.min_offset, again.max_offset) == (13, 14)
    again.close()


async def test_pull_statuses_follow_rocketmq(store: FileMessageStore) -> None:
    assert store.get_message("T", 0, 0, 32).status is GetStatus.NO_MATCHED_LOGIC_QUEUE
    for _ in range(3):
        await store.put_message(msg())
    store.reput.drain()  # type: ignore[union-attr]
    g = store.get_message("T", 0, 0, 32)
    assert g.status is GetStatus.FOUND and g.message_count == 3
    assert (g.next_begin_offset, g.min_offset, g.max_offset) == (3, 0, 3)
    assert [m.queue_offset for m in decode_records(g.body())] == [0, 1, 2]
    one = store.get_message("T", 0, 3, 32)
    assert (one.status, one.next_begin_offset) == (GetStatus.OFFSET_OVERFLOW_ONE, 3)
    bad = store.get_message("T", 0, 99, 32)
    assert (bad.status, bad.next_begin_offset) == (GetStatus.OFFSET_OVERFLOW_BADLY, 0)
    assert store.get_message("T", 0, 1, 1).queue_offsets == [1]


async def test_max_count_and_max_bytes_cap_one_pull(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store(
        max_transfer_count_on_message_in_memory=4, max_transfer_bytes_on_message_in_memory=2048
    )
    await s.start()
    for _ in range(10):
        await s.put_message(msg(body=b"z" * 600))
    s.reput.drain()
    assert s.get_message("T", 0, 0, 32).message_count == 2  # a third ~700-byte record passes 2048
    big = s.get_message("T", 0, 0, 1)
    assert big.message_count == 1
    await s.stop()


async def test_tag_filter_uses_the_hash_code(store: FileMessageStore) -> None:
    for i in range(9):
        await store.put_message(msg(TAGS=["a", "b", "c"][i % 3]))
    await store.put_message(msg())  # no tag: code 0
    store.reput.drain()  # type: ignore[union-attr]
    only_b = TagFilter(frozenset({tags_code("b")}))
    g = store.get_message("T", 0, 0, 32, only_b)
    assert [m.tags for m in decode_records(g.body())] == ["b", "b", "b"]
    assert g.next_begin_offset == 10
    none = store.get_message("T", 0, 0, 32, TagFilter(frozenset({tags_code("zzz")})))
    assert none.status is GetStatus.NO_MATCHED_MESSAGE and none.next_begin_offset == 10
    assert store.get_message("T", 0, 0, 32, TagFilter(None)).message_count == 10


async def test_offset_by_time_and_store_times(make_store) -> None:  # type: ignore[no-untyped-def]
    now = [1_000_000]
    s = make_store()
    s.clock_ms = lambda: now[0]
    await s.start()
    for _ in range(5):
        await s.put_message(msg())
        now[0] += 1000
    s.reput.drain()
    assert s.get_offset_by_time("T", 0, 0) == 0
    assert s.get_offset_by_time("T", 0, 1_002_000) == 2
    assert s.get_offset_by_time("T", 0, 1_002_500) == 3
    assert s.get_offset_by_time("T", 0, 9_999_999) == 5
    assert s.get_earliest_store_time("T", 0) == 1_000_000
    assert s.get_store_time("T", 0, 4) == 1_004_000
    assert s.get_store_time("T", 0, 5) == -1
    await s.stop()
