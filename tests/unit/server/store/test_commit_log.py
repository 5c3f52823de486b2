"""CommitLog: appends, segment roll with a blank tail, batches, queue offsets, reads."""

from __future__ import annotations

import itertools
import struct

from rmqkit.protocol.codes import BLANK_MAGIC, SysFlag
from rmqkit.protocol.message_id import decode_offset_msg_id
from rmqkit.protocol.record import decode_record, pack_host
from rmqkit.server.store import FileMessageStore, PutStatus
from rmqkit.server.store.mapped_file import file_name

from .conftest import msg


async def test_append_assigns_physical_and_queue_offsets(store: FileMessageStore) -> None:
    r1 = await store.put_message(msg(queue_id=0))
    r2 = await store.put_message(msg(queue_id=1))
    r3 = await store.put_message(msg(queue_id=0))
    assert r1.status is PutStatus.OK
    assert (r1.physical_offset, r1.queue_offset) == (0, 0)
    assert (r2.physical_offset, r2.queue_offset) == (r1.size, 0)
    assert (r3.physical_offset, r3.queue_offset) == (r1.size + r2.size, 1)
    rec = store.look_message_by_offset(r3.physical_offset)
    assert rec is not None
    m = decode_record(rec, check_crc=True)
    assert (m.queue_id, m.queue_offset, m.commit_log_offset) == (0, 1, r3.physical_offset)
    assert m.offset_msg_id == r3.msg_id
    assert decode_offset_msg_id(r3.msg_id) == (pack_host("127.0.0.1", 10911), r3.physical_offset)


async def test_a_record_never_spans_segments(store: FileMessageStore) -> None:
    seg = store.commit_log.file_size
    body = b"b" * 5000
    results = [await store.put_message(msg(body=body)) for _ in range(30)]
    assert all(r.ok for r in results)
    files = store.commit_log.queue.files
    assert len(files) >= 2
    assert [f.path.name for f in files[:2]] == [file_name(0), file_name(seg)]
    for r in results:
        assert r.physical_offset // seg == (r.physical_offset + r.size - 1) // seg
    # The first segment's tail is a blank record covering exactly what is left of it.
    last_in_first = max(
        (r for r in results if r.physical_offset < seg), key=lambda r: r.physical_offset
    )
    tail = last_in_first.physical_offset + last_in_first.size
    size, magic = struct.unpack_from(">iI", files[0].mm, tail)
    assert magic == BLANK_MAGIC and size == seg - tail
    assert tail >= seg - 5200


async def test_batch_lands_contiguously_with_consecutive_queue_offsets(
    store: FileMessageStore,
) -> None:
    await store.put_message(msg(queue_id=2))
    r = await store.put_messages([msg(queue_id=2, body=bytes([i]) * 50) for i in range(5)])
    assert r.ok and r.message_count == 5 and r.queue_offset == 1
    assert len(r.msg_ids) == 5
    offsets = [decode_offset_msg_id(i)[1] for i in r.msg_ids]
    for a, b in itertools.pairwise(offsets):
        rec = store.look_message_by_offset(a)
        assert rec is not None and a + len(rec) == b
    store.reput.drain()  # type: ignore[union-attr]
    assert store.get_max_offset("T", 2) == 6


async def test_half_messages_take_no_queue_offset(store: FileMessageStore) -> None:
    half = msg(queue_id=0)
    half.sys_flag = SysFlag.TRANSACTION_PREPARED
    r = await store.put_message(half)
    assert r.ok and r.queue_offset == 0
    r2 = await store.put_message(msg(queue_id=0))
    assert r2.queue_offset == 0
    store.reput.drain()  # type: ignore[union-attr]
    assert store.get_max_offset("T", 0) == 1  # only the normal message is consumable


async def test_ipv6_store_host(make_store) -> None:  # type: ignore[no-untyped-def]
    from rmqkit.server.store import FileMessageStore

    s = make_store()
    s6 = FileMessageStore(s.settings, ("::1", 10911))
    await s6.start()
    r = await s6.put_message(msg())
    assert len(r.msg_id) == 56
    rec = s6.look_message_by_offset(r.physical_offset)
    assert rec is not None
    assert decode_record(rec, check_crc=True).sys_flag & SysFlag.STOREHOST_V6
    await s6.stop()


async def test_reads_outside_the_log_return_none(store: FileMessageStore) -> None:
    r = await store.put_message(msg())
    assert store.look_message_by_offset(r.physical_offset + 1) is None
    assert store.look_message_by_offset(10**9) is None
    assert store.look_message_by_offset(-5) is None
    assert store.commit_log.read(r.physical_offset, r.size + 1) is None
