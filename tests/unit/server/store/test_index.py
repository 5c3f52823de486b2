"""IndexFile and IndexService: keys, chains, time ranges, new files when full, recovery."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rmqkit.protocol.record import decode_records
from rmqkit.server.store import FileMessageStore
from rmqkit.server.store.index_file import HEADER, IndexFile, key_hash

from .conftest import msg, small_settings

FAR = 2**62


@pytest.fixture(params=[True, False], ids=["builder", "event-loop"])
def index_process(request: pytest.FixtureRequest) -> bool:
    """Every store test here runs with the index builder process and without it."""
    return bool(request.param)


@pytest.fixture
def make_store(tmp_path: Path, index_process: bool) -> Callable[..., FileMessageStore]:
    def make(**overrides: Any) -> FileMessageStore:
        settings = small_settings(
            tmp_path / "store", message_index_process=index_process, **overrides
        )
        return FileMessageStore(settings)

    return make


def test_index_file_chains_keys_that_share_a_slot(tmp_path: Path) -> None:
    f = IndexFile(tmp_path / "20260101000000000", slots=1, entries=10, create=True)
    assert HEADER.size == 40
    t0 = 1_700_000_000_000
    f.put("T#a", 100, t0)
    f.put("T#b", 200, t0 + 1000)
    f.put("T#a", 300, t0 + 2000)
    assert f.lookup("T#a", 10, 0, FAR) == [300, 100]  # newest first, "b" skipped by hash
    assert f.lookup("T#a", 1, 0, FAR) == [300]
    assert f.lookup("T#a", 10, t0 + 1500, FAR) == [300]  # time range
    assert (f.count, f.begin_phy_offset, f.end_phy_offset) == (3, 100, 300)
    f.close()
    again = IndexFile(tmp_path / "20260101000000000", slots=1, entries=10, create=False)
    assert again.lookup("T#b", 10, 0, FAR) == [200] and again.count == 3
    again.close()


def test_index_file_reports_full(tmp_path: Path) -> None:
    f = IndexFile(tmp_path / "x1", slots=4, entries=3, create=True)
    assert f.put("k1", 1, 0) and f.put("k2", 2, 0)
    assert f.full and not f.put("k3", 3, 0)  # entry numbers start at 1: 2 usable of 3
    f.close()
    assert key_hash("k") == key_hash("k") >= 0


def test_put_entries_takes_what_fits_and_counts_it_in_the_header(tmp_path: Path) -> None:
    f = IndexFile(tmp_path / "x2", slots=4, entries=4, create=True)
    entries = [(key_hash(f"T#{k}"), 100 * i, 5_000 + 1_000 * i) for i, k in enumerate("abcde")]
    assert f.put_entries(entries) == 3  # three usable entries of four
    assert f.full and f.count == 3
    assert f.put_entries(entries, 3) == 3
    assert HEADER.unpack_from(f.file.mm, 0) == f.header
    assert f.header[:4] == (5_000, 7_000, 0, 200)  # first and last entry that fit
    assert f.lookup("T#c", 4, 0, 10_000) == [200]
    assert f.lookup("T#d", 4, 0, 10_000) == []
    f.close()


def test_the_slots_of_the_file_being_written_stay_in_memory_until_stored(tmp_path: Path) -> None:
    f = IndexFile(tmp_path / "x3", slots=8, entries=64, create=True)
    f.put_entries([(key_hash(f"T#k{i}"), 100 * i, 5_000) for i in range(20)])
    slot_area = slice(HEADER.size, f.entries_at)
    assert not any(f.file.mm[slot_area])  # entries and header are in the file, slots not yet
    assert HEADER.unpack_from(f.file.mm, 0) == f.header
    assert f.lookup("T#k7", 4, 0, FAR) == [700]  # answered from memory
    f.store_slots()
    stored = bytes(f.file.mm[slot_area])
    assert any(stored)
    f.put_entries([(key_hash("T#late"), 9_000, 6_000)])  # loads them again, and goes on
    assert bytes(f.file.mm[slot_area]) == stored
    f.seal()
    assert f.sealed and bytes(f.file.mm[slot_area]) != stored  # the late key's slot
    f.close()
    again = IndexFile(tmp_path / "x3", slots=8, entries=64, create=False)
    assert again.lookup("T#k7", 4, 0, FAR) == [700]
    assert again.lookup("T#late", 4, 0, FAR) == [9_000]
    again.close()


async def test_a_clean_stop_stores_the_slots_and_a_restart_finds_every_key(
    tmp_path: Path, index_process: bool
) -> None:
    # 200 index entries a file: two files and a half
    s = small_settings(tmp_path / "store", message_index_process=index_process)
    store = FileMessageStore(s)
    await store.start()
    for i in range(250):
        await store.put_message(msg(KEYS=f"order-{i}", UNIQ_KEY=f"U{i:04d}"))
    store.reput.drain()  # type: ignore[union-attr]
    await store.stop()
    again = FileMessageStore(s)
    await again.start()
    try:
        assert again.recovery is not None and not again.recovery.crashed
        assert len(list(s.index_dir.iterdir())) == 3
        for i in range(250):
            for key in (f"order-{i}", f"U{i:04d}"):
                assert (
                    len((await again.query_message("T", key, 4, 0, FAR)).physical_offsets) == 1
                ), key
    finally:
        await again.stop()


async def test_query_by_key_and_unique_key(store: FileMessageStore) -> None:
    for i in range(30):
        await store.put_message(msg(KEYS=f"order-{i % 10} extra-{i}", UNIQ_KEY=f"U{i:04d}"))
    await store.put_message(msg(topic="Other", KEYS="order-1"))
    store.reput.drain()  # type: ignore[union-attr]
    now = int(time.time() * 1000)
    got = decode_records(
        b"".join((await store.query_message("T", "order-1", 32, 0, now + 1000)).records)
    )
    assert sorted(m.keys[1] for m in got) == ["extra-1", "extra-11", "extra-21"]
    assert all(m.topic == "T" for m in got)
    uniq = await store.query_message("T", "U0007", 32, 0, now + 1000)
    assert [m.uniq_key for m in decode_records(b"".join(uniq.records))] == ["U0007"]
    assert (await store.query_message("T", "missing", 32, 0, now + 1000)).records == []
    assert (
        await store.query_message("T", "order-1", 2, 0, now + 1000)
    ).physical_offsets.__len__() == 2
    # Index files roll when full (200 entries each in these tests): 61 keys fit in one.
    for i in range(200):
        await store.put_message(msg(KEYS=f"bulk-{i}"))
    store.reput.drain()  # type: ignore[union-attr]
    found = await store.query_message("T", "bulk-199", 5, 0, now + 10_000)
    assert len(found.records) == 1
    assert len(list(store.settings.index_dir.iterdir())) >= 2  # indexed by the query's time
    assert len((await store.query_message("T", "order-1", 32, 0, now + 10_000)).records) == 3


async def test_index_survives_restart(make_store) -> None:  # type: ignore[no-untyped-def]
    s = make_store()
    await s.start()
    await s.put_message(msg(KEYS="kept"))
    await s.stop()
    s2 = make_store()
    await s2.start()
    assert len((await s2.query_message("T", "kept", 5, 0, FAR)).records) == 1
    await s2.put_message(msg(KEYS="kept"))
    s2.reput.drain()
    assert len((await s2.query_message("T", "kept", 5, 0, FAR)).records) == 2
    await s2.stop()
