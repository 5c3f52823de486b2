"""Namespaces on one broker: two tenants use the same topic and group names and never see each
other's messages; the names they see have no namespace in them."""

from __future__ import annotations

import itertools

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.pull_consumer import LitePullConsumer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration
_names = itertools.count()


async def send(c: Cluster, namespace: str, n: int) -> list[str]:
    """Send n messages to `orders` in `namespace`; the topics the results name."""
    async with Producer("shop", c.ns, namespace=namespace, instance_name=f"p{next(_names)}") as p:
        results = [await p.send(Message("orders", f"{namespace}-{i}".encode())) for i in range(n)]
    return [r.queue.topic for r in results]


def push(c: Cluster, namespace: str, sink: list[tuple[StoredMessage, str]]) -> PushConsumer:
    pc = PushConsumer("billing", c.ns, namespace=namespace, instance_name=f"c{next(_names)}",
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=500,
                      persist_interval_ms=200)  # fmt: skip
    pc.subscribe("orders")

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        sink.extend((m, ctx.queue.topic) for m in msgs)
        return ConsumeResult.SUCCESS

    pc.register(handle)
    return pc


async def test_two_namespaces_do_not_see_each_other(cluster: Cluster) -> None:
    for ns in ("tenant-a", "tenant-b"):
        await cluster.create_topic(f"{ns}%orders", 2)
    assert set(await send(cluster, "tenant-a", 5)) == {"orders"}
    assert set(await send(cluster, "tenant-b", 3)) == {"orders"}
    a: list[tuple[StoredMessage, str]] = []
    b: list[tuple[StoredMessage, str]] = []
    async with push(cluster, "tenant-a", a), push(cluster, "tenant-b", b):
        await check_for(lambda: len(a) == 5 and len(b) == 3, timeout=10)
        await check_for(
            lambda: sum(cluster.broker.offsets.query("tenant-a%billing", "tenant-a%orders", q)
                        for q in (0, 1)) == 5, timeout=5,
        )  # fmt: skip
    assert sorted(m.body for m, _ in a) == [f"tenant-a-{i}".encode() for i in range(5)]
    assert sorted(m.body for m, _ in b) == [f"tenant-b-{i}".encode() for i in range(3)]
    assert {m.topic for m, _ in a + b} == {"orders"}  # shown without the namespace
    assert {topic for _, topic in a + b} == {"orders"}
    # On the broker everything is kept apart by the prefix.
    assert cluster.broker.topics.get("orders") is None
    assert cluster.broker.offsets.query("billing", "tenant-a%orders", 0) < 0


async def test_lite_pull_consumer_in_a_namespace(cluster: Cluster) -> None:
    await cluster.create_topic("tenant-a%orders", 1)
    await cluster.create_topic("tenant-b%orders", 1)
    await send(cluster, "tenant-a", 2)
    await send(cluster, "tenant-b", 4)
    c = LitePullConsumer("audit", cluster.ns, namespace="tenant-b", auto_commit=False,
                         consume_from_where="CONSUME_FROM_FIRST_OFFSET",
                         instance_name=f"l{next(_names)}")  # fmt: skip
    got: list[StoredMessage] = []
    async with c:
        mqs = await c.fetch_message_queues("orders")
        assert {q.topic for q in mqs} == {"orders"}
        c.assign(mqs)
        assert {q.topic for q in c.assignment()} == {"orders"}

        async def polled() -> bool:
            got.extend(await c.poll(100))
            return len(got) >= 4

        await check_for(polled, timeout=10)
        await c.commit_sync()
        assert await c.committed(mqs[0]) == 4
    assert [m.body for m in got] == [f"tenant-b-{i}".encode() for i in range(4)]
    assert {m.topic for m in got} == {"orders"}
    assert cluster.broker.offsets.query("tenant-b%audit", "tenant-b%orders", 0) == 4


async def test_retries_go_through_the_namespaced_retry_topic(cluster: Cluster) -> None:
    await cluster.create_topic("tenant-a%orders", 1)
    await send(cluster, "tenant-a", 1)
    seen: list[tuple[str, int]] = []
    pc = PushConsumer("billing", cluster.ns, namespace="tenant-a", instance_name="retry",
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET",
                      rebalance_interval_ms=500)  # fmt: skip
    pc.subscribe("orders")

    async def flaky(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        seen.extend((m.topic, m.reconsume_times) for m in msgs)
        ctx.delay_level_when_next_consume = 1  # 1 s, not the default 10 s back-off
        return ConsumeResult.RECONSUME_LATER if len(seen) == 1 else ConsumeResult.SUCCESS

    pc.register(flaky)
    async with pc:
        await check_for(lambda: len(seen) >= 2, timeout=15)
    assert seen[:2] == [("orders", 0), ("orders", 1)]
    assert cluster.broker.topics.get("%RETRY%tenant-a%billing") is not None
    assert cluster.broker.topics.get("%RETRY%billing") is None
