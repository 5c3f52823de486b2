"""ORDERLY consumption: per-queue order under concurrent producers, suspension on failure,
one locked owner per queue, dead-lettering once attempts run out."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration
_n = itertools.count()


def orderly(c: Cluster, group: str, topic: str, handler, **kw: object) -> PushConsumer:  # type: ignore[no-untyped-def]
    pc = PushConsumer(
        group, c.ns, instance_name=f"o{next(_n)}", consume_mode="ORDERLY",
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=300,
        suspend_current_queue_time_ms=50, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    pc.subscribe(topic)
    pc.register(handler)
    return pc


async def produce_sequences(c: Cluster, topic: str, keys: list[str], n: int) -> None:
    """Four producers at once, each owning some keys, each key's messages 0..n-1 in order."""

    async def one(my_keys: list[str]) -> None:
        async with Producer("PG", c.ns, instance_name=f"p{next(_n)}") as p:
            for i in range(n):
                for k in my_keys:
                    await p.send_orderly(Message(topic, f"{k}:{i}".encode(), keys=[k]), k)

    await asyncio.gather(*(one(keys[i::4]) for i in range(4)))


def by_key(seen: list[bytes]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for b in seen:
        k, i = b.decode().split(":")
        out.setdefault(k, []).append(int(i))
    return out


async def test_each_key_is_consumed_in_order_under_four_producers(cluster: Cluster) -> None:
    await cluster.create_topic("O1", 4)
    seen: list[bytes] = []

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend(m.body for m in msgs)
        return ConsumeResult.SUCCESS

    keys = [f"order-{i}" for i in range(8)]
    async with orderly(cluster, "OG1", "O1", handle):
        await produce_sequences(cluster, "O1", keys, 20)
        await check_for(lambda: len(seen) == 160, timeout=15)
    assert by_key(seen) == {k: list(range(20)) for k in keys}


async def test_a_failure_suspends_the_queue_and_nothing_overtakes(cluster: Cluster) -> None:
    await cluster.create_topic("O2", 1)
    seen: list[bytes] = []
    failed_once = False

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        nonlocal failed_once
        seen.extend(m.body for m in msgs)
        if msgs[0].body == b"k:3" and not failed_once:
            failed_once = True
            return ConsumeResult.RECONSUME_LATER
        return ConsumeResult.SUCCESS

    async with orderly(cluster, "OG2", "O2", handle):
        async with Producer("PG", cluster.ns, instance_name="p-o2") as p:
            for i in range(6):
                await p.send_orderly(Message("O2", f"k:{i}".encode()), "k")
        await check_for(lambda: b"k:5" in seen, timeout=10)
    assert seen == [b"k:0", b"k:1", b"k:2", b"k:3", b"k:3", b"k:4", b"k:5"]


async def test_two_orderly_consumers_never_share_a_queue(cluster: Cluster) -> None:
    await cluster.create_topic("O3", 4)
    seen_a: list[bytes] = []
    seen_b: list[bytes] = []

    def collector(sink: list[bytes]):  # type: ignore[no-untyped-def]
        async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
            sink.extend(m.body for m in msgs)
            return ConsumeResult.SUCCESS

        return handle

    async with (
        orderly(cluster, "OG3", "O3", collector(seen_a)) as a,
        orderly(cluster, "OG3", "O3", collector(seen_b)) as b,
    ):

        def split() -> bool:
            qa = {q.queue_id for q in a.process_queues if q.topic == "O3"}
            qb = {q.queue_id for q in b.process_queues if q.topic == "O3"}
            return len(qa) == 2 and len(qb) == 2 and not qa & qb

        await check_for(split, timeout=10)
        keys = [f"k{i}" for i in range(8)]
        await produce_sequences(cluster, "O3", keys, 10)
        await check_for(lambda: len(seen_a) + len(seen_b) == 80, timeout=15)
    assert seen_a and seen_b
    assert not set(by_key(seen_a)) & set(by_key(seen_b))  # a key lives on one queue, one owner
    merged = {**by_key(seen_a), **by_key(seen_b)}
    assert merged == {k: list(range(10)) for k in keys}


async def test_out_of_attempts_goes_to_the_dlq_and_the_queue_moves_on(cluster: Cluster) -> None:
    await cluster.create_topic("O4", 1)
    seen: list[bytes] = []

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend(m.body for m in msgs)
        return ConsumeResult.RECONSUME_LATER if msgs[0].body == b"poison" else ConsumeResult.SUCCESS

    async with orderly(cluster, "OG4", "O4", handle, max_reconsume_times=2):
        async with Producer("PG", cluster.ns, instance_name="p-o4") as p:
            for body in (b"a", b"poison", b"b"):
                await p.send_orderly(Message("O4", body), "k")
        await check_for(lambda: b"b" in seen, timeout=10)
        await check_for(lambda: cluster.broker.store.get_max_offset("%DLQ%OG4", 0) == 1, timeout=5)
    assert seen == [b"a", b"poison", b"poison", b"poison", b"b"]
