"""One contract, two stores: FileMessageStore and MemoryMessageStore answer alike."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from rmqkit.common.hashing import tags_code
from rmqkit.common.properties import encode_properties
from rmqkit.protocol.record import decode_records
from rmqkit.server.store import (
    FileMessageStore,
    GetStatus,
    MessageToStore,
    PutStatus,
    StoreSettings,
    TagFilter,
)
from rmqkit.server.store.dispatch import DispatchRequest
from rmqkit.server.store.memory_store import MemoryMessageStore
from rmqkit.server.store.store_api import MessageStore

CLOCK = 1_750_000_000_000
FAR = 2**62


def _file(root: Path) -> FileMessageStore:
    settings = StoreSettings(
        store_path_root_dir=root,
        mapped_file_size_commit_log_bytes=128 * 1024,
        mapped_file_size_consume_queue_bytes=20 * 64,
        max_message_size_bytes=32 * 1024,
        max_hash_slot_num=128,
        max_index_num=512,
    )
    return FileMessageStore(settings, clock_ms=lambda: CLOCK)


def _memory(_: Path) -> MemoryMessageStore:
    return MemoryMessageStore(max_message_size_bytes=32 * 1024, clock_ms=lambda: CLOCK)


@pytest.fixture(params=[_file, _memory], ids=["file", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MessageStore]:
    s = request.param(tmp_path)
    await s.start()
    yield s
    await s.stop()


def m(queue_id: int = 0, body: bytes = b"body", topic: str = "T", **props: str) -> MessageToStore:
    return MessageToStore(topic, queue_id, body, encode_properties(props), born_timestamp=CLOCK)


def settle(s: MessageStore) -> None:
    reput = getattr(s, "reput", None)
    if reput is not None:
        reput.drain()


async def test_offsets_ids_and_pull_statuses(store: MessageStore) -> None:
    assert store.get_message("T", 0, 0, 32).status is GetStatus.NO_MATCHED_LOGIC_QUEUE
    results = [await store.put_message(m(queue_id=i % 2, body=bytes([i]) * 10)) for i in range(6)]
    settle(store)
    assert [r.queue_offset for r in results] == [0, 0, 1, 1, 2, 2]
    assert store.get_max_offset("T", 0) == 3 and store.get_min_offset("T", 0) == 0
    g = store.get_message("T", 1, 1, 32)
    msgs = decode_records(g.body(), check_crc=True)
    assert [x.body for x in msgs] == [bytes([3]) * 10, bytes([5]) * 10]
    assert [x.offset_msg_id for x in msgs] == [results[3].msg_id, results[5].msg_id]
    assert (g.status, g.next_begin_offset, g.max_offset) == (GetStatus.FOUND, 3, 3)
    assert store.get_message("T", 1, 3, 32).status is GetStatus.OFFSET_OVERFLOW_ONE
    assert store.get_message("T", 1, 7, 32).status is GetStatus.OFFSET_OVERFLOW_BADLY
    assert store.max_physical_offset == sum(r.size for r in results)


async def test_tag_filtering(store: MessageStore) -> None:
    for t in ["a", "b", "a", "c"]:
        await store.put_message(m(TAGS=t))
    settle(store)
    g = store.get_message("T", 0, 0, 32, TagFilter(frozenset({tags_code("a"), tags_code("c")})))
    assert [x.tags for x in decode_records(g.body())] == ["a", "a", "c"]
    assert g.queue_offsets == [0, 2, 3] and g.next_begin_offset == 4


async def test_batches(store: MessageStore) -> None:
    r = await store.put_messages([m(body=b"1"), m(body=b"2"), m(body=b"3")])
    settle(store)
    assert r.ok and r.message_count == 3 and len(r.msg_ids) == 3 and r.queue_offset == 0
    assert [x.body for x in decode_records(store.get_message("T", 0, 0, 32).body())] == [
        b"1",
        b"2",
        b"3",
    ]


async def test_put_each_stores_each_message_as_put_message_would(store: MessageStore) -> None:
    msgs = [
        m(queue_id=0, body=b"a", KEYS="k0"),
        m(topic="bad topic!", body=b"b"),
        m(queue_id=1, body=b"c"),
        m(queue_id=0, body=b"x" * (32 * 1024 + 1)),
        m(queue_id=0, body=b"d", DELAY="2"),
        m(queue_id=0, body=b"e"),
    ]
    results = await store.put_each(msgs)
    settle(store)
    assert [r.status for r in results] == [
        PutStatus.OK, PutStatus.MESSAGE_ILLEGAL, PutStatus.OK, PutStatus.MESSAGE_ILLEGAL,
        PutStatus.OK, PutStatus.OK,
    ]  # fmt: skip
    assert "bad topic!" in results[1].remark and "maxMessageSize" in results[3].remark
    assert [r.queue_offset for r in results if r.ok] == [0, 0, 0, 1]  # the delayed one: its own
    got = decode_records(store.get_message("T", 0, 0, 32).body())
    assert [x.body for x in got] == [b"a", b"e"] and got[0].offset_msg_id == results[0].msg_id
    assert (await store.query_message("T", "k0", 10, 0, FAR)).physical_offsets == [
        results[0].physical_offset
    ]
    assert await store.put_each([]) == []


async def test_query_by_key_and_view_by_offset(store: MessageStore) -> None:
    r = await store.put_message(m(KEYS="order-7 x", UNIQ_KEY="ABC"))
    await store.put_message(m(topic="U", KEYS="order-7"))
    settle(store)
    for key in ("order-7", "x", "ABC"):
        q = await store.query_message("T", key, 10, 0, FAR)
        assert q.physical_offsets == [r.physical_offset], key
    view = store.look_message_by_offset(r.physical_offset)
    assert view is not None and decode_records(view)[0].uniq_key == "ABC"
    assert store.look_message_by_offset(r.physical_offset + 1) is None


async def test_dispatch_listeners_see_every_consumable_message(store: MessageStore) -> None:
    seen: list[DispatchRequest] = []
    store.add_dispatch_listener(seen.extend)
    await store.put_message(m(queue_id=3, TAGS="x"))
    settle(store)
    assert [(d.topic, d.queue_id, d.consume_queue_offset, d.tags_code) for d in seen] == [
        ("T", 3, 0, tags_code("x"))
    ]


async def test_store_times(store: MessageStore) -> None:
    await store.put_message(m())
    settle(store)
    assert store.get_store_time("T", 0, 0) == CLOCK
    assert store.get_earliest_store_time("T", 0) == CLOCK
    assert store.get_offset_by_time("T", 0, CLOCK + 1) == 1
    assert store.get_offset_by_time("T", 0, CLOCK) == 0


async def test_both_stores_write_identical_records(tmp_path: Path) -> None:
    bodies: list[bytes] = []
    for make in (_file, _memory):
        s = make(tmp_path / make.__name__)
        await s.start()
        for i in range(5):
            await s.put_message(
                m(queue_id=i % 2, body=bytes([65 + i]) * 20, TAGS="t", KEYS=f"k{i}")
            )
        settle(s)
        bodies.append(s.get_message("T", 0, 0, 32).body())
        await s.stop()
    assert bodies[0] == bodies[1] and bodies[0]
