"""The LitePullConsumer against the embedded NameServer and broker: assign and subscribe, poll,
seek, commit, pause/resume, flow control."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest

from rmqkit.client.message import Message, MessageQueue
from rmqkit.client.producer import Producer
from rmqkit.client.pull_consumer import LitePullConsumer
from rmqkit.errors import ConfigurationError
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration
_names = itertools.count()


def lite(c: Cluster, group: str, **kw: Any) -> LitePullConsumer:
    kw.setdefault("consume_from_where", "CONSUME_FROM_FIRST_OFFSET")
    kw.setdefault("auto_commit", False)
    return LitePullConsumer(group, c.ns, instance_name=f"l{next(_names)}",
                            rebalance_interval_ms=500, **kw)  # fmt: skip


async def produce(c: Cluster, topic: str, n: int, start: int = 0, tags: str | None = None) -> None:
    async with Producer("PG", c.ns, instance_name=f"p{next(_names)}") as p:
        for i in range(start, start + n):
            await p.send(Message(topic, f"m{i}".encode(), tags=tags))


async def poll_until(c: LitePullConsumer, sink: list[StoredMessage], n: int) -> None:
    async def more() -> bool:
        sink.extend(await c.poll(100))
        return len(sink) >= n

    await check_for(more, timeout=10, message=f"polled {len(sink)} of {n}")


def bodies(msgs: list[StoredMessage]) -> list[bytes]:
    return [m.body for m in msgs]


def by_queue(msgs: list[StoredMessage]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for m in msgs:
        out.setdefault(m.queue_id, []).append(m.queue_offset)
    return out


async def test_assign_poll_and_commit(cluster: Cluster) -> None:
    await cluster.create_topic("L1", 2)
    await produce(cluster, "L1", 20)
    got: list[StoredMessage] = []
    c = lite(cluster, "LG1")
    async with c:
        mqs = await c.fetch_message_queues("L1")
        assert sorted(q.queue_id for q in mqs) == [0, 1]
        c.assign(mqs)
        await check_for(lambda: c.assignment() == set(mqs))
        await poll_until(c, got, 20)
        await c.commit_sync()
        assert [await c.committed(q) for q in sorted(mqs, key=lambda q: q.queue_id)] == [10, 10]
    assert sorted(bodies(got)) == sorted(f"m{i}".encode() for i in range(20))
    for offsets in by_queue(got).values():
        assert offsets == sorted(offsets)  # each queue in order
    assert [cluster.broker.offsets.query("LG1", "L1", q) for q in (0, 1)] == [10, 10]


async def test_a_new_consumer_resumes_from_the_committed_offset(cluster: Cluster) -> None:
    await cluster.create_topic("L2", 1)
    await produce(cluster, "L2", 6)
    first: list[StoredMessage] = []
    async with lite(cluster, "LG2") as c:
        c.assign(await c.fetch_message_queues("L2"))
        await poll_until(c, first, 6)
        await c.commit_sync()
    await produce(cluster, "L2", 2, start=6)
    second: list[StoredMessage] = []
    async with lite(cluster, "LG2") as c:
        c.assign(await c.fetch_message_queues("L2"))
        await poll_until(c, second, 2)
    assert bodies(second) == [b"m6", b"m7"]


async def test_auto_commit_and_commit_at_stop(cluster: Cluster) -> None:
    await cluster.create_topic("L3", 1)
    await produce(cluster, "L3", 5)
    got: list[StoredMessage] = []
    c = lite(cluster, "LG3", auto_commit=True, auto_commit_interval_ms=1_000)
    c.subscribe("L3")
    async with c:
        await poll_until(c, got, 5)
        await check_for(lambda: cluster.broker.offsets.query("LG3", "L3", 0) == 5, timeout=5)
        await produce(cluster, "L3", 2, start=5)
        await poll_until(c, got, 7)
    assert cluster.broker.offsets.query("LG3", "L3", 0) == 7


async def test_subscribers_of_a_group_share_the_queues(cluster: Cluster) -> None:
    await cluster.create_topic("L4", 4)
    a = lite(cluster, "LG4")
    b = lite(cluster, "LG4")
    a.subscribe("L4")
    b.subscribe("L4")
    got_a: list[StoredMessage] = []
    got_b: list[StoredMessage] = []
    async with a, b:

        def split() -> bool:
            qa = {q.queue_id for q in a.assignment()}
            qb = {q.queue_id for q in b.assignment()}
            return len(qa) == 2 and len(qb) == 2 and not qa & qb

        await check_for(split, timeout=10)
        await produce(cluster, "L4", 40)

        async def all_in() -> bool:
            got_a.extend(await a.poll(50))
            got_b.extend(await b.poll(50))
            return len(got_a) + len(got_b) >= 40

        await check_for(all_in, timeout=10)
    assert got_a and got_b
    assert sorted(bodies(got_a) + bodies(got_b)) == sorted(f"m{i}".encode() for i in range(40))


async def test_seek_and_offset_for_timestamp(cluster: Cluster) -> None:
    await cluster.create_topic("L5", 1)
    await produce(cluster, "L5", 5)
    got: list[StoredMessage] = []
    async with lite(cluster, "LG5") as c:
        mq = MessageQueue("L5", cluster.broker.settings.broker_name, 0)
        c.assign([mq])
        await poll_until(c, got, 5)
        await c.seek(mq, 2)
        again: list[StoredMessage] = []
        await poll_until(c, again, 3)
        assert bodies(again) == [b"m2", b"m3", b"m4"]
        await c.seek_to_begin(mq)
        from_start: list[StoredMessage] = []
        await poll_until(c, from_start, 5)
        assert bodies(from_start) == [f"m{i}".encode() for i in range(5)]
        with pytest.raises(ConfigurationError, match="outside"):
            await c.seek(mq, 99)
        with pytest.raises(ConfigurationError, match="not assigned"):
            await c.seek(MessageQueue("L5", "nowhere", 0), 0)
        assert await c.offset_for_timestamp(mq, 0) == 0
        assert await c.offset_for_timestamp(mq, got[-1].store_timestamp + 60_000) == 5
        await c.seek_to_end(mq)
        await produce(cluster, "L5", 1, start=5)
        tail: list[StoredMessage] = []
        await poll_until(c, tail, 1)
        assert bodies(tail) == [b"m5"]
        await c.commit_sync()
        assert await c.committed(mq) == 6


async def test_pause_and_resume(cluster: Cluster) -> None:
    await cluster.create_topic("L6", 2)
    got: list[StoredMessage] = []
    async with lite(cluster, "LG6") as c:
        mqs = await c.fetch_message_queues("L6")
        c.assign(mqs)
        await check_for(lambda: len(c.assignment()) == 2)
        c.pause(mqs)
        await produce(cluster, "L6", 6)
        assert await c.poll(200) == []  # nothing is pulled while paused
        c.resume(mqs)
        await poll_until(c, got, 6)
    assert sorted(bodies(got)) == sorted(f"m{i}".encode() for i in range(6))


async def test_flow_control_bounds_the_buffer(cluster: Cluster) -> None:
    await cluster.create_topic("L7", 2)
    await produce(cluster, "L7", 60)
    c = lite(cluster, "LG7", pull_batch_size=5, pull_threshold_for_all=10)
    got: list[StoredMessage] = []
    peak = 0
    async with c:
        c.assign(await c.fetch_message_queues("L7"))
        await check_for(lambda: c._buffered >= 10)

        async def drain() -> bool:
            nonlocal peak
            peak = max(peak, c._buffered)
            batch = await c.poll(100)
            assert len(batch) <= 5
            got.extend(batch)
            return len(got) >= 60

        await check_for(drain, timeout=10)
    # Each queue checks the bound before a pull, and a pull adds at most one batch.
    assert peak <= 10 + 2 * 5
    assert sorted(bodies(got)) == sorted(f"m{i}".encode() for i in range(60))


async def test_tag_filter_and_broadcasting(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.create_topic("L8", 2)
    await produce(cluster, "L8", 4, tags="a")
    await produce(cluster, "L8", 4, start=4, tags="b")
    kw: dict[str, Any] = {"message_model": "BROADCASTING", "offset_store_dir": tmp_path}
    x, y = lite(cluster, "LG8", **kw), lite(cluster, "LG8", **kw)
    x.subscribe("L8", "b")
    y.subscribe("L8", "b")
    gx: list[StoredMessage] = []
    gy: list[StoredMessage] = []
    async with x, y:
        await poll_until(x, gx, 4)
        await poll_until(y, gy, 4)
        await x.commit_sync()
    assert sorted(bodies(gx)) == sorted(bodies(gy)) == [b"m4", b"m5", b"m6", b"m7"]
    assert len(list(tmp_path.glob("*/LG8/offsets.json"))) == 2  # noqa: ASYNC240 (one folder per instance)


async def test_misuse_is_refused(cluster: Cluster) -> None:
    c = lite(cluster, "LG9")
    c.subscribe("L9")
    with pytest.raises(ConfigurationError, match="do not mix"):
        c.assign([MessageQueue("L9", "b", 0)])
    with pytest.raises(ConfigurationError, match="not started"):
        await c.poll(0)
    async with c:
        with pytest.raises(ConfigurationError, match="negative"):
            await c.poll(-1)
