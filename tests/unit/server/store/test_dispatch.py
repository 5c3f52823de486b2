"""The reput service: what the writer hands it matches what reading the log gives."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rmqkit.common.hashing import tags_code
from rmqkit.common.properties import find_property
from rmqkit.protocol.codes import SysFlag
from rmqkit.protocol.record import pack_host
from rmqkit.server.store import FileMessageStore, MessageToStore
from rmqkit.server.store import commit_log as commit_log_module
from rmqkit.server.store.dispatch import DispatchRequest, ReputService, dispatch_request

from .conftest import msg


def mixed_messages() -> list[MessageToStore]:
    """Every shape dispatch cares about: tags, keys, uniq keys, transactions, IPv6 born hosts."""
    out = [
        msg(queue_id=0, TAGS="TagA", KEYS="k1 k2", UNIQ_KEY="U1"),
        msg(queue_id=1),
        msg(queue_id=2, body=b"", KEYS="only"),
        msg(topic="Other", queue_id=0, TAGS="é-tag", UNIQ_KEY="U2"),
        msg(queue_id=0, XTAGS="not-a-tag", TAGS="TagB"),
    ]
    half = msg(queue_id=1, TAGS="half")
    half.sys_flag = int(SysFlag.TRANSACTION_PREPARED)
    rollback = msg(queue_id=1, UNIQ_KEY="U3")
    rollback.sys_flag = int(SysFlag.TRANSACTION_ROLLBACK)
    v6 = msg(queue_id=3, TAGS="v6")
    v6.born_host = pack_host("::1", 4321)
    return [*out, half, rollback, v6]


def record_dispatch(store: FileMessageStore) -> list[DispatchRequest]:
    seen: list[DispatchRequest] = []
    assert store.reput is not None
    store.reput.dispatchers = [*store.reput.dispatchers, seen.extend]
    return seen


def read_back(store: FileMessageStore) -> list[DispatchRequest]:
    """Every record's request as parsing the CommitLog gives it (what recovery does)."""
    seen: list[DispatchRequest] = []
    ReputService(store.commit_log, [seen.extend], store.commit_log.min_offset).drain()
    return seen


PROPERTY_PIECES = ["TAGS\x01", "KEYS\x01", "UNIQ_KEY\x01", "X", "\x01", "\x02", "a", " ", "é"]


@given(st.lists(st.sampled_from(PROPERTY_PIECES), max_size=24).map("".join))
def test_tags_keys_and_uniq_key_are_what_find_property_finds(props: str) -> None:
    # dispatch_request writes find_property out for speed; names inside values, repeated
    # names and missing separators must come out the same.
    req = dispatch_request("T", 0, 0, 1, 0, 0, 0, 0, props)
    assert req.tags_code == tags_code(find_property(props, "TAGS"))
    assert req.keys == (find_property(props, "KEYS") or "")
    assert req.uniq_key == (find_property(props, "UNIQ_KEY") or "")


async def test_the_writers_requests_equal_the_records_read_back(store: FileMessageStore) -> None:
    seen = record_dispatch(store)
    msgs = mixed_messages()
    for m in msgs:
        assert (await store.put_message(m)).ok
    assert (await store.put_messages([msg(queue_id=4, KEYS=f"b{i}") for i in range(3)])).ok
    assert len(store.commit_log.fresh) == len(msgs) + 3
    assert store.reput is not None
    store.reput.drain()
    assert not store.commit_log.fresh
    assert seen == read_back(store)
    assert len(seen) == len(msgs) + 3


async def test_records_past_what_the_writer_keeps_are_read_from_the_log(
    store: FileMessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commit_log_module, "FRESH_MAX", 3)
    seen = record_dispatch(store)
    # 40 records of 5 KiB cross the 64 KiB segments, so the log has blank tails to step over.
    for i in range(40):
        assert (await store.put_message(msg(queue_id=i % 2, body=b"b" * 5000, KEYS=f"k{i}"))).ok
    assert len(store.commit_log.fresh) == 3
    assert len(store.commit_log.queue.files) >= 3
    assert store.reput is not None
    store.reput.drain()
    assert seen == read_back(store)
    assert [r.keys for r in seen] == [f"k{i}" for i in range(40)]
    assert store.get_max_offset("T", 0) == 20 and store.get_max_offset("T", 1) == 20


async def test_the_writers_requests_never_skip_a_record(
    store: FileMessageStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The reput service takes the writer's requests as one stretch: the writer must not add a
    # record after one it left out (past FRESH_MAX) or after a segment's blank end.
    monkeypatch.setattr(commit_log_module, "FRESH_MAX", 4)
    seen = record_dispatch(store)
    assert store.reput is not None
    for i in range(60):  # 5 KiB records: the 64 KiB segments end every 12 or so
        assert (await store.put_message(msg(queue_id=i % 2, body=b"b" * 5000, KEYS=f"k{i}"))).ok
        if i % 6 == 5:
            store.reput.drain(limit=1 + i % 4)
        fresh = list(store.commit_log.fresh)
        for a, b in itertools.pairwise(fresh):
            assert a.commit_log_offset + a.msg_size == b.commit_log_offset
    assert len(store.commit_log.queue.files) >= 4
    store.reput.drain()
    assert seen == read_back(store)
    assert [r.keys for r in seen] == [f"k{i}" for i in range(60)]


async def test_a_dispatcher_that_appends_is_dispatched_in_the_same_drain(
    store: FileMessageStore,
) -> None:
    # The schedule and timer services append from inside dispatch; `stop` drains once.
    echoed: list[int] = []

    def echo(run: list[DispatchRequest]) -> None:
        for req in run:
            if req.topic == "T":
                echoed.append(req.commit_log_offset)
                store.commit_log.append(msg(topic="Echo"), 0)

    store.add_dispatch_listener(echo)
    for _ in range(5):
        assert (await store.put_message(msg())).ok
    assert store.reput is not None
    assert store.reput.drain() == 10
    assert len(echoed) == 5
    assert store.get_max_offset("Echo", 0) == 5
    assert store.reput.reput_offset == store.commit_log.max_offset


def test_prefault_keeps_what_is_written(
    make_store: Callable[..., FileMessageStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    from rmqkit.server.store import mapped_file

    s = make_store()
    s.commit_log.queue.dir.mkdir(parents=True)
    mf = s.commit_log.queue.create(0)
    mf.mm[100:105] = b"hello"
    mf.prefault(0, mf.size)
    assert mf.ahead == min(mf.size, mapped_file.PREFAULT_BYTES)
    assert mf.mm[100:105] == b"hello" and mf.mm[105:110] == bytes(5)
    mf.prefault(mf.size - 10, mf.size)
    assert mf.ahead == mf.size
    mf.prefault(0, 5000)  # never past the limit it is given
    assert mf.ahead == 5000
    # Where the kernel cannot, the writer takes its page faults itself and never asks again.
    monkeypatch.setattr(mapped_file.MappedFile, "can_prefault", False)
    mf.ahead = 0
    mf.prefault(0, mf.size)
    assert mf.ahead == mf.size
    mf.close()
