"""The rmqkit PushConsumer against the embedded NameServer and broker."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.record import StoredMessage
from rmqkit.testing import check_for

from .conftest import Cluster

pytestmark = pytest.mark.integration
_names = itertools.count()


def consumer(c: Cluster, group: str, topic: str, sink: list[StoredMessage], expr: str = "*",
             **kw: object) -> PushConsumer:  # fmt: skip
    pc = PushConsumer(
        group, c.ns, instance_name=f"i{next(_names)}",
        consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=500,
        persist_interval_ms=200, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    pc.subscribe(topic, expr)

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        sink.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(handle)
    return pc


async def produce(c: Cluster, topic: str, n: int, start: int = 0, tags: str | None = None) -> None:
    async with Producer("PG", c.ns, instance_name=f"p{next(_names)}") as p:
        for i in range(start, start + n):
            await p.send(Message(topic, f"m{i}".encode(), tags=tags))


def bodies(msgs: list[StoredMessage]) -> set[bytes]:
    return {m.body for m in msgs}


async def test_clustering_consumer_gets_every_message_and_commits(cluster: Cluster) -> None:
    await cluster.create_topic("C1", 4)
    await produce(cluster, "C1", 40)
    got: list[StoredMessage] = []
    async with consumer(cluster, "G1", "C1", got):
        await check_for(lambda: len(bodies(got)) == 40, timeout=10)
    assert bodies(got) == {f"m{i}".encode() for i in range(40)}
    committed = sum(cluster.broker.offsets.query("G1", "C1", q) for q in range(4))
    assert committed == 40


async def test_two_consumers_share_the_queues(cluster: Cluster) -> None:
    await cluster.create_topic("C2", 4)
    a: list[StoredMessage] = []
    b: list[StoredMessage] = []
    async with consumer(cluster, "G2", "C2", a) as ca, consumer(cluster, "G2", "C2", b) as cb:

        def split() -> bool:
            mine = {q.queue_id for q in ca.process_queues if q.topic == "C2"}
            theirs = {q.queue_id for q in cb.process_queues if q.topic == "C2"}
            return len(mine) == 2 and len(theirs) == 2 and not mine & theirs

        await check_for(split, timeout=10)
        await produce(cluster, "C2", 40)
        await check_for(lambda: len(bodies(a) | bodies(b)) == 40, timeout=10)
    assert a and b and not bodies(a) & bodies(b)


async def test_broadcasting_delivers_everything_to_each(cluster: Cluster, tmp_path: Path) -> None:
    await cluster.create_topic("C3", 2)
    a: list[StoredMessage] = []
    b: list[StoredMessage] = []
    kw = {"message_model": "BROADCASTING", "offset_store_dir": tmp_path}
    async with consumer(cluster, "G3", "C3", a, **kw), consumer(cluster, "G3", "C3", b, **kw):
        await produce(cluster, "C3", 10)
        await check_for(lambda: len(bodies(a)) == 10 and len(bodies(b)) == 10, timeout=10)
    assert len(list(tmp_path.glob("*/G3/offsets.json"))) == 2  # noqa: ASYNC240 (one folder per instance)


async def test_tag_filter(cluster: Cluster) -> None:
    await cluster.create_topic("C4", 1)
    await produce(cluster, "C4", 5, tags="a")
    await produce(cluster, "C4", 5, start=5, tags="b")
    got: list[StoredMessage] = []
    async with consumer(cluster, "G4", "C4", got, expr="b") as c:
        await check_for(lambda: len(got) == 5, timeout=10)
        await check_for(lambda: c.offsets.table.get(next(iter(c.process_queues))) == 10)  # type: ignore[attr-defined]
    assert all(m.tags == "b" for m in got)


async def test_a_new_consumer_resumes_from_the_committed_offset(cluster: Cluster) -> None:
    await cluster.create_topic("C5", 2)
    await produce(cluster, "C5", 10)
    first: list[StoredMessage] = []
    async with consumer(cluster, "G5", "C5", first):
        await check_for(lambda: len(first) == 10, timeout=10)
    await produce(cluster, "C5", 5, start=10)
    second: list[StoredMessage] = []
    async with consumer(cluster, "G5", "C5", second):
        await check_for(lambda: len(second) == 5, timeout=10)
    assert bodies(second) == {f"m{i}".encode() for i in range(10, 15)}


async def test_failed_messages_the_broker_cannot_take_back_are_retried_locally(
    cluster: Cluster,
) -> None:
    await cluster.create_topic("C6", 1)
    await produce(cluster, "C6", 3)
    # A read-only broker refuses CONSUMER_SEND_MSG_BACK (retries through %RETRY% are tested in
    # test_delay_and_retry.py); the consumer then consumes the message again itself.
    cluster.broker.settings = cluster.broker.settings.model_copy(update={"broker_permission": 4})
    attempts: list[bytes] = []
    pc = PushConsumer("G6", cluster.ns, instance_name="fail", local_retry_delay_ms=100,
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET")  # fmt: skip
    pc.subscribe("C6")

    async def flaky(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        attempts.extend(m.body for m in msgs)
        if msgs[0].body == b"m1" and attempts.count(b"m1") == 1:
            raise RuntimeError("first try fails")
        return ConsumeResult.SUCCESS

    pc.register(flaky)
    async with pc:
        await check_for(
            lambda: attempts.count(b"m1") == 2 and {b"m0", b"m2"} <= set(attempts), timeout=10
        )
        await check_for(lambda: cluster.broker.offsets.query("G6", "C6", 0) == 3, timeout=5)


async def test_start_without_subscription_is_refused(cluster: Cluster) -> None:
    from rmqkit.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        await PushConsumer("G7", cluster.ns).start()
