"""The timer service on a real FileMessageStore in tmp_path: delivery, restart, retries, figures."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from rmqkit.common.properties import encode_properties
from rmqkit.protocol.record import StoredMessage, decode_records
from rmqkit.server.broker import timer as timer_module
from rmqkit.server.broker.broker import Broker
from rmqkit.server.broker.stats import BrokerStats
from rmqkit.server.broker.timer import TimerService
from rmqkit.server.store import (
    FileMessageStore,
    MessageToStore,
    PutResult,
    PutStatus,
    StoreSettings,
)
from rmqkit.server.store.timer import (
    TIMER_TOPIC,
    TimerCheckpoint,
    TimerPolicy,
    TimerWheel,
    route_timer,
)
from rmqkit.testing import check_for

PRECISION_MS = 100
POLICY = TimerPolicy(True, 3600_000, PRECISION_MS)


@dataclass
class FakeBroker:
    """What the timer service uses of a Broker."""

    store: FileMessageStore
    stats: BrokerStats = field(default_factory=BrokerStats)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[FileMessageStore]:
    s = FileMessageStore(
        StoreSettings(
            store_path_root_dir=tmp_path / "store",
            mapped_file_size_commit_log_bytes=64 * 1024,
            mapped_file_size_consume_queue_bytes=20 * 50,
            max_message_size_bytes=16 * 1024,
            max_hash_slot_num=64,
            max_index_num=200,
        )
    )
    await s.start()
    yield s
    await s.stop()


def service(store: FileMessageStore, tmp_path: Path) -> TimerService:
    svc = TimerService(
        cast(Broker, FakeBroker(store)), tmp_path / "timerCheckpoint.json", PRECISION_MS
    )
    store.add_dispatch_listener(svc.on_dispatch)
    return svc


async def put_timed(store: FileMessageStore, body: bytes, delay_ms: int, **props: str) -> int:
    """Store a message asking for `delay_ms`; returns the time it asked for (epoch ms)."""
    now = int(time.time() * 1000)
    m = MessageToStore(
        "Real", 1, body, encode_properties({"TIMER_DELAY_MS": str(delay_ms), **props})
    )
    routed = route_timer(m, now, POLICY)
    assert isinstance(routed, MessageToStore) and routed.topic == TIMER_TOPIC
    r = await store.put_message(routed)
    assert r.status is PutStatus.OK
    return now + delay_ms


def arrived(store: FileMessageStore) -> list[StoredMessage]:
    out: list[StoredMessage] = []
    while True:
        g = store.get_message("Real", 1, len(out), 32)
        if not g.records:
            return out
        out += decode_records(g.body())


async def wait_read(store: FileMessageStore, svc: TimerService, n: int) -> None:
    await check_for(lambda: svc.wheel.next_offset == n, timeout=5)


async def test_passed_slots_are_delivered_with_their_stamps(
    store: FileMessageStore, tmp_path: Path
) -> None:
    asked = {b"a": await put_timed(store, b"a", 300, TAGS="t", KEYS="k", color="red"),
             b"b": await put_timed(store, b"b", 50)}  # fmt: skip
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 2, timeout=5)
        got = arrived(store)
        assert [m.body for m in got] == [b"b", b"a"]  # in time order, not in sending order
        for m in got:
            p = m.properties
            assert m.store_timestamp >= asked[m.body]
            assert int(p["TIMER_DEQUEUE_MS"]) >= asked[m.body] >= int(p["TIMER_ENQUEUE_MS"])
            assert "REAL_TOPIC" not in p and "REAL_QID" not in p and m.queue_id == 1
        assert got[1].tags == "t" and got[1].keys == ["k"] and got[1].properties["color"] == "red"
        assert (svc.delivered, svc.pending, svc.enqueued) == (2, 0, 2)
        info = svc.runtime_info()
        assert set(info) == {"timerReadBehind", "timerOffsetBehind", "timerCongestNum",
                             "timerEnqueueTps", "timerDequeueTps"}  # fmt: skip
        assert info["timerCongestNum"] == "0" and info["timerOffsetBehind"] == "0"
    assert cast(FakeBroker, svc.broker).stats.messages_put == 2


async def test_a_restart_reads_back_only_what_is_pending(
    store: FileMessageStore, tmp_path: Path
) -> None:
    await put_timed(store, b"soon", 0 + 50)
    await put_timed(store, b"far", 60_000)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 1, timeout=5)
    await put_timed(store, b"while-down", 120_000)
    again = service(store, tmp_path)
    again.load()
    # "soon" was delivered and checkpointed: only "far" is read back; "while-down" lies past the
    # checkpoint's read offset and is read by the running service.
    assert again.pending == 1 and again.wheel.next_offset == 2
    async with again:
        await wait_read(store, again, 3)
        assert again.pending == 2
    assert [m.body for m in arrived(store)] == [b"soon"]


async def test_without_its_checkpoint_the_timer_loses_nothing(
    store: FileMessageStore, tmp_path: Path
) -> None:
    await put_timed(store, b"x", 60_000)
    await put_timed(store, b"y", 60_000)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await wait_read(store, svc, 2)
    (tmp_path / "timerCheckpoint.json").write_text("{not json")
    again = service(store, tmp_path)
    again.load()
    async with again:
        await wait_read(store, again, 2)
        assert again.pending == 2


async def test_slots_larger_than_a_pass_are_delivered_whole_and_in_order(
    store: FileMessageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timer_module, "MAX_PER_PASS", 3)
    for i in range(10):
        await put_timed(store, str(i).encode(), 100)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 10, timeout=5)
    assert [m.body for m in arrived(store)] == [str(i).encode() for i in range(10)]


def patch_put_each(
    store: FileMessageStore,
    monkeypatch: pytest.MonkeyPatch,
    refuse: Callable[[MessageToStore], PutStatus | None],
) -> list[list[bytes]]:
    """Deliveries go through `put_each`: refuse the messages `refuse` names a status for (the
    others are stored); returns the bodies of every call to the real topic."""
    real_put_each: Callable[[list[MessageToStore]], Any] = store.put_each
    calls: list[list[bytes]] = []

    async def put_each(msgs: list[MessageToStore]) -> list[PutResult]:
        if any(m.topic == "Real" for m in msgs):
            calls.append([m.body for m in msgs])
        out: list[PutResult | None] = []
        for m in msgs:
            status = refuse(m)
            out.append(None if status is None else PutResult(status, remark="refused"))
        stored = iter(await real_put_each([m for m, r in zip(msgs, out, strict=True) if r is None]))
        return [next(stored) if r is None else r for r in out]

    monkeypatch.setattr(store, "put_each", put_each)
    return calls


async def test_a_refusing_store_is_tried_again_and_nothing_is_lost(
    store: FileMessageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timer_module, "RETRY_MS", 50)
    calls: list[list[bytes]] = []

    def stopped(m: MessageToStore) -> PutStatus | None:  # the first three calls: all refused
        return PutStatus.SERVICE_NOT_AVAILABLE if len(calls) <= 3 else None

    calls = patch_put_each(store, monkeypatch, stopped)
    await put_timed(store, b"p", 20)
    await put_timed(store, b"q", 20)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 2, timeout=5)
    assert len(calls) >= 4 and all(c[0] == b"p" for c in calls[:4])  # p first, every time
    assert [m.body for m in arrived(store)] == [b"p", b"q"] and svc.delivered == 2


async def test_a_call_refused_in_part_delivers_the_rest_later(
    store: FileMessageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(timer_module, "RETRY_MS", 50)
    tries: list[bytes] = []

    def full_once(m: MessageToStore) -> PutStatus | None:
        if m.topic == "Real" and m.body == b"big" and b"big" not in tries:
            tries.append(m.body)
            return PutStatus.DISK_FULL  # no room for it now; the smaller ones fit
        return None

    calls = patch_put_each(store, monkeypatch, full_once)
    for body in (b"a", b"big", b"c"):
        await put_timed(store, body, 20)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 3, timeout=5)
        await check_for(lambda: svc.pending == 0, timeout=5)
    assert sorted(m.body for m in arrived(store)) == [b"a", b"big", b"c"]  # each once
    refused = next(i for i, c in enumerate(calls) if b"big" in c)
    assert calls[refused + 1][0] == b"big"  # back at the front of its slot, tried first
    assert svc.delivered == 3 and cast(FakeBroker, svc.broker).stats.messages_put == 3


async def test_a_slot_goes_to_the_store_in_one_call(
    store: FileMessageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = patch_put_each(store, monkeypatch, lambda m: None)
    for i in range(40):
        await put_timed(store, str(i).encode(), 300)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: len(arrived(store)) == 40, timeout=5)
    assert [m.body for m in arrived(store)] == [str(i).encode() for i in range(40)]
    assert len(calls) <= 2  # the 40 asked for one time: one slot, or two at a boundary


async def test_a_message_refused_for_good_is_dropped_not_retried_forever(
    store: FileMessageStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def picky(m: MessageToStore) -> PutStatus | None:
        bad = m.topic == "Real" and m.body == b"bad"
        return PutStatus.PROPERTIES_SIZE_EXCEEDED if bad else None

    patch_put_each(store, monkeypatch, picky)
    await put_timed(store, b"bad", 20)
    await put_timed(store, b"good", 40)
    svc = service(store, tmp_path)
    svc.load()
    async with svc:
        await check_for(lambda: [m.body for m in arrived(store)] == [b"good"], timeout=5)
        await check_for(lambda: svc.pending == 0, timeout=5)
    assert svc.delivered == 1


# -- the disk index: no memory per message, unclean restarts, older checkpoints ---------------


def saved(tmp_path: Path) -> TimerCheckpoint:
    return TimerCheckpoint.decode(json.loads((tmp_path / "timerCheckpoint.json").read_text()))


async def crash(svc: TimerService) -> None:
    """End the service's loop without its clean stop: no last checkpoint, files as they are."""
    task = svc._task
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    svc._task = None


async def test_an_unclean_stop_loses_nothing_and_repeats_nothing_checkpointed(
    store: FileMessageStore, tmp_path: Path
) -> None:
    asked = {}
    for i in range(20):
        asked[f"soon{i}".encode()] = await put_timed(store, f"soon{i}".encode(), 20 + 10 * i)
    for i in range(20):
        asked[f"far{i}".encode()] = await put_timed(store, f"far{i}".encode(), 60_000)
    svc = service(store, tmp_path)
    svc.load()
    await svc.start()
    await check_for(lambda: len(arrived(store)) == 20, timeout=5)
    await check_for(lambda: saved(tmp_path).pending_count == 20, timeout=5)
    await crash(svc)
    for i in range(5):
        asked[f"down{i}".encode()] = await put_timed(store, f"down{i}".encode(), 100 + i)
    await check_for(lambda: store.get_max_offset(TIMER_TOPIC, 0) == 45)
    again = service(store, tmp_path)
    again.load()
    assert again.pending == 20 and not saved(tmp_path).clean
    async with again:
        await check_for(lambda: len(arrived(store)) == 25, timeout=5)
        assert again.pending == 20
    got = arrived(store)
    assert sorted(m.body for m in got) == sorted(b for b in asked if not b.startswith(b"far"))
    assert all(m.store_timestamp >= asked[m.body] for m in got)


async def test_pending_messages_over_many_log_files_survive_restarts(
    store: FileMessageStore, tmp_path: Path
) -> None:
    bodies = [f"m{i}".encode() for i in range(300)]
    for i, b in enumerate(bodies):
        await put_timed(store, b, 400 + (i * 37) % 600)
    svc = TimerService(cast(Broker, FakeBroker(store)), tmp_path / "timerCheckpoint.json",
                       PRECISION_MS, units_per_file=32)  # fmt: skip
    svc.load()
    async with svc:
        await wait_read(store, svc, 300)
    assert len(list((tmp_path / "timerlog").iterdir())) == 10
    again = TimerService(cast(Broker, FakeBroker(store)), tmp_path / "timerCheckpoint.json",
                         PRECISION_MS, units_per_file=32)  # fmt: skip
    again.load()
    assert again.pending + len(arrived(store)) == 300
    async with again:
        await check_for(lambda: len(arrived(store)) == 300, timeout=5)
    assert sorted(m.body for m in arrived(store)) == sorted(bodies)


async def test_a_checkpoint_of_the_in_memory_timer_is_read_on_upgrade(
    store: FileMessageStore, tmp_path: Path
) -> None:
    await put_timed(store, b"delivered", 10)
    await put_timed(store, b"pending", 60_000)
    await put_timed(store, b"unread", 60_000)
    await check_for(lambda: store.get_max_offset(TIMER_TOPIC, 0) == 3)
    old = TimerWheel(PRECISION_MS)  # what rmqkit wrote before the disk index
    soon_slot = int(time.time() * 1000) // PRECISION_MS * PRECISION_MS
    far_slot = soon_slot + 60_000
    old.add(far_slot, (1, 0, 0))
    old.next_offset = 2
    data = old.checkpoint()
    data["readTimeMs"] = far_slot - 30_000  # "delivered" was, before the upgrade
    (tmp_path / "timerCheckpoint.json").write_text(json.dumps(data))
    svc = service(store, tmp_path)
    svc.load()
    assert svc.pending == 1 and svc.wheel.next_offset == 2
    async with svc:
        await wait_read(store, svc, 3)
        assert svc.pending == 2
    assert arrived(store) == []
    assert json.loads((tmp_path / "timerCheckpoint.json").read_text())["version"] == 2
