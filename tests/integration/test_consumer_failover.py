"""Consumers keep reading from a slave while the master of its broker is down, and go back to a
master that comes up again (RocketMQ's findBrokerAddressInSubscribe and suggestWhichBrokerId).

The scenarios need no replication: the slave's store is a copy of the master's, made while the
master was stopped (the store is filled by a master with id 0, copied, and the copy served by a
broker registered as id 1, role SLAVE, of the same broker name). Messages sent after the copy
exist on the master only, so receiving them proves that the consumer pulls from the master.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rmqkit.client.admin import AdminClient
from rmqkit.client.message import Message
from rmqkit.client.producer import Producer
from rmqkit.client.pull_consumer import LitePullConsumer
from rmqkit.client.push_consumer import ConsumeContext, ConsumeResult, PushConsumer
from rmqkit.protocol.codes import RequestCode
from rmqkit.protocol.command import RemotingCommand
from rmqkit.protocol.record import StoredMessage
from rmqkit.remoting.client import RemotingClient
from rmqkit.server.broker.broker import Broker
from rmqkit.server.namesrv.namesrv import NameServer, NameServerSettings
from rmqkit.testing import check_for

from .conftest import broker_settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]
_names = itertools.count()
QUEUES = 2
FAILOVER_S = 30.0
"""Upper bound for a failover in these tests: a failed pull waits 3 s, a route refresh follows."""


@dataclass
class Site:
    """A NameServer, and brokers started on store directories under `root`."""

    namesrv: NameServer
    root: Path
    stack: AsyncExitStack
    running: list[Broker] = field(default_factory=list)

    @property
    def ns(self) -> str:
        return f"127.0.0.1:{self.namesrv.port}"

    async def broker(self, store: str, broker_id: int = 0) -> Broker:
        role = "SLAVE" if broker_id else "ASYNC_MASTER"
        # Pulls are held 1 s at most, so a consumer waiting on one broker soon pulls again.
        b = Broker(broker_settings(self.root / store, self.ns, broker_id=broker_id,
                                   broker_role=role, max_suspend_ms=1_000))  # fmt: skip
        await b.start()
        self.running.append(b)
        return b

    async def stop(self, b: Broker) -> None:
        await b.stop()
        self.running.remove(b)

    def route_ids(self, topic: str) -> set[int]:
        r = self.namesrv.routes.route(topic)
        return {i for bd in (r.broker_datas if r else []) for i in bd.broker_addrs}

    async def produce(self, topic: str, bodies: range) -> None:
        async with Producer("FPG", self.ns, instance_name=f"fp{next(_names)}") as p:
            for i in bodies:
                await p.send(Message(topic, f"m{i}".encode(), keys=[f"k{i}"]))

    async def fill(self, store: str, copy: str, topic: str, n: int) -> None:
        """`n` messages in `topic` on a master over `store`, stopped; `copy` is its copy."""
        master = await self.broker(store)
        client = RemotingClient()
        try:
            r = await client.invoke(master.addr, RemotingCommand(
                RequestCode.UPDATE_AND_CREATE_TOPIC, ext_fields={
                    "topic": topic, "defaultTopic": "TBW102", "readQueueNums": str(QUEUES),
                    "writeQueueNums": str(QUEUES), "perm": "6", "topicFilterType": "SINGLE_TAG"},
            ), 5.0)  # fmt: skip
            assert r.code == 0, r.remark
        finally:
            await client.close()
        await self.produce(topic, range(n))
        await self.stop(master)
        shutil.copytree(self.root / store, self.root / copy)


@pytest.fixture
async def site(tmp_path: Path) -> AsyncIterator[Site]:
    async with AsyncExitStack() as stack:
        ns = await stack.enter_async_context(
            NameServer(NameServerSettings(host="127.0.0.1", listen_port=0))
        )
        s = Site(ns, tmp_path, stack)
        try:
            yield s
        finally:
            for b in reversed(s.running):
                await b.stop()


def bodies(msgs: list[StoredMessage]) -> set[bytes]:
    return {m.body for m in msgs}


def expected(n: int) -> set[bytes]:
    return {f"m{i}".encode() for i in range(n)}


def committed(b: Broker, group: str, topic: str) -> int:
    return sum(max(0, b.offsets.query(group, topic, q)) for q in range(QUEUES))


def push(site: Site, group: str, topic: str, sink: list[StoredMessage], **kw: Any) -> PushConsumer:
    pc = PushConsumer(group, site.ns, instance_name=f"fc{next(_names)}",
                      consume_from_where="CONSUME_FROM_FIRST_OFFSET", rebalance_interval_ms=500,
                      persist_interval_ms=200, **kw)  # fmt: skip
    pc.subscribe(topic)

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        sink.extend(msgs)
        return ConsumeResult.SUCCESS

    pc.register(handle)
    return pc


def lite(site: Site, group: str, **kw: Any) -> LitePullConsumer:
    return LitePullConsumer(group, site.ns, instance_name=f"fl{next(_names)}",
                            consume_from_where="CONSUME_FROM_FIRST_OFFSET", auto_commit=False,
                            rebalance_interval_ms=500, **kw)  # fmt: skip


async def slave_alone(site: Site, topic: str, n: int) -> tuple[Broker, str]:
    """A slave holding `n` messages of `topic`, alone in the route (its master registered once
    and stopped); returns it and the store its master can be started on."""
    await site.fill("a", "b", topic, n)
    slave = await site.broker("a", broker_id=1)
    master = await site.broker("b")
    assert site.route_ids(topic) == {0, 1}
    await site.stop(master)
    assert site.route_ids(topic) == {1}
    return slave, "b"


async def test_push_consumer_reads_a_slave_alone_then_its_returning_master(site: Site) -> None:
    slave, master_store = await slave_alone(site, "F1", 20)
    got: list[StoredMessage] = []
    async with push(site, "FG1", "F1", got) as pc:
        await check_for(lambda: bodies(got) == expected(20), timeout=FAILOVER_S)
        await check_for(lambda: committed(slave, "FG1", "F1") == 20, timeout=FAILOVER_S)

        master = await site.broker(master_store)
        await site.produce("F1", range(20, 30))  # on the master only
        await pc.instance.refresh_routes()  # as the periodic NameServer poll does
        await check_for(lambda: bodies(got) == expected(30), timeout=FAILOVER_S)
        await check_for(lambda: committed(master, "FG1", "F1") == 30, timeout=FAILOVER_S)


async def test_lite_pull_consumer_reads_a_slave_alone_then_its_returning_master(
    site: Site,
) -> None:
    slave, master_store = await slave_alone(site, "F2", 20)
    got: list[StoredMessage] = []

    async def poll_until(c: LitePullConsumer, n: int) -> None:
        async def more() -> bool:
            got.extend(await c.poll(100))
            return bodies(got) == expected(n)

        await check_for(more, timeout=FAILOVER_S, message=f"polled {len(bodies(got))} of {n}")

    async with lite(site, "FG2") as c:
        c.subscribe("F2")
        await poll_until(c, 20)
        await c.commit_sync()
        assert committed(slave, "FG2", "F2") == 20

        master = await site.broker(master_store)
        await site.produce("F2", range(20, 30))
        await c.instance.refresh_routes()
        await poll_until(c, 30)
        await c.commit_sync()
        assert committed(master, "FG2", "F2") == 30


async def master_and_slave(site: Site, topic: str, n: int) -> tuple[Broker, Broker]:
    await site.fill("a", "b", topic, n)
    master = await site.broker("a")
    slave = await site.broker("b", broker_id=1)
    assert site.route_ids(topic) == {0, 1}
    return master, slave


async def test_push_consumer_goes_on_from_the_slave_when_the_master_stops(site: Site) -> None:
    master, slave = await master_and_slave(site, "F3", 30)
    got: list[StoredMessage] = []
    master_gone = asyncio.Event()

    async def handle(msgs: list[StoredMessage], ctx: ConsumeContext) -> ConsumeResult:
        got.extend(msgs)
        await master_gone.wait()  # the first batches hold the queues until the master is gone
        return ConsumeResult.SUCCESS

    pc = push(site, "FG3", "F3", got, pull_batch_size=1, pull_threshold_for_queue=1)
    pc.register(handle)
    async with pc:
        await check_for(lambda: len(got) >= QUEUES, timeout=FAILOVER_S)
        assert len(bodies(got)) < 30
        await site.stop(master)
        master_gone.set()
        await check_for(lambda: bodies(got) == expected(30), timeout=FAILOVER_S)
        await check_for(lambda: committed(slave, "FG3", "F3") == 30, timeout=FAILOVER_S)


async def test_lite_pull_consumer_goes_on_from_the_slave_when_the_master_stops(
    site: Site,
) -> None:
    master, slave = await master_and_slave(site, "F4", 30)
    got: list[StoredMessage] = []
    async with lite(site, "FG4", pull_batch_size=1, pull_threshold_for_all=1) as c:
        c.subscribe("F4")

        async def some() -> list[StoredMessage]:
            return await c.poll(100)

        got.extend(await check_for(some, timeout=FAILOVER_S))  # read from the master
        assert len(bodies(got)) < 30
        await site.stop(master)

        async def more() -> bool:
            got.extend(await c.poll(100))
            return bodies(got) == expected(30)

        await check_for(more, timeout=FAILOVER_S, message="polled from the slave")
        await c.commit_sync()
        assert committed(slave, "FG4", "F4") == 30


async def test_admin_reads_progress_and_messages_from_a_slave_while_the_master_is_down(
    site: Site,
) -> None:
    await slave_alone(site, "F5", 10)
    got: list[StoredMessage] = []
    async with lite(site, "FG5") as c:
        c.subscribe("F5")

        async def all_ten() -> bool:
            got.extend(await c.poll(100))
            return bodies(got) == expected(10)

        await check_for(all_ten, timeout=FAILOVER_S)
        await c.commit_sync()
    async with AdminClient(site.ns, instance_name=f"fa{next(_names)}") as admin:
        progress = await admin.consumer_progress("FG5", "F5")
        assert len(progress) == QUEUES
        assert sum(p.broker_offset for p in progress) == 10
        assert sum(p.consumer_offset for p in progress) == 10
        found = await admin.query_by_key("F5", "k7")
        assert [m.body for m in found] == [b"m7"]
        # The id names the master that stored the message, which is down: a slave answers.
        viewed = await admin.view_message(found[0].offset_msg_id)
        assert viewed.body == b"m7"
        stats = await admin.topic_stats("F5")
        assert sum(hi for _, hi in stats.values()) == 10


async def test_a_consumer_sent_to_a_slave_follows_it_back_to_the_live_master(site: Site) -> None:
    await master_and_slave(site, "F6", 10)
    got: list[StoredMessage] = []
    async with lite(site, "FG6") as c:
        mqs = await c.fetch_message_queues("F6")
        for mq in mqs:
            c._nodes.suggested[mq] = 1  # as if a broker had suggested the slave
        c.assign(mqs)

        async def polled(n: int) -> bool:
            got.extend(await c.poll(100))
            return bodies(got) == expected(n)

        await check_for(lambda: polled(10), timeout=FAILOVER_S)
        await site.produce("F6", range(10, 20))
        await check_for(lambda: polled(20), timeout=FAILOVER_S)
        assert c._nodes.suggested == dict.fromkeys(mqs, 0)  # the slave sent each queue back
