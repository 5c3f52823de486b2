"""A batch send written straight from its body is stored, and refused, exactly as the same
messages one by one through `append_batch` / `put_messages`."""

from __future__ import annotations

import errno
from collections.abc import Callable
from pathlib import Path

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.errors import DiskFullError, StoreError
from rmqkit.protocol.batch import BatchEntry, batch_spans, encode_batch
from rmqkit.protocol.record import Host, decode_record, pack_host
from rmqkit.server.store import FileMessageStore, PutStatus
from rmqkit.server.store.commit_log import CommitLog
from rmqkit.server.store.mapped_file import MappedFileQueue
from rmqkit.server.store.memory_store import MemoryMessageStore
from rmqkit.server.store.message import BatchToStore

from .conftest import failing_pwrite, msg, small_settings

SEGMENT = 64 * 1024
STORE_V4 = pack_host("127.0.0.1", 10911)
STORE_V6 = pack_host("::1", 10911)
BORN_V4 = pack_host("10.1.2.3", 5555)
BORN_V6 = pack_host("fe80::1", 5555)
STAMP = "CLUSTER\x01C\x02MSG_REGION\x01DefaultRegion\x02TRACE_ON\x01true\x02"


def batch(
    n: int = 8, *, topic: str = "T", queue_id: int = 1, born: Host = BORN_V4, body: int = 300,
    props: Callable[[int], str] | None = None, sys_flag: int = 0,
) -> BatchToStore:  # fmt: skip
    def default_props(i: int) -> str:
        # Every shape the stamping meets: ended by a separator, not ended, none at all.
        p = encode_properties({"KEYS": f"k{i} common", "TAGS": "A", "UNIQ_KEY": f"U{i:04d}"})
        return p if i % 3 == 0 else p.rstrip("\x02") if i % 3 == 1 else ""

    entries = [
        BatchEntry(bytes([i]) * (body + 7 * i), (props or default_props)(i), flag=i)
        for i in range(n)
    ]
    raw = encode_batch(entries)
    return BatchToStore(topic, queue_id, raw, batch_spans(raw), STAMP, sys_flag, 1_700, born, 2)


def open_log(root: Path, store: Host, *, mapped_writable: bool) -> CommitLog:
    queue = MappedFileQueue(root, SEGMENT, mapped_writable=mapped_writable)
    queue.load()
    return CommitLog(queue, store)


def log_bytes(log: CommitLog) -> bytes:
    return b"".join(bytes(mf.mm[: mf.write_pos]) for mf in log.queue.files)


@pytest.mark.parametrize("writable", [True, False], ids=["mapped", "pwrite"])
@pytest.mark.parametrize(
    ("born", "store"),
    [(BORN_V4, STORE_V4), (BORN_V6, STORE_V4), (BORN_V4, STORE_V6), (BORN_V6, STORE_V6)],
    ids=["v4", "born-v6", "store-v6", "v6"],
)
def test_the_records_are_those_of_the_messages_one_by_one(
    tmp_path: Path, writable: bool, born: Host, store: Host
) -> None:
    by_one, by_body = (
        open_log(tmp_path / name, store, mapped_writable=writable) for name in ("one", "body")
    )
    batches = [batch(12, born=born, body=200 + 900 * k) for k in range(5)]  # the last rolls
    for k, b in enumerate(batches):
        by_one.append(msg(queue_id=1), 10 + k)
        by_body.append(msg(queue_id=1), 10 + k)
        appended = by_one.append_batch(b.messages(), 1_000 + k)
        queue_offset, offsets = by_body.append_planned(b, by_body.plan_batch(b), 1_000 + k)
        assert queue_offset == appended[0].queue_offset
        assert offsets == [a.physical_offset for a in appended]
    assert len(by_body.queue.files) == 3
    assert log_bytes(by_body) == log_bytes(by_one)
    assert by_body.queue_offsets == by_one.queue_offsets
    assert list(by_body.fresh) == list(by_one.fresh)
    rec = by_body.read_record(offsets[3])
    assert rec is not None
    m = decode_record(rec, check_crc=True)
    assert (m.body, m.flag, m.born_host, m.reconsume_times) == (
        bytes([3]) * (3_800 + 7 * 3),
        3,
        born,
        2,
    )
    assert m.properties["UNIQ_KEY"] == "U0003" and m.properties["CLUSTER"] == "C"
    for log in (by_one, by_body):
        log.close()


def test_a_half_message_flag_takes_no_queue_offsets(tmp_path: Path) -> None:
    log = open_log(tmp_path, STORE_V4, mapped_writable=True)
    b = batch(3, sys_flag=0x4)  # TRANSACTION_PREPARED: the broker refuses it; the log agrees
    queue_offset, offsets = log.append_planned(b, log.plan_batch(b), 5)
    assert queue_offset == 0 and log.queue_offsets == {}
    assert [decode_record(log.read_record(o)).queue_offset for o in offsets] == [0, 0, 0]  # type: ignore[arg-type]
    log.close()


@pytest.mark.parametrize(
    ("code", "error"), [(errno.EIO, StoreError), (errno.ENOSPC, DiskFullError)]
)
def test_a_failed_write_gives_back_what_the_records_took(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, error: type[Exception]
) -> None:
    log = open_log(tmp_path, STORE_V4, mapped_writable=False)
    first = log.append(msg(queue_id=1), 1)
    offsets, fresh = dict(log.queue_offsets), list(log.fresh)
    failing_pwrite(monkeypatch, log.queue, code, 0)
    b = batch(4)
    with pytest.raises(error):
        log.append_planned(b, log.plan_batch(b), 2)
    assert log.queue_offsets == offsets and list(log.fresh) == fresh
    assert log.max_offset == first.size
    monkeypatch.undo()
    queue_offset, at = log.append_planned(b, log.plan_batch(b), 3)
    assert (queue_offset, at[0]) == (1, first.size)
    log.close()


@pytest.fixture(params=["file", "memory"])
async def twin_stores(request: pytest.FixtureRequest, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Two stores alike, one for `put_batch`, one for `put_messages`."""

    def make(name: str) -> FileMessageStore | MemoryMessageStore:
        if request.param == "memory":
            return MemoryMessageStore(max_message_size_bytes=16 * 1024)
        return FileMessageStore(small_settings(tmp_path / name))

    stores = (make("a"), make("b"))
    for s in stores:
        s.clock_ms = lambda: 42  # type: ignore[method-assign]
        await s.start()
    yield stores
    for s in stores:
        await s.stop()


async def test_put_batch_answers_as_put_messages(twin_stores) -> None:  # type: ignore[no-untyped-def]
    by_body, by_one = twin_stores
    for k in range(3):
        b = batch(10, queue_id=k % 2)
        got, want = await by_body.put_batch(b), await by_one.put_messages(b.messages())
        assert got == want and got.status is PutStatus.OK and got.message_count == 10
    assert by_body.max_physical_offset == by_one.max_physical_offset
    if isinstance(by_body, FileMessageStore):
        assert by_body.reput is not None
        by_body.reput.drain()  # what the event loop does next
    r = by_body.get_message("T", 0, 0, 32)
    bodies = [decode_record(rec).body[:1] for rec in r.records]
    assert bodies == [bytes([i]) for i in range(10)] * 2
    assert len((await by_body.query_message("T", "k4", 10, 0, 10**13)).records) == 3


def _big_props(i: int) -> str:
    # Within the batch entry's 32,767 bytes, past them once the broker's stamp is added.
    return "k\x01" + "v" * 32_740 + "\x02" if i == 2 else ""


@pytest.mark.parametrize(
    "b",
    [
        batch(3, body=17_000),  # a body over maxMessageSize (16 KiB here)
        batch(3, body=6_000),  # bodies over it together
        batch(40, body=1_500),  # records past one 64 KiB segment
        batch(3, props=_big_props),
        batch(3, topic="bad topic"),
        batch(3, queue_id=-1),
        batch(3, props=lambda i: "DELAY\x013\x02" if i == 1 else ""),
        batch(3, props=lambda i: "DELAY\x01x\x02" if i == 1 else ""),
        batch(0),
    ],
    ids=[
        "body", "bodies", "segment", "properties", "topic", "queue", "delay", "bad-delay", "empty",
    ],
)  # fmt: skip
async def test_put_batch_refuses_as_put_messages(twin_stores, b: BatchToStore) -> None:  # type: ignore[no-untyped-def]
    by_body, by_one = twin_stores
    got, want = await by_body.put_batch(b), await by_one.put_messages(b.messages())
    if want.status is PutStatus.OK:  # a memory store has no segments to fill
        assert isinstance(by_one, MemoryMessageStore) and got == want
        return
    assert got.status is want.status
    if "segment" in want.remark:  # put_messages says what the records take at most
        assert got.remark.startswith("the batch needs up to 72119 bytes of CommitLog")
    else:
        assert got.remark == want.remark
    assert by_body.max_physical_offset == 0
